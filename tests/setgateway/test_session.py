"""One connection's transport rules without sockets (the sans-IO state machine).

The same rules are tested over real sockets against the running gateway in
``test_gateway_*.py``; here every branch is cheap to reach.
"""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from setgateway import framing
from setgateway.framing import MimeParser
from setgateway.session import (
    CHALLENGE,
    REFUSE,
    Authenticate,
    Close,
    Dispatch,
    GreetingDecision,
    Send,
    Session,
    State,
)


def new_session(max_outstanding: int = 2) -> Session:
    return Session(connection_id="gw1-1", host="gw1", max_outstanding=max_outstanding, max_message_bytes=100)


def sent(actions: list) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Send))


def frames(actions: list) -> list[framing.Frame]:
    return MimeParser(max_message_bytes=10**6).feed(sent(actions))


def opened(max_outstanding: int = 2) -> Session:
    session = new_session(max_outstanding)
    session.start(GreetingDecision(merchant_pk=7, challenge=False))
    assert session.state is State.OPEN
    return session


def payment(tag: str | None, body: bytes = b"\x30\x00") -> bytes:
    return framing.payment_message(body, msg_tag=tag)


def control(name: str, body: bytes = b"", tag: str | None = None) -> bytes:
    return framing.control_message(name, body, msg_tag=tag)


def test_an_unknown_address_gets_err_and_is_closed() -> None:
    session = new_session()
    actions = session.start(REFUSE)
    assert sent(actions) == b"-ERR|Invalid merchant address\r\n"
    assert isinstance(actions[-1], Close) and session.state is State.CLOSED
    assert session.receive(b"anything") == []


def test_an_address_merchant_is_open_with_an_empty_challenge() -> None:
    session = new_session()
    line = sent(session.start(GreetingDecision(merchant_pk=7, challenge=False)))
    assert line.startswith(b"+OK|gw1 SET gateway ready, connection gw1-1|") and line.endswith(b"|\r\n")
    assert session.merchant_pk == 7 and not session.needs_t30


def test_a_challenge_then_authentication() -> None:
    session = new_session()
    line = sent(session.start(CHALLENGE)).decode()
    greeting = framing.parse_greeting(line[:-2])
    assert greeting.ok and len(greeting.challenge) >= 32 and "|" not in greeting.challenge
    assert session.state is State.AUTHENTICATING and session.needs_t30
    actions = session.receive(b"Authentication|shop|")
    assert actions == []
    actions = session.receive(b"abc=\r\n")
    assert actions == [Authenticate(transport_id="shop", response="abc=", greeting=line[:-2])]
    reply = session.authentication_result(merchant_pk=7, transport_id="shop")
    assert sent(reply).startswith(b"+OK|") and session.state is State.OPEN and session.merchant_pk == 7


def test_challenges_are_fresh() -> None:
    lines = {sent(new_session().start(CHALLENGE)) for _ in range(20)}
    assert len(lines) == 20


def test_a_failed_authentication_closes() -> None:
    session = new_session()
    session.start(CHALLENGE)
    session.receive(b"Authentication|shop|wrong\r\n")
    actions = session.authentication_result(merchant_pk=None)
    assert sent(actions) == b"-ERR|Authentication failed\r\n" and isinstance(actions[-1], Close)


def test_not_an_authentication_message_closes() -> None:
    session = new_session()
    session.start(CHALLENGE)
    actions = session.receive(b"HELO there\r\n")
    assert sent(actions).startswith(b"-ERR|") and isinstance(actions[-1], Close)


def test_what_follows_the_authentication_waits_for_its_result() -> None:
    session = new_session()
    session.start(CHALLENGE)
    assert isinstance(session.receive(b"Authentication|shop|x\r\n" + payment("early"))[0], Authenticate)
    actions = session.authentication_result(merchant_pk=7, transport_id="shop")
    assert isinstance(actions[-1], Dispatch) and actions[-1].msg_tag == "early"


def test_t30_and_t120() -> None:
    session = new_session()
    session.start(CHALLENGE)
    assert isinstance(session.timed_out()[0], Close)
    session = opened()
    assert not session.needs_t30 and not session.needs_t120
    session.shutdown()
    assert session.needs_t120
    assert isinstance(session.timed_out()[0], Close) and session.state is State.CLOSED


def test_requests_are_dispatched_and_answered_in_any_order_with_their_tags() -> None:
    session = opened()
    first, second = session.receive(payment("a") + payment("b"))
    assert (first.msg_tag, second.msg_tag) == ("a", "b") and session.outstanding == 2
    answer_b = frames(session.answered(second.request_id, b"B"))
    answer_a = frames(session.answered(first.request_id, b"A"))
    assert (answer_b[0].msg_tag, answer_b[0].body) == ("b", b"B")
    assert (answer_a[0].msg_tag, answer_a[0].body) == ("a", b"A")
    assert session.outstanding == 0 and session.idle


def test_too_many_outstanding_requests_get_retry() -> None:
    session = opened(max_outstanding=2)
    actions = session.receive(payment("1") + payment("2") + payment("3"))
    assert [type(a) for a in actions] == [Dispatch, Dispatch, Send]
    (status,) = frames(actions[2:])
    assert (status.control, status.params["class"], status.params["delay"], status.msg_tag, status.body) == (
        "status", "retry", "1", "3", b"Too many outstanding requests")


def test_echo_and_echo_reply() -> None:
    session = opened()
    (reply,) = frames(session.receive(control("echo", b"Are you there?", tag="e1")))
    assert (reply.control, reply.body, reply.msg_tag) == ("echo-reply", b"Are you there?", "e1")
    assert session.receive(control("echo-reply", b"x")) == []


def test_merchant_close_gets_close_reply_and_drops_outstanding_answers() -> None:
    session = opened()
    (dispatch,) = session.receive(payment("p"))
    actions = session.receive(control("close", b"idle-connection", tag="c"))
    (reply,) = frames(actions)
    assert (reply.control, reply.body, reply.msg_tag) == ("close-reply", b"idle-connection", "c")
    assert isinstance(actions[-1], Close)
    assert session.answered(dispatch.request_id, b"late") == []


def test_our_close_lets_answers_out_refuses_new_requests_and_waits_for_close_reply() -> None:
    session = opened()
    (dispatch,) = session.receive(payment("p"))
    (close,) = frames(session.shutdown())
    assert close.control == "close" and session.state is State.CLOSING
    (refused,) = frames(session.receive(payment("late")))
    assert (refused.params["class"], refused.msg_tag, refused.body) == ("closing", "late", b"Connection is closing")
    (echo,) = frames(session.receive(control("echo", b"?")))
    assert echo.control == "echo-reply"
    (answer,) = frames(session.answered(dispatch.request_id, b"A"))
    assert answer.msg_tag == "p"
    actions = session.receive(control("close-reply", b"bye"))
    assert actions == [Close("close-reply")]


def test_a_close_crossing_ours_is_taken_as_close_reply() -> None:
    session = opened()
    session.shutdown()
    assert session.receive(control("close", b"x")) == [Close("close crossed ours")]


def test_a_merchant_status_is_not_answered() -> None:
    session = opened()
    data = framing.status_message("failed", "Bad content type", msg_tag="z")
    assert session.receive(data) == []


def test_content_problems_get_failed_status_with_the_tag() -> None:
    session = opened()
    data = b'Content-Type: image/png;msg-tag="m9"\r\nContent-Length: 0\r\n\r\n'
    (status,) = frames(session.receive(data))
    assert (status.params["class"], status.body, status.msg_tag) == ("failed", b"Bad content type", "m9")
    assert session.state is State.OPEN


def test_an_oversized_message_gets_failed_and_its_body_is_skipped() -> None:
    session = opened()
    big = framing.payment_message(b"x" * 500, msg_tag="big") + payment("after")
    actions = session.receive(big)
    (status,) = frames([a for a in actions if isinstance(a, Send)])
    assert (status.params["class"], status.body, status.msg_tag) == ("failed", b"Message too big", "big")
    assert isinstance(actions[-1], Dispatch) and actions[-1].msg_tag == "after"


def test_unframeable_headers_get_bad_message_and_close() -> None:
    session = opened()
    actions = session.receive(b"Content-Type: application/set-payment\r\n\r\n")
    (status,) = frames(actions)
    assert (status.params["class"], status.body, status.msg_tag) == ("failed", b"Bad message", "")
    assert isinstance(actions[-1], Close) and session.state is State.CLOSED


@given(st.binary(max_size=400), st.sampled_from(["open", "authenticating", "greeting"]))
@settings(max_examples=500)
def test_any_bytes_in_any_state_give_only_actions(data: bytes, state: str) -> None:
    session = new_session()
    if state == "open":
        session.start(GreetingDecision(merchant_pk=1, challenge=False))
    elif state == "authenticating":
        session.start(CHALLENGE)
    for action in session.receive(data):
        assert isinstance(action, Send | Close | Authenticate | Dispatch)
