"""The terminal protocol over HTTP/1.1 (the reference client's framing), through a real socket."""
from __future__ import annotations

import json
from decimal import Decimal
from urllib.parse import urlencode

import pytest

from .conftest import HAPPY_VISA, HttpClient, connect, raw_http_response, wait_closed

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def creds(terminal) -> tuple[str, str]:
    return (terminal.terminal_id, terminal.secret)


def card_query(value: str, **overrides: str) -> str:
    parameters = {"token": value, "card_type": "VISA", "card_number": HAPPY_VISA, "pin": "4321", "amount": "500.000000"}
    parameters.update(overrides)
    return urlencode(parameters)


def test_get_token_and_card_payment_with_basic_auth_on_one_keep_alive_connection(http, creds) -> None:
    client: HttpClient = http()
    token = client.get("/token?type=CARD&try_count=3", auth=creds)
    assert token.status == 200
    assert token.headers["content-type"].startswith("application/json")
    body = token.json()
    assert body["type"] == "CARD" and body["try_count"] == 3 and len(body["token"]) == 64
    paid = client.get("/payment/card?" + card_query(body["token"]), auth=creds)
    assert paid.status == 200
    assert paid.json()["card_number"] == "424242******4242"
    assert b'"amount":500.00' in paid.body.replace(b" ", b"")
    assert HAPPY_VISA.encode() not in paid.body
    # still the same connection: keep-alive
    assert client.get("/token?type=CHECK", auth=creds).json()["type"] == "CHECK"


def test_post_form_body(http, creds) -> None:
    client = http()
    token = client.request("POST", "/token", body=b"type=CONTACTLESS", content_type="application/x-www-form-urlencoded", auth=creds)
    assert token.status == 200
    value = token.json()["token"]
    body = urlencode({"token": value, "card_type": "VISA", "card_number": HAPPY_VISA, "amount": "30"}).encode()
    paid = client.request("POST", "/payment/contactless", body=body, content_type="application/x-www-form-urlencoded", auth=creds)
    assert paid.status == 200
    assert paid.json()["amount"] == Decimal("30.00")


def test_post_json_body_with_amount_as_json_number(http, creds) -> None:
    client = http()
    value = client.request("POST", "/token", body=b'{"type": "CARD", "try_count": 1}', content_type="application/json", auth=creds).json()["token"]
    body = (
        b'{"token": "' + value.encode() + b'", "card_type": "VISA", "card_number": "4242424242424242",'
        b' "pin": "4321", "amount": 500.000000}'
    )
    paid = client.request("POST", "/payment/card", body=body, content_type="application/json; charset=utf-8", auth=creds)
    assert paid.status == 200, paid.body
    assert b'"amount":500.00' in paid.body.replace(b" ", b"")


def test_post_json_body_in_the_json_lines_shape(http, creds) -> None:
    client = http()
    answer = client.request(
        "POST", "/token", body=json.dumps({"parameters": {"type": "CHECK"}}).encode(), content_type="application/json", auth=creds
    )
    assert answer.status == 200 and answer.json()["type"] == "CHECK"


@pytest.mark.parametrize("path", ["/payment/chek", "/payment/check"])
def test_check_payment_both_spellings(http, creds, path: str) -> None:
    client = http()
    value = client.get("/token?type=CHECK", auth=creds).json()["token"]
    paid = client.get(f"{path}?token={value}&check_number=12345678ABC&amount=500.000000", auth=creds)
    assert paid.status == 200
    assert paid.json()["check_number"] == "12345678ABC"
    assert b'"amount":500.00' in paid.body.replace(b" ", b"")


def test_statuses_100_is_400_110_is_401_others_200(http, creds) -> None:
    client = http()
    bad = client.get("/nowhere", auth=creds)
    assert bad.status == 400 and bad.json()["error_code"] == 100
    anonymous = http().get("/token?type=CARD")
    assert anonymous.status == 401 and anonymous.json() == {"error": "Terminal not authorized", "error_code": 110}
    assert anonymous.headers["www-authenticate"].lower().startswith("basic")
    assert anonymous.headers["connection"] == "close"
    value = client.get("/token?type=CARD&try_count=-1", auth=creds).json()["token"]
    for overrides, code in (
        ({"token": "f" * 64}, 107),
        ({"card_number": "0000000000000000"}, 101),
        ({"pin": "1234"}, 103),
        ({"card_number": "12"}, 104),
        ({"amount": "-1"}, 109),
        ({"amount": "3000"}, 106),
        ({"card_number": "4000000000000002"}, 111),
    ):
        answer = client.get("/payment/card?" + card_query(value, **overrides), auth=creds)
        assert (answer.status, answer.json()["error_code"]) == (200, code), overrides
    check_token = client.get("/token?type=CHECK&try_count=-1", auth=creds).json()["token"]
    for number, code in (("00000000AAA", 102), ("1", 105)):
        answer = client.get(f"/payment/check?token={check_token}&check_number={number}&amount=1", auth=creds)
        assert (answer.status, answer.json()["error_code"]) == (200, code)
    one_try = client.get("/token?type=CARD&try_count=1", auth=creds).json()["token"]
    client.get("/payment/card?" + card_query(one_try, pin="0000"), auth=creds)
    answer = client.get("/payment/card?" + card_query(one_try), auth=creds)
    assert (answer.status, answer.json()) == (200, {"error": "Max try", "error_code": 108})


@pytest.mark.parametrize("kwargs", [
    {"auth": ("__id__", "wrong")},
    {"auth": ("nobody", "x")},
    {"headers": [("authorization", "Basic !!!notbase64")]},
    {"headers": [("authorization", "Bearer abc")]},
])
def test_wrong_basic_credentials_are_401_and_close_the_connection(http, creds, kwargs) -> None:
    if "auth" in kwargs and kwargs["auth"][0] == "__id__":
        kwargs = {"auth": (creds[0], "wrong")}
    client = http()
    answer = client.get("/token?type=CARD", **kwargs)
    assert answer.status == 401 and answer.headers["connection"] == "close"
    assert wait_closed(client.sock) == b""  # issue 7 item 12: the first 110 closes
    assert http().get("/token?type=CARD", auth=creds).status == 200


def test_http_auth_path_says_who_the_terminal_is(http, terminal, creds) -> None:
    client = http()
    answer = client.get("/auth", auth=creds)
    assert answer.status == 200
    assert answer.json() == {"authenticated": True, "terminal_id": terminal.terminal_id, "merchant": "Corner Shop"}
    assert http().get("/auth").status == 401


def test_unsupported_method_and_content_type(http, creds) -> None:
    client = http()
    deleted = client.request("DELETE", "/token", auth=creds)
    assert deleted.status == 400 and deleted.json()["error_code"] == 100
    answer = client.request("POST", "/token", body=b"<xml/>", content_type="text/xml", auth=creds)
    assert answer.status == 400 and answer.json()["error_code"] == 100
    answer = client.request("POST", "/token", body=b"{not json", content_type="application/json", auth=creds)
    assert answer.status == 400 and answer.json()["error_code"] == 100
    assert client.get("/token?type=CARD", auth=creds).status == 200  # still served after client errors


def test_pipelined_http_requests_are_answered_in_order(listener, creds) -> None:
    import base64

    auth = base64.b64encode(f"{creds[0]}:{creds[1]}".encode())
    sock = connect(listener.port)
    request = b"GET /token?type=%s HTTP/1.1\r\nHost: t\r\nAuthorization: Basic " + auth + b"\r\n\r\n"
    sock.sendall(request % b"CARD" + request % b"CHECK" + request % b"CONTACTLESS")
    import h11

    h = h11.Connection(h11.CLIENT)
    types = []
    for _ in range(3):
        h.send(h11.Request(method="GET", target="/", headers=[("host", "t")]))
        h.send(h11.EndOfMessage())
        body = b""
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                h.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        types.append(json.loads(body)["type"])
        h.start_next_cycle()
    assert types == ["CARD", "CHECK", "CONTACTLESS"]
    sock.close()


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
        b"GET /token HTTP/1.1\r\n\r\n",  # no Host
        b"GET /token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET /\x00\x01 HTTP/1.1\r\n\r\n",
        b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ],
)
def test_malformed_http_gets_400_and_close(listener, garbage: bytes) -> None:
    sock = connect(listener.port)
    sock.sendall(garbage)
    status, headers, body = raw_http_response(wait_closed(sock))
    assert status == 400
    assert json.loads(body)["error_code"] == 100
    sock.close()


def test_oversized_http_body_is_refused_and_closed(listener, creds) -> None:
    sock = connect(listener.port)
    body = b"type=CARD&pad=" + b"x" * (70 * 1024)
    sock.sendall(
        b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    try:
        sock.sendall(body)
    except (BrokenPipeError, ConnectionResetError):
        pass
    status, _, body = raw_http_response(wait_closed(sock))
    assert status == 400 and json.loads(body)["error_code"] == 100
    sock.close()


def test_oversized_http_headers_are_refused_and_closed(listener) -> None:
    sock = connect(listener.port)
    try:
        sock.sendall(b"GET /token HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (70 * 1024) + b"\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    status, _, body = raw_http_response(wait_closed(sock))
    assert status == 400 and json.loads(body)["error_code"] == 100
    sock.close()


def test_http_1_0_request_is_answered_and_closed(listener, creds) -> None:
    import base64

    sock = connect(listener.port)
    auth = base64.b64encode(f"{creds[0]}:{creds[1]}".encode())
    sock.sendall(b"GET /token?type=CARD HTTP/1.0\r\nAuthorization: Basic " + auth + b"\r\n\r\n")
    status, _, body = raw_http_response(wait_closed(sock))
    assert status == 200 and json.loads(body)["type"] == "CARD"
    sock.close()


def test_head_request_gets_a_bodyless_400_and_nothing_is_logged_as_a_failure(listener, creds, caplog) -> None:
    import base64

    sock = connect(listener.port)
    auth = base64.b64encode(f"{creds[0]}:{creds[1]}".encode())
    sock.sendall(b"HEAD /token?type=CARD HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + auth + b"\r\n\r\n")
    sock.settimeout(5)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "closed without an answer"
        head += chunk
    assert head.startswith(b"HTTP/1.1 400 ")
    sock.close()
    assert not [r for r in caplog.records if r.levelname == "ERROR" and r.name.startswith("terminals")]
