"""The SET transport's framing without sockets: lines, MIME headers, bodies,
what maps to which status, and garbage that only ever raises FramingError."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from setgateway import framing
from setgateway.framing import Frame, FramingError, MimeParser, Oversized

MAX = 1024


def parse(data: bytes, max_message_bytes: int = MAX) -> list[framing.Event]:
    return MimeParser(max_message_bytes=max_message_bytes).feed(data)


def one(data: bytes) -> Frame:
    events = parse(data)
    assert len(events) == 1 and isinstance(events[0], Frame), events
    return events[0]


# The spec's own samples, CRLF for its "(" marks (the blank lines between its
# header lines are its word processor's paragraphs, not part of the examples).
SPEC_ECHO = (
    b"MIME-version: 1.0\r\nContent-type: text/set-transport;control=echo\r\nContent-length: 14\r\n"
    b"Content-transfer-encoding: 7bit\r\n\r\nAre you there?\r\n"
)
SPEC_RETRY = (
    b"MIME-version: 1.0\r\nContent-type: text/set-transport;control=status;\r\n"
    b'  class=retry;delay=5;msg-tag="xxx"\r\nContent-length: 29\r\nContent-transfer-encoding: 7bit\r\n\r\n'
    b"Too many outstanding requests\r\n"
)


def test_the_spec_echo_sample() -> None:
    frame = one(SPEC_ECHO)
    assert (frame.content_type, frame.control, frame.body, frame.problem) == (
        "text/set-transport", "echo", b"Are you there?", None)


def test_a_folded_header_and_its_parameters() -> None:
    frame = one(SPEC_RETRY)
    assert frame.control == "status"
    assert frame.params["class"] == "retry" and frame.params["delay"] == "5"
    assert frame.msg_tag == "xxx"
    assert frame.body == b"Too many outstanding requests"


def test_names_and_values_are_case_insensitive_and_the_tag_is_kept_as_sent() -> None:
    frame = one(b'CONTENT-TYPE: Application/SET-Payment; MSG-TAG="Shop.42"\r\ncontent-LENGTH: 3\r\n'
                b"CONTENT-TRANSFER-ENCODING: BINARY\r\n\r\nabc")
    assert frame.content_type == framing.SET_PAYMENT
    assert frame.transfer_encoding == "binary" and frame.problem is None
    assert frame.msg_tag == "Shop.42"


def test_folding_with_a_tab_and_many_lines() -> None:
    frame = one(b"Content-Type: text/set-transport;\r\n\tcontrol=close;\r\n msg-tag=zzz\r\nContent-Length: 0\r\n\r\n")
    assert frame.control == "close" and frame.msg_tag == "zzz"


def test_unknown_headers_are_ignored_and_mime_version_is_optional() -> None:
    frame = one(b"Date: Tue, 1 Dec 2026 10:00:00 GMT\r\nX-Anything: \xff\xfe\r\n"
                b"Content-Type: application/set-payment\r\nContent-Length: 2\r\n\r\nhi")
    assert frame.body == b"hi" and frame.msg_tag is None and frame.problem is None


def test_a_quoted_tag_may_hold_specials_and_escapes() -> None:
    frame = one(b'Content-Type: application/set-payment;msg-tag="a;b \\"c\\""\r\nContent-Length: 0\r\n\r\n')
    assert frame.msg_tag == 'a;b "c"'


def test_stray_crlfs_between_messages_are_skipped() -> None:
    message = b"Content-Type: application/set-payment\r\nContent-Length: 1\r\n\r\nx"
    events = parse(b"\r\n\r\n" + message + b"\r\n" + message + b"\r\n\r\n\r\n" + message)
    assert [e.body for e in events] == [b"x", b"x", b"x"]


def test_the_body_is_exactly_content_length_bytes_even_with_crlfs_inside() -> None:
    body = b"\r\n\r\nContent-Length: 99\r\n\r\n"
    frame = one(b"Content-Type: application/set-payment\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert frame.body == body


def test_bytes_arriving_one_at_a_time() -> None:
    parser = MimeParser(max_message_bytes=MAX)
    events: list[framing.Event] = []
    for byte in SPEC_RETRY * 2:
        events += parser.feed(bytes([byte]))
    assert len(events) == 2 and all(e.msg_tag == "xxx" for e in events)
    assert parser.idle


@pytest.mark.parametrize(("head", "problem"), [
    (b"Content-Length: 0\r\n", framing.BAD_CONTENT_TYPE),
    (b"Content-Type: image/png\r\nContent-Length: 0\r\n", framing.BAD_CONTENT_TYPE),
    (b"Content-Type: text/set-transport\r\nContent-Length: 0\r\n", framing.BAD_CONTENT_TYPE),
    (b"Content-Type: text/set-transport;control=dance\r\nContent-Length: 0\r\n", framing.BAD_CONTENT_TYPE),
    (b"Content-Type: nonsense\r\nContent-Length: 0\r\n", framing.BAD_CONTENT_TYPE),
    (b"Content-Type: application/set-payment\r\nContent-Transfer-Encoding: base64\r\nContent-Length: 0\r\n",
     framing.BAD_TRANSFER_ENCODING),
    (b"Content-Type: application/set-payment\r\nContent-Transfer-Encoding: 7bit\r\nContent-Length: 0\r\n",
     framing.BAD_TRANSFER_ENCODING),
    (b"Content-Type: text/set-transport;control=echo\r\nContent-Transfer-Encoding: quoted-printable\r\n"
     b"Content-Length: 0\r\n", framing.BAD_TRANSFER_ENCODING),
])
def test_content_problems_keep_the_framing(head: bytes, problem: str) -> None:
    after = b"Content-Type: text/set-transport;control=echo\r\nContent-Length: 2\r\n\r\nok"
    events = parse(head + b"\r\n" + after)
    assert events[0].problem == problem
    assert events[1].body == b"ok" and events[1].problem is None


def test_a_tag_over_32_characters_is_a_bad_content_type_and_not_echoed() -> None:
    frame = one(b"Content-Type: application/set-payment;msg-tag=" + b"t" * 33 + b"\r\nContent-Length: 0\r\n\r\n")
    assert frame.problem == framing.BAD_CONTENT_TYPE and frame.msg_tag is None
    ok = one(b"Content-Type: application/set-payment;msg-tag=" + b"t" * 32 + b"\r\nContent-Length: 0\r\n\r\n")
    assert ok.problem is None and ok.msg_tag == "t" * 32


def test_an_oversized_body_is_reported_at_once_and_skipped() -> None:
    parser = MimeParser(max_message_bytes=10)
    events = parser.feed(b'Content-Type: application/set-payment;msg-tag="big"\r\nContent-Length: 25\r\n\r\n12345')
    assert events == [Oversized(msg_tag="big", length=25, content_type=framing.SET_PAYMENT)]
    assert parser.feed(b"6789012345") == []
    events = parser.feed(b"1234567890" + b"Content-Type: application/set-payment\r\nContent-Length: 1\r\n\r\nz")
    assert [e.body for e in events] == [b"z"]
    assert parser.buffered == 0


@pytest.mark.parametrize("data", [
    b"Content-Type: application/set-payment\r\n\r\n",  # no Content-Length
    b"Content-Type: application/set-payment\r\nContent-Length: ten\r\n\r\n",
    b"Content-Type: application/set-payment\r\nContent-Length: -1\r\n\r\n",
    b"Content-Type: application/set-payment\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not MIME
    b" folded first\r\nContent-Length: 0\r\n\r\n",
    b"Content-Type: application/set-payment\nContent-Length: 0\r\n\r\n",  # bare LF
    b"Content Type: x\r\nContent-Length: 0\r\n\r\n",
])
def test_headers_that_cannot_be_framed(data: bytes) -> None:
    parser = MimeParser(max_message_bytes=MAX)
    with pytest.raises(FramingError):
        parser.feed(data)
    with pytest.raises(FramingError):
        parser.feed(b"anything")  # once lost, the framing stays lost


def test_endless_headers_are_cut() -> None:
    parser = MimeParser(max_message_bytes=MAX)
    with pytest.raises(FramingError):
        for _ in range(100):
            parser.feed(b"X-Padding: " + b"a" * 1000 + b"\r\n")


def test_writing_messages_reads_back() -> None:
    wire = (framing.payment_message(b"\x30\x00", msg_tag='q"t')
            + framing.status_message(framing.RETRY, framing.TOO_MANY_OUTSTANDING, msg_tag="m-1", delay=1)
            + framing.status_message(framing.FAILED, framing.BAD_MESSAGE, msg_tag=None)
            + framing.control_message("echo-reply", b"Are you there?"))
    payment, retry, failed, echo = parse(wire)
    assert payment.body == b"\x30\x00" and payment.msg_tag == 'q"t' and payment.transfer_encoding == "binary"
    assert (retry.control, retry.params["class"], retry.params["delay"], retry.msg_tag, retry.body) == (
        "status", "retry", "1", "m-1", b"Too many outstanding requests")
    assert failed.msg_tag == "" and failed.params["class"] == "failed"
    assert echo.control == "echo-reply" and echo.transfer_encoding == "7bit"


# --- Lines --------------------------------------------------------------------------------------


def test_greeting_lines() -> None:
    assert framing.greeting_line(ok=False, text="Invalid merchant address") == b"-ERR|Invalid merchant address\r\n"
    assert framing.greeting_line(ok=True, text="gw ready", challenge="") == b"+OK|gw ready|\r\n"
    line = framing.greeting_line(ok=True, text="a|b", challenge="c")
    assert line == b"+OK|a?b|c\r\n"
    parsed = framing.parse_greeting(line[:-2].decode())
    assert (parsed.ok, parsed.text, parsed.challenge) == (True, "a?b", "c")
    # The spec's sample, spaces and all.
    sample = framing.parse_greeting("+OK |payment.gateway.com is ready.| < 3141 12:34:56 01/23/45 ppayment.gateway.com>")
    assert sample.ok and sample.challenge == "< 3141 12:34:56 01/23/45 ppayment.gateway.com>"
    assert not framing.parse_greeting("-ERR|").ok


def test_read_line() -> None:
    buffer = bytearray(b"Authentication|shop|abc=\r\nrest")
    assert framing.read_line(buffer) == "Authentication|shop|abc="
    assert buffer == b"rest"
    assert framing.read_line(bytearray(b"partial\r")) is None
    for bad in (b"a" * 2000, b"bare\nline\r\n", b"\x00\r\n", "é\r\n".encode()):
        with pytest.raises(FramingError):
            framing.read_line(bytearray(bad))


def test_authentication_messages() -> None:
    auth = framing.parse_authentication("Authentication| shop |  abc= ")
    assert (auth.transport_id, auth.response) == ("shop", "abc=")
    for bad in ("Authentication|shop", "Auth|shop|x", "Authentication||x", "Authentication|a|b|c"):
        with pytest.raises(FramingError):
            framing.parse_authentication(bad)


def test_the_authentication_response_is_base64_hmac_sha256_of_greeting_and_transport_id() -> None:
    import base64
    import hashlib
    import hmac

    greeting = "+OK|gw ready, connection c1|ch4ll3nge"
    expected = base64.b64encode(hmac.new("sécret".encode(), (greeting + "shop").encode(), hashlib.sha256).digest())
    response = framing.authentication_response(greeting=greeting, transport_id="shop", secret="sécret")
    assert response == expected.decode()
    assert framing.authentication_valid(greeting=greeting, transport_id="shop", secret="sécret", response=response)
    assert not framing.authentication_valid(greeting=greeting, transport_id="shop", secret="other", response=response)
    assert not framing.authentication_valid(greeting=greeting + "x", transport_id="shop", secret="sécret",
                                            response=response)
    assert not framing.authentication_valid(greeting=greeting, transport_id="shop", secret="sécret", response="é")


# --- Fuzzing ------------------------------------------------------------------------------------

header_names = st.sampled_from(["Content-Type", "content-length", "MIME-Version", "Content-Transfer-Encoding",
                                "X-Other", "Date"])
pieces = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"\r\n", b"\r\n\r\n", b" ", b"\t", b":", b";", b'"', b"=", b"msg-tag=",
                     b"application/set-payment", b"text/set-transport;control=echo", b"Content-Length: 3",
                     b"Content-Length: 99999999", b"Content-Type: ", SPEC_ECHO, SPEC_RETRY]),
    header_names.map(lambda n: n.encode() + b": "),
)
streams = st.lists(pieces, max_size=30).map(b"".join)


@given(streams, st.lists(st.integers(1, 50), max_size=40))
@settings(max_examples=1000)
def test_garbage_raises_only_framing_errors_whatever_the_chunking(stream: bytes, cuts: list[int]) -> None:
    def run(chunks: list[bytes]) -> tuple[list[framing.Event], bool]:
        parser = MimeParser(max_message_bytes=64)
        events: list[framing.Event] = []
        try:
            for chunk in chunks:
                events += parser.feed(chunk)
        except FramingError as exc:
            return events + exc.events, True
        return events, False

    whole = run([stream])
    chunks, position = [], 0
    for cut in cuts:
        chunks.append(stream[position:position + cut])
        position += cut
    chunks.append(stream[position:])
    # Chunking changes nothing but when a framing error is seen (a partial header cannot be judged early).
    pieces_events, pieces_error = run(chunks)
    assert pieces_error == whole[1]
    assert pieces_events == whole[0]


@given(st.binary(max_size=600))
@settings(max_examples=500)
def test_random_bytes_as_lines(data: bytes) -> None:
    buffer = bytearray(data)
    try:
        line = framing.read_line(buffer)
        if line is not None:
            try:
                framing.parse_authentication(line)
            except FramingError:
                pass
            try:
                framing.parse_greeting(line)
            except FramingError:
                pass
    except FramingError:
        pass
