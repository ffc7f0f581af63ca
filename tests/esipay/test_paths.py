"""Whatever the path under /cardpay, GET or POST, DEBUG or not, esipay answers JSON in
its own vocabulary (400 with the bad value's code, 404 unknown_path, 405
method_not_allowed): never Django's HTML 404 listing the URL patterns. And a
refused path's log lines hold no card number, whatever its shape."""
from __future__ import annotations

import logging
from urllib.parse import quote

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings as hypothesis_settings
from hypothesis import strategies as st

from payments.doors.esipay.routing import path_for_log
from payments.models import Refund, Transaction
from tests.factories import CapturedTransactionFactory

from .test_cardpay import FUTURE

pytestmark = pytest.mark.django_db

CARD = "4242424242424242"
SHORT_CARD = "4242424242"


@pytest.fixture(params=[False, True], ids=["DEBUG off", "DEBUG on"])
def debug(request, settings):  # type: ignore[no-untyped-def]
    settings.DEBUG = request.param
    return request.param


@pytest.fixture
def django_request_log(caplog):  # type: ignore[no-untyped-def]
    """Every record the django.request logger writes, as it reaches the handlers (before any filter)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep(level=logging.DEBUG)
    logger = logging.getLogger("django.request")
    logger.addHandler(keep)
    yield records
    logger.removeHandler(keep)


def assert_esipay_json(response, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == code and body["error"]
    assert b"URLconf" not in response.content and b"urlpatterns" not in response.content.lower()
    assert CARD.encode() not in response.content and SHORT_CARD.encode() not in response.content


def unknown_paths(merchant) -> list[str]:  # type: ignore[no-untyped-def]
    u = merchant.uuid
    return [
        f"/cardpay/{u}/order-1/{CARD}/12/{FUTURE}/12.50/",  # the trailing slash
        f"/cardpay/{u}/order-1/{CARD}/12/{FUTURE}/12.50/extra",
        f"/cardpay/{u}/order-1/{CARD}/12/{FUTURE}",  # a segment short
        f"/cardpay/{u}/order-1/{CARD}/12",
        f"/cardpay/{u}/1/2.50/",
        f"/cardpay/{u}/1/2.50/more",
        f"/cardpay/{u}",
        f"/cardpay/{CARD}",
        "/cardpay/",
        "/cardpay",
        f"/cardpay/{u}/order-1/{quote(CARD[:8])}%2F{CARD[8:]}/12/{FUTURE}/1.00",  # an encoded slash: 7 segments
        f"/cardpay/{u}/order-1/{CARD}/12/{FUTURE}/1.00/%0A",
    ]


@pytest.mark.parametrize("method", ["get", "post"])
def test_unknown_paths_under_cardpay_are_esipay_404s(merchant, debug, method, django_request_log) -> None:  # type: ignore[no-untyped-def]
    for path in unknown_paths(merchant):
        django_request_log.clear()
        response = getattr(Client(), method)(path, REMOTE_ADDR="127.0.0.1")
        assert_esipay_json(response, 404, "unknown_path")
        assert "no trailing slash" in response.json()["error"]
        # One line, Django's usual "Not Found: …", with the path's shape and no card digits.
        [record] = django_request_log
        message = record.getMessage()
        assert message.startswith("Not Found: /cardpay") and "4242" not in message, message
    assert not Transaction.objects.exists()


def test_the_logged_shape_keeps_the_uuid_and_hides_every_other_segment(merchant) -> None:  # type: ignore[no-untyped-def]
    u = merchant.uuid
    assert path_for_log(f"/cardpay/{u}/order-1/{CARD}/12/2029/12.50/") == f"/cardpay/{u}/*/*/*/*/*/"
    assert path_for_log(f"/cardpay/{CARD}/x") == "/cardpay/*/*"
    assert path_for_log("/cardpay") == "/cardpay" and path_for_log("/cardpay/") == "/cardpay/"
    assert path_for_log(f"/cardpay{CARD}") == "/cardpay*"


@pytest.mark.parametrize("method", ["put", "patch", "delete", "options", "head"])
def test_other_methods_are_esipay_405s(merchant, debug, method, django_request_log) -> None:  # type: ignore[no-untyped-def]
    for path in (f"/cardpay/{merchant.uuid}/order-1/{CARD}/12/{FUTURE}/12.50", f"/cardpay/{merchant.uuid}/1",
                 f"/cardpay/{merchant.uuid}/1/2.50"):
        django_request_log.clear()
        response = getattr(Client(), method)(path, REMOTE_ADDR="127.0.0.1")
        assert response.status_code == 405 and response["Allow"] == "GET, POST"
        if method != "head":  # a HEAD answer has no body
            assert_esipay_json(response, 405, "method_not_allowed")
        assert all("4242" not in r.getMessage() for r in django_request_log)
    assert not Transaction.objects.exists()


def test_a_refund_path_with_a_trailing_slash_refunds_nothing(merchant, debug) -> None:  # type: ignore[no-untyped-def]
    """/cardpay/<uuid>/<transaction>/ is a partial refund of an empty amount: 400, never 'all that remains'."""
    captured = CapturedTransactionFactory(merchant=merchant)
    response = Client().get(f"/cardpay/{merchant.uuid}/{captured.pk}/", REMOTE_ADDR="127.0.0.1")
    assert_esipay_json(response, 400, "invalid_amount")
    assert not Refund.objects.exists()


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/cardpay/{u}//{card}/12/{year}/12.50", "invalid_cid"),
        ("/cardpay/{u}/c1//12/{year}/12.50", "invalid_card_number"),
        ("/cardpay/{u}/c1/{card}//{year}/12.50", "invalid_card_expiry"),
        ("/cardpay/{u}/c1/{card}/12//12.50", "invalid_card_expiry"),
        ("/cardpay/{u}/c1/{card}/12/{year}/", "invalid_amount"),
        ("/cardpay//c1/{card}/12/{year}/12.50", "unknown_merchant"),
        ("/cardpay/{u}/", "transaction_not_found"),
        ("/cardpay//1", "unknown_merchant"),
    ],
)
def test_an_empty_segment_is_that_values_400(merchant, debug, path, code) -> None:  # type: ignore[no-untyped-def]
    url = path.format(u=merchant.uuid, card=CARD, year=FUTURE)
    assert_esipay_json(Client().get(url, REMOTE_ADDR="127.0.0.1"), 400, code)
    assert not Transaction.objects.exists()


def test_an_empty_segment_from_an_unregistered_address_is_still_403(merchant) -> None:  # type: ignore[no-untyped-def]
    response = Client().get(f"/cardpay/{merchant.uuid}/1/", REMOTE_ADDR="203.0.113.9")
    assert_esipay_json(response, 403, "forbidden_address")


segment = st.text(alphabet=st.sampled_from("0123456789abc.-_ %/\n€"), max_size=24)


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segments=st.lists(segment, max_size=9), trailing=st.booleans(), post=st.booleans())
def test_any_path_under_cardpay_is_answered_in_esipays_vocabulary(merchant, segments, trailing, post) -> None:  # type: ignore[no-untyped-def]
    path = "/cardpay" + "".join("/" + quote(s, safe="") for s in [str(merchant.uuid), *segments])
    path += "/" if trailing else ""
    response = (Client().post if post else Client().get)(path, REMOTE_ADDR="127.0.0.1")
    assert response.status_code in (200, 400, 404, 500), (path, response.status_code)
    assert response["Content-Type"] == "application/json"
    assert "code" in response.json() or response.status_code == 200


def test_other_unknown_paths_do_not_list_the_url_patterns_when_debug_is_off(db, settings) -> None:  # type: ignore[no-untyped-def]
    settings.DEBUG = False
    for path in ("/nope", "/cardpayment/x", "/card/pay"):
        response = Client().get(path)
        assert response.status_code == 404
        assert b"URLconf" not in response.content and b"cardpay" not in response.content
