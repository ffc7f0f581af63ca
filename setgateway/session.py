"""One SET connection's transport rules, as a state machine with no I/O (sans-IO).

The spec's states Closed, Greeting, Authenticating, Open, Closing and what
each message does in each of them live here; the listener only moves
bytes, runs the actions and keeps the timers (t30 while ``needs_t30``,
t120 while ``needs_t120``). Every method returns the actions to carry out,
in order:

- ``Send(data)``: write these bytes;
- ``Close(reason)``: close the connection once what was sent is flushed;
- ``Authenticate(...)``: check an Authentication message (a database
  look-up), then call ``authentication_result``;
- ``Dispatch(request_id, msg_tag, body)``: run one SET request (database
  work, possibly long), then call ``answered``. Requests run concurrently
  and their answers go out in the order they finish.
"""
from __future__ import annotations

import enum
import logging
import secrets
from dataclasses import dataclass, field

from . import framing

logger = logging.getLogger("setgateway.session")


class State(enum.Enum):
    GREETING = "greeting"
    AUTHENTICATING = "authenticating"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class Close:
    reason: str


@dataclass(frozen=True)
class Authenticate:
    transport_id: str
    response: str = field(repr=False)
    greeting: str  # the greeting line the HMAC covers


@dataclass(frozen=True)
class Dispatch:
    request_id: int
    msg_tag: str | None
    body: bytes = field(repr=False)


Action = Send | Close | Authenticate | Dispatch


@dataclass(frozen=True)
class GreetingDecision:
    """What the source address allows (decided by a database look-up):

    - ``refuse``: registered to no SET merchant (and unknown addresses are not accepted);
    - ``merchant_pk`` set, ``challenge`` False: the one address-authenticated merchant, Open at once;
    - otherwise a challenge is issued.
    """

    refuse: bool = False
    merchant_pk: int | None = None
    challenge: bool = True


REFUSE = GreetingDecision(refuse=True)
CHALLENGE = GreetingDecision()


def new_challenge() -> str:
    """Fresh and unpredictable, printable ASCII without ``|`` (base64url: 192 bits)."""
    return secrets.token_urlsafe(24)


class Session:
    """The transport state of one merchant connection."""

    def __init__(self, *, connection_id: str, host: str, max_outstanding: int, max_message_bytes: int) -> None:
        self.connection_id = connection_id
        self.host = host
        self.max_outstanding = max_outstanding
        self.state = State.GREETING
        self.merchant_pk: int | None = None
        self.transport_id: str = ""
        self.greeting = ""
        self.closed_by_us = False
        self._lines = bytearray()  # received in Greeting/Authenticating
        self._waiting_auth = False
        self._parser = framing.MimeParser(max_message_bytes=max_message_bytes)
        self._outstanding: dict[int, str | None] = {}  # request id -> msg-tag
        self._next_request = 0

    # --- what the listener asks --------------------------------------------------------

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    @property
    def needs_t30(self) -> bool:
        """Greeting/Authenticating: the Authentication message is due within t30."""
        return self.state in (State.GREETING, State.AUTHENTICATING)

    @property
    def needs_t120(self) -> bool:
        """We sent close: the merchant's close-reply is due within t120."""
        return self.state is State.CLOSING and self.closed_by_us

    @property
    def buffered(self) -> int:
        return len(self._lines) + self._parser.buffered

    @property
    def mid_message(self) -> bool:
        """Part of a MIME message has arrived (it must be complete in time)."""
        return self.state in (State.OPEN, State.CLOSING) and not self._parser.idle

    @property
    def idle(self) -> bool:
        """Open, nothing outstanding and no message half-received."""
        return self.state is State.OPEN and not self._outstanding and self._parser.idle

    # --- events ---------------------------------------------------------------------------

    def start(self, decision: GreetingDecision) -> list[Action]:
        """The connection was accepted and its address looked up: greet."""
        if decision.refuse:
            self.state = State.CLOSED
            return [Send(framing.greeting_line(ok=False, text="Invalid merchant address")),
                    Close("address registered to no SET merchant")]
        text = f"{self.host} SET gateway ready, connection {self.connection_id}"
        if decision.merchant_pk is not None and not decision.challenge:
            line = framing.greeting_line(ok=True, text=text, challenge="")
            self.greeting = line[:-2].decode("ascii")
            self.merchant_pk = decision.merchant_pk
            self.state = State.OPEN
            return [Send(line), *self._take_lines_as_mime()]
        line = framing.greeting_line(ok=True, text=text, challenge=new_challenge())
        self.greeting = line[:-2].decode("ascii")
        self.state = State.AUTHENTICATING
        return [Send(line), *self._authentication_in_buffer()]

    def receive(self, data: bytes) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        if self.state in (State.GREETING, State.AUTHENTICATING):
            self._lines += data
            if self.state is State.GREETING or self._waiting_auth:
                return []  # kept until the greeting is out / the authentication is checked
            return self._authentication_in_buffer()
        return self._mime(data)

    def authentication_result(self, *, merchant_pk: int | None, transport_id: str = "") -> list[Action]:
        self._waiting_auth = False
        if self.state is not State.AUTHENTICATING:
            return []
        if merchant_pk is None:
            self.state = State.CLOSED
            return [Send(framing.reply_line(ok=False, text="Authentication failed")), Close("authentication failed")]
        self.merchant_pk, self.transport_id = merchant_pk, transport_id
        self.state = State.OPEN
        reply = Send(framing.reply_line(ok=True, text=f"Welcome {transport_id}, connection {self.connection_id}"))
        return [reply, *self._take_lines_as_mime()]

    def answered(self, request_id: int, body: bytes) -> list[Action]:
        """A request finished: its answer goes out, unless the connection is gone
        (the merchant's close drops outstanding answers)."""
        msg_tag = self._outstanding.pop(request_id, None)
        if self.state not in (State.OPEN, State.CLOSING):
            return []
        return [Send(framing.payment_message(body, msg_tag=msg_tag))]

    def shutdown(self, text: str = "Gateway going out of service") -> list[Action]:
        """We close (SIGTERM): send close, let outstanding answers out, await close-reply (t120)."""
        if self.state is State.OPEN:
            self.state = State.CLOSING
            self.closed_by_us = True
            return [Send(framing.control_message("close", text))]
        if self.state in (State.GREETING, State.AUTHENTICATING):
            self.state = State.CLOSED
            return [Close("shutting down")]
        return []

    def timed_out(self) -> list[Action]:
        """t30 (Greeting/Authenticating) or t120 (Closing) expired."""
        if self.state is State.CLOSED:
            return []
        was = self.state
        self.state = State.CLOSED
        if was is State.CLOSING:
            return [Close("no close-reply within t120")]
        return [Close("no Authentication within t30")]

    # --- Greeting / Authenticating ------------------------------------------------------

    def _authentication_in_buffer(self) -> list[Action]:
        try:
            line = framing.read_line(self._lines)
        except framing.FramingError:
            self.state = State.CLOSED
            return [Send(framing.reply_line(ok=False, text="Bad Authentication message")),
                    Close("bad Authentication message")]
        if line is None:
            return []
        try:
            auth = framing.parse_authentication(line)
        except framing.FramingError:
            self.state = State.CLOSED
            return [Send(framing.reply_line(ok=False, text="Expected Authentication|transportId|response")),
                    Close("not an Authentication message")]
        self._waiting_auth = True
        return [Authenticate(transport_id=auth.transport_id, response=auth.response, greeting=self.greeting)]

    def _take_lines_as_mime(self) -> list[Action]:
        early, self._lines = bytes(self._lines), bytearray()
        return self._mime(early) if early else []

    # --- Open / Closing ------------------------------------------------------------------

    def _mime(self, data: bytes) -> list[Action]:
        broken = None
        try:
            events = self._parser.feed(data)
        except framing.FramingError as exc:
            logger.info("connection %s: %s", self.connection_id, exc.detail)
            events, broken = exc.events, exc
        actions: list[Action] = []
        for event in events:  # what arrived before the bytes that broke the framing comes first
            actions += self._message(event)
            if self.state is State.CLOSED:
                return actions
        if broken is not None:
            actions += self._bad_message()
        return actions

    def _bad_message(self) -> list[Action]:
        self.state = State.CLOSED
        return [Send(framing.status_message(framing.FAILED, framing.BAD_MESSAGE, msg_tag="")),
                Close("bad message")]

    def _message(self, event: framing.Event) -> list[Action]:
        if isinstance(event, framing.Oversized):
            return [Send(framing.status_message(framing.FAILED, framing.TOO_BIG, msg_tag=event.msg_tag))]
        if event.problem is not None:
            return [Send(framing.status_message(framing.FAILED, event.problem, msg_tag=event.msg_tag))]
        if event.content_type == framing.SET_PAYMENT:
            return self._request(event)
        return self._control(event)

    def _request(self, frame: framing.Frame) -> list[Action]:
        if self.state is State.CLOSING:
            return [Send(framing.status_message(framing.CLOSING, framing.CONNECTION_CLOSING, msg_tag=frame.msg_tag))]
        if len(self._outstanding) >= self.max_outstanding:
            return [Send(framing.status_message(
                framing.RETRY, framing.TOO_MANY_OUTSTANDING, msg_tag=frame.msg_tag, delay=1))]
        self._next_request += 1
        self._outstanding[self._next_request] = frame.msg_tag
        return [Dispatch(request_id=self._next_request, msg_tag=frame.msg_tag, body=frame.body)]

    def _control(self, frame: framing.Frame) -> list[Action]:
        control = frame.control
        if control == "echo":
            return [Send(framing.control_message("echo-reply", frame.body, msg_tag=frame.msg_tag))]
        if control == "close":
            if self.closed_by_us:  # "treated like a Close-Reply response"
                self.state = State.CLOSED
                return [Close("close crossed ours")]
            self.state = State.CLOSED  # outstanding answers are dropped
            return [Send(framing.control_message("close-reply", frame.body, msg_tag=frame.msg_tag)),
                    Close("merchant closed")]
        if control == "close-reply":
            self.state = State.CLOSED
            return [Close("close-reply")]
        if control == "status":
            # Never answered ("A Status message shall never be sent as a response to a received Status").
            logger.info("connection %s: merchant status class=%s msg-tag=%r: %s", self.connection_id,
                        frame.params.get("class", ""), frame.msg_tag,
                        framing.printable_field(frame.body[:200].decode("utf-8", "replace")))
            return []
        return []  # echo-reply: we send no echo, nothing to match
