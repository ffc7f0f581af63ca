"""The log filter (config/logging.py): what reaches a log line of a request path,
a PIN or CVV field, or a card number — through Django's own request logging,
the real ``runserver`` access log, and records shaped as each logger makes them."""
from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from django.test import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from config.logging import RedactCardNumbers, mask_esipay_paths, redact
from tests.support.workers import database_url_for_workers

ROOT = Path(__file__).resolve().parents[2]
MERCHANT = "2b0c1f3e-9a4d-4c1e-8f3a-1d2e3f405162"
MONTH, YEAR, AMOUNT = "12", "2029", "1.00"


def written(record: logging.LogRecord) -> str:
    """What a handler with the card filter writes for ``record``."""
    RedactCardNumbers().filter(record)
    return logging.Formatter("%(message)s").format(record)


def record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.getLogger(name).makeRecord(name, logging.WARNING, __file__, 1, msg, args, None)


# --- The esipay card segment, by position ------------------------------------------------------


def test_the_issue_example_and_an_8_digit_segment_are_masked() -> None:
    for card in ("4242%204242%204242%204242", "12345678", "4242424242424242", "4242-4242-4242-4242"):
        line = f"GET /cardpay/{MERCHANT}/o/{card}/12/2029/1.00 HTTP/1.1"
        out = written(record("django.server", '"%s" %s %s', line, "400", "58"))
        assert out == f'"GET /cardpay/{MERCHANT}/o/****/12/2029/1.00 HTTP/1.1" 400 58'


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        # refunds: a transaction id and an amount are kept, with the query's ref
        ("/cardpay/{m}/12/5.00?ref=r-1", "/cardpay/{m}/12/5.00?ref=r-1"),
        ("/cardpay/{m}/12", "/cardpay/{m}/12"),
        # a card where a transaction id or an amount should be: masked (10+ digits is no id)
        ("/cardpay/{m}/4242424242", "/cardpay/{m}/****"),
        ("/cardpay/{m}/12/4242424242", "/cardpay/{m}/12/****"),
        # any other query parameter is masked
        ("/cardpay/{m}/12?card=4242424242&ref=r", "/cardpay/{m}/12?****&ref=r"),
        # shapes no esipay URL has: nothing after the uuid
        ("/cardpay/{m}/o/4242424242/12", "/cardpay/{m}/****"),
        ("/cardpay/{m}/4242424242/12/2029/1.00", "/cardpay/{m}/****"),
        # a card with slashes in it, or too many segments: all between cid and the tail
        ("/cardpay/{m}/o/4242/4242/4242/4242/12/2029/1.00", "/cardpay/{m}/o/****/12/2029/1.00"),
        # the tail is kept only in its shape
        ("/cardpay/{m}/o/1/12/2029/4242424242", "/cardpay/{m}/o/****/12/2029/****"),
        ("/cardpay/{m}/o/1/ab/cd/ef", "/cardpay/{m}/o/****/****/****/****"),
        # the uuid is kept only as a uuid
        ("/cardpay/4242424242/o/1/12/2029/1.00", "/cardpay/****/o/****/12/2029/1.00"),
    ],
)
def test_request_lines_by_shape(path: str, shown: str) -> None:
    line = f"GET {path.format(m=MERCHANT)} HTTP/1.1"
    out = written(record("django.server", '"%s" %s %s', line, "400", "58"))
    assert out == f'"GET {shown.format(m=MERCHANT)} HTTP/1.1" 400 58'


# Anything a client can put in the card segment: text of any kind, digits with
# separators, percent signs, quotes, slashes, "HTTP/", another /cardpay/ path.
card_segments = st.one_of(
    st.text(min_size=1, max_size=40),
    st.from_regex(r"[0-9][0-9 %./-]{7,30}", fullmatch=True),
    st.builds(lambda a, b: f"{a} HTTP/1.1 {b}", st.text(max_size=10), st.text(max_size=10)),
)


@given(card_segments)
@example("4242 4242 4242 4242")
@example("12345678")
@example("/cardpay/x/y")
@example(" HTTP/1.1 4242424242")
def test_any_card_segment_never_reaches_a_request_line(card: str) -> None:
    """The raw request line of runserver (and of any access log): percent-encoded,
    as clients send it, and raw (a broken client's spaces and quotes)."""
    encoded = quote(card, safe="")
    line = f"GET /cardpay/{MERCHANT}/o/{encoded}/{MONTH}/{YEAR}/{AMOUNT} HTTP/1.1"
    out = written(record("django.server", '"%s" %s %s', line, "404", "179"))
    assert out == f'"GET /cardpay/{MERCHANT}/o/****/{MONTH}/{YEAR}/{AMOUNT} HTTP/1.1" 404 179'
    # A broken client's raw target (spaces, quotes, ? and / in it): only the
    # uuid, masks and the expected shapes of the other segments are left.
    raw = card.replace("\r", "").replace("\n", "")
    line = f"GET /cardpay/{MERCHANT}/o/{raw}/{MONTH}/{YEAR}/{AMOUNT} HTTP/1.1"
    for out, before, after in (
        (written(record("django.server", '"%s" %s %s', line, "400", "-")), '"GET ', ' HTTP/1.1" 400 -'),
        # http.server's own complaint about a malformed request line quotes it whole.
        (written(record("django.server", "code %d, message %s", 400, f"Bad request syntax ({line!r})")),
         "code 400, message Bad request syntax ('GET ", " HTTP/1.1')"),
    ):
        if "'" in raw or "\\" in raw or not raw.isprintable():
            continue  # the complaint's repr() escapes or re-quotes: its own shape, checked below
        assert out.startswith(f"{before}/cardpay/{MERCHANT}/") and out.endswith(after), out
        middle = out[len(before) + len(f"/cardpay/{MERCHANT}/"):-len(after)]
        assert re.fullmatch(r"(o|12|2029|1\.00|\*\*\*\*|[/?&])*", middle), out


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(card_segments)
@example("4242 4242 4242 4242")
@example("12345678")
@example("42\n4242424242")
def test_any_card_segment_never_reaches_djangos_request_warnings(card: str) -> None:
    """Django's "Bad Request: <path>" / "Not Found: <path>" (the decoded path, as
    a real request through the URL resolver and the view produces them)."""
    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    handler = Keep()
    django_request = logging.getLogger("django.request")
    django_request.addHandler(handler)
    try:
        response = Client().get(
            f"/cardpay/{uuid.uuid4()}/o/{quote(card, safe='')}/{MONTH}/{YEAR}/{AMOUNT}", REMOTE_ADDR="127.0.0.1"
        )
    finally:
        django_request.removeHandler(handler)
    assert response.status_code in (400, 404)
    assert captured, "Django logged nothing for a 4xx"
    for one in captured:
        out = written(one)
        # A payment path the door understood keeps its other segments; a path
        # of another shape (a "/" in the card segment makes one) is logged by
        # its shape, every segment after the uuid hidden (esipay's routing).
        assert re.fullmatch(
            rf"(Bad Request|Not Found): /cardpay/[0-9a-f-]{{36}}/o/\*\*\*\*/{MONTH}/{YEAR}/{re.escape(AMOUNT)}", out
        ) or re.fullmatch(r"Not Found: /cardpay/[0-9a-f-]{36}(/\*+|/)*", out), out


def test_a_path_in_free_text_is_masked_too() -> None:
    text = f"retrying /cardpay/{MERCHANT}/o/12345678/12/2029/1.00 later"
    assert mask_esipay_paths(text) == f"retrying /cardpay/{MERCHANT}/o/****/12/2029/1.00 later"


def test_a_traceback_is_masked() -> None:
    try:
        raise ValueError(f"bad path /cardpay/{MERCHANT}/o/12345678/12/2029/1.00 and pin=1234")
    except ValueError:
        import sys as _sys

        one = logging.getLogger("x").makeRecord("x", logging.ERROR, __file__, 1, "failed", (), _sys.exc_info())
    RedactCardNumbers().filter(one)
    assert "12345678" not in one.exc_text and "1234" not in one.exc_text.split("pin=")[1][:4]


# --- PIN and CVV fields ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ('{"path": "/payment/card", "parameters": {"pin": "1234", "card_type": "VISA"}}', ["1234"]),
        ('{"pin":4321,"cvv":"987"}', ["4321", "987"]),
        ("{'pin': '2580', 'cvv2': '135'}", ["2580", "135"]),  # a Python repr
        ('payload "{\\"pin\\": \\"1470\\"}"', ["1470"]),  # JSON inside a JSON string
        ("token=abc&pin=3691&cvc=246&amount=5", ["3691", "246"]),  # a form body, a query string
        ("PaymentCommand(pin='8520', cvv=741)", ["8520", "741"]),
        ("PIN=9630 CVV2=852 Security_Code=963", ["9630", "852", "963"]),
        ("pin%3D7410", ["7410"]),  # percent-encoded inside a URL
        ('{"secret": "s3cr3t-value"}', ["s3cr3t-value"]),  # a terminal's /auth frame
    ],
)
def test_pin_and_cvv_fields_are_masked(text: str, hidden: list[str]) -> None:
    out = redact(text)
    for value in hidden:
        assert value not in out, out
    assert "****" in out


def test_fields_that_merely_contain_the_words_are_left_alone() -> None:
    text = "rotate_secret=yes spin=3 invalid pin for terminal T1 cid=order-1"
    assert redact(text) == text


@given(st.from_regex(r"[0-9]{3,4}", fullmatch=True), st.sampled_from(["pin", "cvv", "CVC2", "cvv2"]),
       st.sampled_from(['"{k}": "{v}"', "'{k}': '{v}'", "{k}={v}", '"{k}":{v}', "{k}={v}&x=1"]))
def test_pin_and_cvv_values_never_reach_the_line(value: str, key: str, shape: str) -> None:
    out = written(record("any", "request %s", shape.format(k=key, v=value)))
    assert value not in out


def test_card_numbers_in_text_keep_six_and_four_and_uuids_are_not_card_numbers() -> None:
    assert redact("card 4242 4242 4242 4242 ok") == "card 424242******4242 ok"
    event = "11111111-2222-3333-4444-555555555555"
    assert redact(f"merchant {event}") == f"merchant {event}"


@pytest.mark.parametrize(("text", "logged"), [
    ("card 378282246310005 ok", "card 378282*****0005 ok"),  # 15 digits: six and four
    ("card 4222222222222 ok", "card *********2222 ok"),  # 13 digits: the last four only
    ("card 1234-5678-9012 ok", "card ********9012 ok"),  # 12, with separators
    ("card 12345678903 ok", "card *******8903 ok"),  # 11 digits, esipay accepts them
    ("card=1234567897&x=1", "card=******7897&x=1"),  # 10 digits
    # Not cards: a date and an hour (10 digits with separators), short runs inside hex ids.
    ("at 2026-12-02 21:21:41", "at 2026-12-02 21:21:41"),
    ("app 74595f2c6a4f5a4364a14f0785b830b1", "app 74595f2c6a4f5a4364a14f0785b830b1"),
])
def test_a_number_in_text_is_masked_by_its_length(text: str, logged: str) -> None:
    assert redact(text) == logged


@given(st.integers(min_value=10, max_value=19).flatmap(lambda n: st.from_regex(rf"[0-9]{{{n}}}", fullmatch=True)))
def test_no_log_line_plus_the_luhn_digit_rebuilds_a_number(pan: str) -> None:
    """What the line shows of a number is what its mask shows, never more: for a
    short number the last four only, so the hidden digits stay more than one."""
    from payments.cards import mask_pan

    out = written(record("any", "paid with %s", pan))
    shown = out.removeprefix("paid with ")
    assert shown == mask_pan(pan) and pan not in out
    assert shown.count("*") >= len(pan) - (10 if len(pan) >= 15 else 4)


# --- The real development server -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_runserver_access_log_and_request_warnings_hide_the_card() -> None:
    """``manage.py runserver`` (what the all-in-one run serves esipay with): its
    access log and Django's request warnings, as written to the console."""
    port = _free_port()
    env = {
        **os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url_for_workers(), "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", "--skip-checks", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    cards = ["4242%204242%204242%204242", "12345678", "4111222230", "4242424242424242", "%2F5555%2F5555"]
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()
    masked = f"/cardpay/{MERCHANT}/o/****/12/2029/1.00"
    # A "/" in the card segment makes a path of another shape: esipay's
    # routing logs it by its shape, every segment after the uuid hidden.
    shape = f"/cardpay/{MERCHANT}/****/****/****/****/****"

    def seen(text: str) -> int:
        return text.count(masked) + text.count(shape)

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/cardpay/", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError("runserver did not start") from None
                time.sleep(0.2)
        for card in cards:
            url = f"http://127.0.0.1:{port}/cardpay/{MERCHANT}/o/{card}/12/2029/1.00"
            assert httpx.get(url, timeout=10).status_code in (400, 404)
        # Each request: Django's warning and the access line (written after the answer).
        deadline = time.monotonic() + 30
        while seen("".join(lines)) < 2 * len(cards) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=30)
        reader.join(timeout=10)
    output = "".join(lines)
    assert seen(output) == 2 * len(cards), output
    for digits in ("4242", "12345678", "4111222230", "5555"):
        assert digits not in output, output
