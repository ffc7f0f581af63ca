"""Every transport rule of the SET spec, over real sockets against the running gateway.

The two greeting forms and -ERR for an unknown address; t30 in Greeting and
Authenticating; a wrong HMAC closes; folded and mixed-case headers; echo and
echo-reply; merchant close and close-reply; our close with t120; status
failed / retry / closing with the offending msg-tag; too many outstanding
requests; an oversized message; an undecodable DER body; the diagnostic port
journaling one message per connection.
"""
from __future__ import annotations

import time

import pytest

from setgateway import framing, payload
from setgateway.models import Authentication, DiagnosticLog
from setgateway.payload import AuthRes, ErrorMsg, InqReq

from .conftest import EXPIRY, HAPPY_VISA, Raw, SetMerchant, eur

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = "tests.setgateway.acquirers.SlowForSomeAmounts"


def opened(raw, merchant: SetMerchant, source: str = "127.0.0.1") -> Raw:  # type: ignore[no-untyped-def]
    connection = raw(source)
    _, reply = connection.authenticate(merchant)
    assert reply.startswith("+OK|"), reply
    return connection


def status(event: framing.Event) -> tuple[str, str, str | None]:
    assert isinstance(event, framing.Frame) and event.control == "status", event
    return event.params["class"], event.body.decode(), event.msg_tag


# --- Greeting and authentication ------------------------------------------------------------------


def test_the_two_greetings_and_err_for_an_unknown_address(raw, rules) -> None:  # type: ignore[no-untyped-def]
    by_address = SetMerchant(name="By Address", allowed_ips=["127.0.0.2"], authentication=Authentication.ADDRESS)
    SetMerchant(name="By Challenge", allowed_ips=["127.0.0.3"])

    no_challenge = raw("127.0.0.2")
    greeting = no_challenge.line()
    assert greeting.startswith("+OK|") and greeting.endswith("|"), greeting  # an empty challenge
    text = greeting.split("|")[1]
    assert "connection" in text and text.split()[0]  # our host name and the connection id
    no_challenge.send(framing.control_message("echo", b"open at once?", msg_tag="e"))
    echo = no_challenge.event()
    assert (echo.control, echo.body, echo.msg_tag) == ("echo-reply", b"open at once?", "e")
    no_challenge.request(InqReq("nothing"), "q")
    assert no_challenge.answer()[1].code == payload.UNKNOWN_TRANS_ID  # Open as that merchant
    assert by_address.pk

    challenged = raw("127.0.0.3")
    fields = challenged.line().split("|")
    assert fields[0] == "+OK" and len(fields[2]) >= 32

    unknown = raw("127.0.0.4")
    assert unknown.closed() == b"-ERR|Invalid merchant address\r\n"


def test_connection_ids_and_challenges_are_unique(raw, shop) -> None:  # type: ignore[no-untyped-def]
    greetings = [raw().line().split("|") for _ in range(5)]
    assert len({g[1] for g in greetings}) == 5 and len({g[2] for g in greetings}) == 5


def test_challenge_authentication_and_a_wrong_hmac(raw, shop) -> None:  # type: ignore[no-untyped-def]
    good = raw()
    _, reply = good.authenticate(shop)
    assert reply.startswith("+OK|")
    bad = raw()
    _, reply = bad.authenticate(shop, secret="not-the-secret")
    assert reply == "-ERR|Authentication failed"
    assert bad.closed() == b""


def test_t30_in_greeting_and_authenticating(start_gateway, shop) -> None:  # type: ignore[no-untyped-def]
    running = start_gateway(t30=0.5)
    silent = Raw(running.port)
    silent.line()  # the greeting
    began = time.monotonic()
    assert silent.closed(timeout=10) == b""
    assert time.monotonic() - began >= 0.4
    partial = Raw(running.port)
    partial.line()
    partial.send(b"Authentication|" + shop.transport_id.encode())  # never finished
    assert partial.closed(timeout=10) == b""
    slow_drip = Raw(running.port)
    slow_drip.line()
    for _ in range(4):  # bytes keep coming, but t30 is a deadline for the whole message
        time.sleep(0.2)
        try:
            slow_drip.send(b"x")
        except OSError:
            break
    assert slow_drip.closed(timeout=10) == b""
    assert running.gateway.counters.handshake_timeouts == 3


def test_unknown_addresses_may_be_accepted_for_merchants_without_one(start_gateway, rules, settings) -> None:  # type: ignore[no-untyped-def]
    roaming = SetMerchant(name="Roaming")  # challenge, no registered address
    assert Raw(start_gateway().port).closed() == b"-ERR|Invalid merchant address\r\n"
    settings.SET_ACCEPT_UNKNOWN_ADDRESSES = True
    _, reply = Raw(start_gateway().port).authenticate(roaming)
    assert reply.startswith("+OK|")


def test_not_an_authentication_message(raw, shop) -> None:  # type: ignore[no-untyped-def]
    connection = raw()
    connection.line()
    connection.send(b"Hello|there\r\n")
    assert connection.closed().startswith(b"-ERR|")


def test_registered_addresses_bind_a_challenge_merchant(raw, rules) -> None:  # type: ignore[no-untyped-def]
    fixed = SetMerchant(name="Fixed", allowed_ips=["127.0.0.5"], authentication=Authentication.BOTH)
    SetMerchant(name="Elsewhere", allowed_ips=["127.0.0.6"])
    _, reply = raw("127.0.0.5").authenticate(fixed)
    assert reply.startswith("+OK|")
    _, reply = raw("127.0.0.6").authenticate(fixed)  # a registered address, but another merchant's
    assert reply == "-ERR|Authentication failed"


# --- Open: messages ------------------------------------------------------------------------------


def test_folded_and_mixed_case_headers(raw, shop) -> None:  # type: ignore[no-untyped-def]
    connection = opened(raw, shop)
    body = payload.encode(InqReq("none"))
    connection.send(
        b"mime-VERSION: 1.0\r\nX-Unknown: ignored\r\n"
        b"CONTENT-type: Application/SET-Payment;\r\n\tMSG-TAG=\"Folded.1\"\r\n"
        b"content-transfer-ENCODING: BINARY\r\nContent-LENGTH: %d\r\n\r\n" % len(body) + body + b"\r\n\r\n"
    )
    tag, answer = connection.answer()
    assert tag == "Folded.1" and isinstance(answer, ErrorMsg) and answer.code == payload.UNKNOWN_TRANS_ID


def test_echo_and_echo_reply(raw, shop) -> None:  # type: ignore[no-untyped-def]
    connection = opened(raw, shop)
    connection.send(framing.control_message("echo", b"Are you there?", msg_tag="echo-1"))
    reply = connection.event()
    assert (reply.control, reply.body, reply.msg_tag) == ("echo-reply", b"Are you there?", "echo-1")
    connection.send(framing.control_message("echo-reply", b"nobody asked"))  # ignored, connection still open
    connection.send(framing.control_message("echo", b"again"))
    assert connection.event().body == b"again"


def test_merchant_close_and_close_reply(raw, shop) -> None:  # type: ignore[no-untyped-def]
    connection = opened(raw, shop)
    connection.send(framing.control_message("close", b"idle-connection", msg_tag="bye"))
    reply = connection.event()
    assert (reply.control, reply.body, reply.msg_tag) == ("close-reply", b"idle-connection", "bye")
    assert connection.closed() in (b"", b"\r\n")  # (the stray CRLF after the reply), then the close


def test_a_merchant_status_gets_no_answer(raw, shop) -> None:  # type: ignore[no-untyped-def]
    connection = opened(raw, shop)
    connection.send(framing.status_message("failed", "Bad content type", msg_tag="z"))
    connection.send(framing.control_message("echo", b"after"))
    assert connection.event().body == b"after"  # the first thing back is the echo-reply


def test_failed_statuses_carry_the_offending_tag(raw, shop) -> None:  # type: ignore[no-untyped-def]
    connection = opened(raw, shop)
    connection.send(b'Content-Type: image/png;msg-tag="png"\r\nContent-Length: 3\r\n\r\nabc')
    assert status(connection.event()) == ("failed", "Bad content type", "png")
    connection.send(b'Content-Type: application/set-payment;msg-tag="b64"\r\nContent-Transfer-Encoding: base64\r\n'
                    b"Content-Length: 4\r\n\r\nMAA=")
    assert status(connection.event()) == ("failed", "Bad content-transfer-encoding", "b64")
    connection.send(b"Content-Type: text/set-transport;control=dance\r\nContent-Length: 0\r\n\r\n")
    assert status(connection.event()) == ("failed", "Bad content type", "")
    connection.request(InqReq("still-open"), "after")
    assert connection.answer()[0] == "after"


def test_an_oversized_message_is_refused_and_skipped(raw, shop) -> None:  # type: ignore[no-untyped-def]
    connection = opened(raw, shop)  # the test gateway's maximum is 4096 bytes
    connection.send(b'Content-Type: application/set-payment;msg-tag="big"\r\nContent-Length: 10000\r\n\r\n')
    assert status(connection.event()) == ("failed", "Message too big", "big")
    connection.send(b"\x00" * 10000)  # skipped as it arrives
    connection.request(InqReq("after-big"), "after")
    assert connection.answer()[0] == "after"


def test_an_undecodable_der_body_is_error_1(raw, shop) -> None:  # type: ignore[no-untyped-def]
    connection = opened(raw, shop)
    connection.send(framing.payment_message(b"\x30\x03\x02\x01", msg_tag="junk"))
    tag, answer = connection.answer()
    assert tag == "junk" and answer == ErrorMsg(payload.NOT_DECODABLE, "not a DER GatewayMessage")


def test_headers_that_cannot_be_parsed_are_bad_message_and_close(raw, shop) -> None:  # type: ignore[no-untyped-def]
    connection = opened(raw, shop)
    connection.send(b"Content-Type: application/set-payment;msg-tag=x\r\n\r\n")  # no Content-Length
    assert status(connection.event()) == ("failed", "Bad message", "")
    assert connection.closed() in (b"", b"\r\n")


def test_too_many_outstanding_requests_get_retry(start_gateway, shop, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings.PAYMENTS_ACQUIRER = SLOW
    monkeypatch.setenv("SLOW_ACQUIRER_SECONDS", "1.0")
    running = start_gateway(max_outstanding=2)
    connection = Raw(running.port)
    connection.authenticate(shop)
    for n in range(3):
        connection.request(payload.AuthReq(f"o{n}", HAPPY_VISA, EXPIRY, eur("10.99")), f"t{n}")
    assert status(connection.event()) == ("retry", "Too many outstanding requests", "t2")
    answers = {connection.answer()[0] for _ in range(2)}
    assert answers == {"t0", "t1"}
    connection.request(payload.AuthReq("o2", HAPPY_VISA, EXPIRY, eur("10.99")), "t2")  # resent after the delay
    assert connection.answer()[0] == "t2"
    connection.close()


def test_requests_are_answered_as_they_finish(raw, shop, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings.PAYMENTS_ACQUIRER = SLOW
    monkeypatch.setenv("SLOW_ACQUIRER_SECONDS", "1.5")
    connection = opened(raw, shop)
    connection.request(payload.AuthReq("slow", HAPPY_VISA, EXPIRY, eur("10.99")), "slow")
    connection.request(payload.AuthReq("fast", HAPPY_VISA, EXPIRY, eur("10.00")), "fast")
    connection.request(InqReq("other"), "inquiry")
    answers = [connection.answer() for _ in range(3)]
    assert {tag for tag, _ in answers[:2]} == {"fast", "inquiry"}  # sent after "slow", answered before it
    assert answers[2][0] == "slow" and isinstance(answers[2][1], AuthRes) and answers[2][1].status == "approved"


# --- Our close (SIGTERM) ---------------------------------------------------------------------------


def test_our_close_lets_answers_out_refuses_new_requests_and_waits_for_close_reply(
    start_gateway, shop, settings, monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    settings.PAYMENTS_ACQUIRER = SLOW
    monkeypatch.setenv("SLOW_ACQUIRER_SECONDS", "1.0")
    running = start_gateway(t120=10)
    connection = Raw(running.port)
    connection.authenticate(shop)
    connection.request(payload.AuthReq("in-flight", HAPPY_VISA, EXPIRY, eur("10.99")), "in-flight")
    time.sleep(0.3)
    stopping = running.stop_async()
    close = connection.event()
    assert close.control == "close" and close.body == b"Gateway going out of service"
    connection.request(InqReq("late"), "late")
    assert status(connection.event()) == ("closing", "Connection is closing", "late")
    connection.send(framing.control_message("echo", b"still there?"))
    assert connection.event().control == "echo-reply"
    tag, answer = connection.answer()  # the outstanding answer still goes out
    assert tag == "in-flight" and answer.status == "approved"
    connection.send(framing.control_message("close-reply", close.body))
    assert connection.closed() in (b"", b"\r\n")
    stopping.result(20)


def test_our_close_cuts_the_connection_after_t120(start_gateway, shop) -> None:  # type: ignore[no-untyped-def]
    running = start_gateway(t120=1.0)
    connection = Raw(running.port)
    connection.authenticate(shop)
    began = time.monotonic()
    stopping = running.stop_async()
    assert connection.event().control == "close"
    assert connection.closed(timeout=15) in (b"", b"\r\n")  # no close-reply from us: closed at t120
    assert time.monotonic() - began >= 0.9
    stopping.result(20)


def test_an_idle_connection_gets_a_graceful_close(start_gateway, shop) -> None:  # type: ignore[no-untyped-def]
    running = start_gateway(idle_timeout=0.5)
    connection = Raw(running.port)
    connection.authenticate(shop)
    close = connection.event()
    assert (close.control, close.body) == ("close", b"idle-connection")
    connection.send(framing.control_message("close-reply", close.body))
    assert connection.closed() in (b"", b"\r\n")


# --- The diagnostic log port ---------------------------------------------------------------------


def test_the_diagnostic_port_journals_one_message_per_connection(gateway, rules) -> None:  # type: ignore[no-untyped-def]
    shop = SetMerchant(name="Diagnosing", allowed_ips=["127.0.0.7"])
    body = b"\x30\x13" + HAPPY_VISA.encode() + b"xyz"
    connection = Raw(gateway.diag_port, "127.0.0.7")
    connection.send(framing.payment_message(body, msg_tag="diag-1") + framing.payment_message(b"second", msg_tag="2"))
    assert connection.closed() == b""  # no greeting, no answer
    (row,) = DiagnosticLog.objects.all()
    assert (row.merchant_id, row.peer_ip, row.size, row.content_type, row.msg_tag) == (
        shop.pk, "127.0.0.7", len(body), "application/set-payment", "diag-1")
    assert bytes(row.body) == b"\x30\x13424242******4242xyz" and "not a valid GatewayMessage" in row.summary

    unknown = Raw(gateway.diag_port, "127.0.0.8")
    unknown.send(b'Content-Type: application/set-payment;msg-tag="huge"\r\nContent-Length: 999999\r\n\r\n')
    assert unknown.closed() == b""
    huge = DiagnosticLog.objects.get(msg_tag="huge")
    assert huge.merchant_id is None and huge.size == 999999 and not huge.body_kept


def test_the_diagnostic_port_closes_a_silent_connection_after_t30(start_gateway, rules) -> None:  # type: ignore[no-untyped-def]
    running = start_gateway(t30=0.5)
    connection = Raw(running.diag_port)
    assert connection.closed(timeout=10) == b""
    assert not DiagnosticLog.objects.exists()


# --- Live connections, as staff see them ------------------------------------------------------------


def test_live_connections_are_published_for_the_back_office(raw, shop, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from setgateway.models import LiveConnection

    settings.PAYMENTS_ACQUIRER = SLOW
    monkeypatch.setenv("SLOW_ACQUIRER_SECONDS", "2.0")
    connection = opened(raw, shop)
    connection.request(payload.AuthReq("live", HAPPY_VISA, EXPIRY, eur("10.99")), "live")

    def published(predicate) -> LiveConnection:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows = [r for r in LiveConnection.objects.all() if predicate(r)]
            if rows:
                return rows[0]
            time.sleep(0.05)
        pytest.fail(f"not published: {list(LiveConnection.objects.values())}")

    row = published(lambda r: r.outstanding == 1)
    assert (row.merchant_id, row.state) == (shop.pk, "open")
    assert row.peer.startswith("127.0.0.1:")
    connection.answer()
    published(lambda r: r.outstanding == 0)
    connection.send(framing.control_message("close", b"bye"))
    connection.closed()
    deadline = time.monotonic() + 10
    while LiveConnection.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not LiveConnection.objects.exists()


def test_garbage_on_the_wire_never_crashes_the_gateway(raw, gateway, shop) -> None:  # type: ignore[no-untyped-def]
    import random

    rng = random.Random(20261202)
    pieces = [b"\r\n", b"Content-Type: ", b"application/set-payment", b"text/set-transport;control=echo",
              b"Content-Length: 5", b"Content-Length: 99999999", b";msg-tag=\"", b"\t", b" ", b":", b"\x00", b"\xff",
              framing.payment_message(b"\x30\x00", msg_tag="g"), framing.control_message("close", b"x")]
    for n in range(40):
        blob = b"".join(rng.choice(pieces) if rng.random() < 0.6 else rng.randbytes(rng.randint(1, 40))
                        for _ in range(rng.randint(1, 30)))
        target = gateway.diag_port if n % 4 == 3 else gateway.port
        connection = Raw(target)
        try:
            if target == gateway.port:
                connection.authenticate(shop) if n % 2 else connection.line()
            connection.send(blob)
            connection.sock.shutdown(1)
            connection.closed(timeout=10)
        except OSError:
            pass  # the gateway may close first: that is an answer too
        finally:
            connection.close()
    healthy = opened(raw, shop)
    healthy.request(InqReq("after-garbage"), "ok")
    assert healthy.answer()[0] == "ok"
    assert gateway.gateway.counters.errors == 0 and gateway.gateway.diagnostic_counters.errors == 0
