"""The SET transport's framing: greeting and authentication lines, MIME messages.

Plain Python, no sockets, no Django: shared by the gateway and the merchant
client. The spec (SET's TCP transport appendix) and the gateway contract:

- Greeting ``+OK|text|challenge`` or ``-ERR|text``, Authentication
  ``Authentication|transportId|authenticationResp``, Authentication-Reply
  ``+OK|text`` / ``-ERR|text``: lines of printable ASCII ending in CRLF,
  fields separated by ``|`` (``read_line``, ``parse_greeting``...).
- Then MIME messages: header lines ending in CRLF, which may be folded (a
  continuation line starts with a space or a tab), names and values
  case-insensitive, unknown headers ignored, an empty line ending the
  headers, a body of exactly ``Content-Length`` bytes. CRLFs between
  messages are skipped. ``MimeParser`` is fed bytes as they arrive and
  returns what is complete.

What cannot be framed raises ``FramingError`` (the gateway answers "Bad
message" and closes: once the framing is lost nothing after it can be
trusted). A message whose headers frame but whose content is wrong (no
Content-Type, another type, a bad msg-tag) is a ``Frame`` with ``problem``
set: the connection goes on, and the sender gets a status message.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field

CRLF = b"\r\n"

# --- Content types and control messages ----------------------------------------------

SET_PAYMENT = "application/set-payment"
SET_TRANSPORT = "text/set-transport"
CONTROLS = frozenset({"close", "close-reply", "status", "echo", "echo-reply"})

# Status messages of the contract (texts of the spec's examples).
FAILED = "failed"
RETRY = "retry"
CLOSING = "closing"
INFO = "info"
TOO_BIG = "Message too big"
BAD_CONTENT_TYPE = "Bad content type"
BAD_TRANSFER_ENCODING = "Bad content-transfer-encoding"
TOO_MANY_OUTSTANDING = "Too many outstanding requests"
CONNECTION_CLOSING = "Connection is closing"
BAD_MESSAGE = "Bad message"

MAX_TAG_CHARS = 32
# Headers of one message: far more than any real one needs, little enough to
# hold per connection.
MAX_HEADER_BYTES = 16 * 1024
MAX_LINE_BYTES = 1024  # greeting and authentication lines

# RFC 1521/2045 token: any ASCII printable but space and tspecials.
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+\Z")
_TOKEN_CHARS = r"!#$%&'*+\-.0-9A-Z^_`a-z{|}~"
_HEADER_NAME = re.compile(rb"[!-9;-~]+\Z")  # printable ASCII but ':'
_DIGITS = re.compile(rb"[0-9]{1,12}\Z")
_PRINTABLE_FIELD = re.compile(r"[ -{}~]*\Z")  # printable ASCII without '|'


class FramingError(Exception):
    """Bytes that cannot be framed: answer "Bad message" and close.

    ``events`` are the messages completed before the bytes that broke the
    framing, in the same ``feed``: they arrived first, and are handled first.
    """

    def __init__(self, detail: str) -> None:
        self.detail = detail
        self.events: list[Event] = []
        super().__init__(detail)


# --- Lines: greeting and authentication --------------------------------------------------


def read_line(buffer: bytearray, *, max_bytes: int = MAX_LINE_BYTES) -> str | None:
    """Take one CRLF-terminated line of printable ASCII off ``buffer``.

    None while the line is incomplete; FramingError if it is too long or
    holds anything but printable ASCII.
    """
    end = buffer.find(CRLF, 0, max_bytes + 2)
    if end < 0:
        if len(buffer) > max_bytes + 1 or b"\n" in buffer[:max_bytes + 2]:
            raise FramingError("line too long or not ended by CRLF")
        return None
    raw = bytes(buffer[:end])
    del buffer[:end + 2]
    try:
        line = raw.decode("ascii")
    except UnicodeDecodeError:
        raise FramingError("not printable ASCII") from None
    if not line.isprintable():
        raise FramingError("not printable ASCII")
    return line


def printable_field(text: str) -> str:
    """``text`` made fit for a ``|``-separated field (printable ASCII, no ``|``)."""
    return "".join(c if " " <= c <= "~" and c != "|" else "?" for c in text)


def greeting_line(*, ok: bool, text: str, challenge: str | None = None) -> bytes:
    """``+OK|text|challenge`` (challenge empty when none is issued) or ``-ERR|text``."""
    fields = ["+OK" if ok else "-ERR", printable_field(text)]
    if ok:
        fields.append(printable_field(challenge or ""))
    return "|".join(fields).encode("ascii") + CRLF


def reply_line(*, ok: bool, text: str) -> bytes:
    """Authentication-Reply: ``+OK|text`` or ``-ERR|text``."""
    return f"{'+OK' if ok else '-ERR'}|{printable_field(text)}".encode("ascii") + CRLF


@dataclass(frozen=True)
class Greeting:
    ok: bool
    text: str
    challenge: str  # '' when no challenge was issued (or for -ERR)
    line: str  # the whole line without its CRLF: what the HMAC covers


def parse_greeting(line: str) -> Greeting:
    status, sep, rest = line.partition("|")
    if not sep or status.strip() not in ("+OK", "-ERR"):
        raise FramingError(f"not a greeting: {line[:40]!r}")
    if status.strip() == "-ERR":
        return Greeting(ok=False, text=rest, challenge="", line=line)
    text, sep, challenge = rest.rpartition("|")
    if not sep:
        raise FramingError("greeting without its challenge field")
    return Greeting(ok=True, text=text, challenge=challenge.strip(), line=line)


@dataclass(frozen=True)
class Authentication:
    transport_id: str
    response: str = field(repr=False)


def parse_authentication(line: str) -> Authentication:
    """``Authentication|transportId|authenticationResp`` (fields stripped of spaces)."""
    parts = line.split("|")
    if len(parts) != 3 or parts[0].strip() != "Authentication":
        raise FramingError("not an Authentication message")
    transport_id, response = parts[1].strip(), parts[2].strip()
    if not transport_id or not response:
        raise FramingError("Authentication message with an empty field")
    return Authentication(transport_id=transport_id, response=response)


def authentication_line(transport_id: str, response: str) -> bytes:
    return f"Authentication|{transport_id}|{response}".encode("ascii") + CRLF


def parse_reply(line: str) -> tuple[bool, str]:
    status, sep, text = line.partition("|")
    if not sep or status.strip() not in ("+OK", "-ERR"):
        raise FramingError(f"not an Authentication-Reply: {line[:40]!r}")
    return status.strip() == "+OK", text


def authentication_response(*, greeting: str, transport_id: str, secret: str) -> str:
    """base64(HMAC-SHA256(key = UTF-8 of the secret, msg = greeting line without CRLF + transportId))."""
    digest = hmac.new(secret.encode("utf-8"), (greeting + transport_id).encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def authentication_valid(*, greeting: str, transport_id: str, secret: str, response: str) -> bool:
    """Checked in constant time (the response is compared as the text it is sent as)."""
    expected = authentication_response(greeting=greeting, transport_id=transport_id, secret=secret)
    return hmac.compare_digest(expected.encode("ascii"), response.encode("ascii", "replace"))


# --- MIME messages -------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One MIME message as framed: its content type and parameters, and its body.

    ``problem`` is set (a status text of the contract) when the message
    framed but cannot be taken as what it claims to be; the sender gets a
    ``class=failed`` status with ``msg_tag``.
    """

    content_type: str  # lower case, '' if absent
    params: dict[str, str]  # parameter names lower case; values as sent, unquoted
    msg_tag: str | None
    transfer_encoding: str | None  # lower case
    body: bytes = field(repr=False)
    problem: str | None = None

    @property
    def control(self) -> str | None:
        """The control of a ``text/set-transport`` message (lower case)."""
        return self.params.get("control", "").lower() or None


@dataclass(frozen=True)
class Oversized:
    """A message whose Content-Length is over the maximum: its body is skipped."""

    msg_tag: str | None
    length: int
    content_type: str


Event = Frame | Oversized


def _unfold(head: bytes) -> list[tuple[str, str]]:
    """Header lines (without the final empty line) → (name lower case, value), folded lines joined."""
    headers: list[list[str]] = []
    for raw in head.split(CRLF):
        if b"\r" in raw or b"\n" in raw or b"\x00" in raw:
            raise FramingError("a header line holds a bare CR, LF or NUL")
        line = raw.decode("latin-1")
        if line[:1] in (" ", "\t"):
            if not headers:
                raise FramingError("a continuation line before any header")
            headers[-1][1] += line
            continue
        name, sep, value = raw.partition(b":")
        if not sep or not _HEADER_NAME.match(name):
            raise FramingError("a header line that is not 'name: value'")
        headers.append([name.decode("ascii").lower(), value.decode("latin-1")])
    return [(name, value.strip(" \t")) for name, value in headers]


def _split_params(text: str) -> list[str]:
    """Split on ``;`` outside quoted strings."""
    parts, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif quoted and char == "\\":
            current.append(char)
            escaped = True
        elif char == '"':
            current.append(char)
            quoted = not quoted
        elif char == ";" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if quoted:
        raise ValueError("unterminated quoted string")
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    if not _TOKEN.match(value):
        raise ValueError("a parameter value that is neither a token nor a quoted string")
    return value


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """``type/subtype; name=value; ...`` → (type lower case, {name lower case: value}).

    ValueError if it is not such a value.
    """
    parts = _split_params(value)
    media = parts[0].strip(" \t").lower()
    kind, slash, sub = media.partition("/")
    if not slash or not _TOKEN.match(kind) or not _TOKEN.match(sub):
        raise ValueError("not type/subtype")
    params: dict[str, str] = {}
    for part in parts[1:]:
        part = part.strip(" \t")
        if not part:
            continue  # a trailing ';' (the spec's folded examples end a line with one)
        name, eq, raw = part.partition("=")
        name = name.strip(" \t").lower()
        if not eq or not _TOKEN.match(name):
            raise ValueError("a parameter that is not name=value")
        params[name] = _unquote(raw.strip(" \t"))
    return media, params


def _frame(headers: list[tuple[str, str]], body: bytes) -> Frame:
    values: dict[str, str] = {}
    for name, value in headers:
        if name in ("content-type", "content-transfer-encoding") and name in values and values[name] != value:
            values[name] = "\x00conflict"
        else:
            values.setdefault(name, value)
    encoding = values.get("content-transfer-encoding")
    encoding = encoding.lower() if encoding is not None else None
    raw_type = values.get("content-type")
    if raw_type is None:
        return Frame("", {}, None, encoding, body, problem=BAD_CONTENT_TYPE)
    try:
        media, params = parse_content_type(raw_type)
    except ValueError:
        return Frame("", {}, None, encoding, body, problem=BAD_CONTENT_TYPE)
    tag = params.get("msg-tag")
    if tag is not None and (len(tag) > MAX_TAG_CHARS or not tag.isascii() or not tag.isprintable()):
        # Not echoed: a tag the spec does not allow would make our answer non-conforming too.
        return Frame(media, params, None, encoding, body, problem=BAD_CONTENT_TYPE)
    problem = None
    if media == SET_PAYMENT:
        if encoding not in (None, "binary"):
            problem = BAD_TRANSFER_ENCODING
    elif media == SET_TRANSPORT:
        if params.get("control", "").lower() not in CONTROLS:
            problem = BAD_CONTENT_TYPE
        elif encoding not in (None, "7bit", "8bit", "binary"):
            problem = BAD_TRANSFER_ENCODING
    else:
        problem = BAD_CONTENT_TYPE
    return Frame(media, params, tag, encoding, body, problem=problem)


def _head_info(headers: list[tuple[str, str]]) -> tuple[int, str | None, str]:
    """Content-Length (required), and the msg-tag and type when they can be read."""
    lengths = {value for name, value in headers if name == "content-length"}
    if not lengths:
        raise FramingError("no Content-Length")
    if len(lengths) > 1:
        raise FramingError("conflicting Content-Length headers")
    raw = lengths.pop().encode("latin-1")
    if not _DIGITS.match(raw):
        raise FramingError("Content-Length is not a number")
    tag, media = None, ""
    for name, value in headers:
        if name == "content-type":
            try:
                media, params = parse_content_type(value)
            except ValueError:
                break
            candidate = params.get("msg-tag")
            if candidate is not None and len(candidate) <= MAX_TAG_CHARS and candidate.isascii() \
                    and candidate.isprintable():
                tag = candidate
            break
    return int(raw), tag, media


class MimeParser:
    """Incremental MIME framing: ``feed(bytes)`` → the messages completed by them.

    Holds at most ``MAX_HEADER_BYTES`` of headers plus one body of at most
    ``max_message_bytes``; a longer body is reported (``Oversized``) as soon
    as its headers arrive and then skipped as it comes in.
    """

    def __init__(self, *, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        self._buffer = bytearray()
        self._headers: list[tuple[str, str]] | None = None  # of the message whose body is awaited
        self._length = 0
        self._skip = 0
        self.broken = False

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def idle(self) -> bool:
        """Between messages: nothing of a next one has arrived (stray CRLFs aside)."""
        return self._headers is None and not self._skip and not self._buffer.strip(b"\r\n")

    def feed(self, data: bytes) -> list[Event]:
        if self.broken:
            raise FramingError("the framing was already lost")
        self._buffer += data
        events: list[Event] = []
        try:
            self._events(events)
        except FramingError as exc:
            self.broken = True
            self._buffer.clear()
            exc.events = events
            raise
        return events

    def _events(self, events: list[Event]) -> list[Event]:
        buffer = self._buffer
        while True:
            if self._skip:
                taken = min(self._skip, len(buffer))
                del buffer[:taken]
                self._skip -= taken
                if self._skip:
                    return events
            if self._headers is None:
                start = 0
                while buffer.startswith(CRLF, start):  # stray CRLFs between messages
                    start += 2
                if start:
                    del buffer[:start]
                if not buffer or buffer == b"\r":
                    return events
                end = buffer.find(b"\r\n\r\n", 0, MAX_HEADER_BYTES + 4)
                if end < 0:
                    if len(buffer) > MAX_HEADER_BYTES + 3:
                        raise FramingError("headers too long, or not MIME")
                    return events
                head = bytes(buffer[:end])
                del buffer[:end + 4]
                headers = _unfold(head)
                length, tag, media = _head_info(headers)
                if length > self.max_message_bytes:
                    events.append(Oversized(msg_tag=tag, length=length, content_type=media))
                    self._skip = length
                    continue
                self._headers, self._length = headers, length
            if len(buffer) < self._length:
                return events
            body = bytes(buffer[:self._length])
            del buffer[:self._length]
            headers, self._headers = self._headers, None
            events.append(_frame(headers, body))


# --- Writing messages ---------------------------------------------------------------------


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_message(content_type: str, body: bytes, *, msg_tag: str | None = None,
                   transfer_encoding: str = "binary", params: dict[str, str] | None = None) -> bytes:
    """One MIME message; ``params`` (tokens) come before the msg-tag, as in the spec's examples."""
    value = content_type
    for name, param in (params or {}).items():
        value += f";{name}={param}"
    if msg_tag is not None:
        value += f";msg-tag={_quoted(msg_tag)}"
    head = (
        f"MIME-Version: 1.0\r\nContent-Type: {value}\r\n"
        f"Content-Transfer-Encoding: {transfer_encoding}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def payment_message(body: bytes, *, msg_tag: str | None) -> bytes:
    return encode_message(SET_PAYMENT, body, msg_tag=msg_tag)


def control_message(control: str, text: bytes | str = b"", *, msg_tag: str | None = None,
                    params: dict[str, str] | None = None) -> bytes:
    """A ``text/set-transport`` message; a CRLF follows its body, as in the spec's samples
    (it is not counted in Content-Length: receivers skip it between messages)."""
    body = text.encode("utf-8") if isinstance(text, str) else text
    return encode_message(
        SET_TRANSPORT, body, msg_tag=msg_tag, transfer_encoding="7bit",
        params={"control": control, **(params or {})},
    ) + CRLF


def status_message(status_class: str, text: str, *, msg_tag: str | None, delay: int | None = None) -> bytes:
    """A status we send: always with the offending message's msg-tag ('' if it had none)."""
    params = {"class": status_class}
    if delay is not None:
        params["delay"] = str(delay)
    return control_message("status", text, msg_tag=msg_tag or "", params=params)
