"""The terminal door's two framings, chosen per connection from its first bytes.

- JSON lines: ``listeners.framing.LineFramer`` (one object per ``\\n`` line);
- HTTP/1.1: ``HttpFramer``, h11 turned into a framer (complete requests with
  their bodies, or what to answer when h11 cannot parse them).

No sockets here (the listener foundation reads and writes), no ORM.
"""
from __future__ import annotations

from dataclasses import dataclass

import h11

HTTP_METHOD_PREFIXES = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ")
SNIFF_BYTES = 8


def framing_for(head: bytes) -> str | None:
    """"http", "jsonl", or None while the first bytes could still be an HTTP method
    (e.g. the "PO" of a "POST" cut by TCP)."""
    head = head[:SNIFF_BYTES].lstrip()
    if head.startswith(HTTP_METHOD_PREFIXES):
        return "http"
    if len(head) < SNIFF_BYTES and head.isalpha() and head.isupper():
        return None
    return "jsonl"


@dataclass(frozen=True)
class HttpRequest:
    event: h11.Request
    body: bytes


@dataclass(frozen=True)
class HttpError:
    """A request h11 (or our size limit) refused: the contract answers 400 and closes."""

    message: str


class _Continue:
    """The client waits for ``100 Continue`` before sending its body."""


CONTINUE = _Continue()


class HttpFramer:
    """h11 as a framer: frames are ``HttpRequest``, ``HttpError`` or ``CONTINUE``.

    ``max_bytes`` bounds a request head (whatever TCP's chunking: h11's own
    limit depends on it) and a body.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.h = h11.Connection(h11.SERVER, max_incomplete_event_size=max_bytes)
        self._request: h11.Request | None = None
        self._body = bytearray()
        self._eof = False

    def next_frame(self, buffer: bytearray) -> HttpRequest | HttpError | _Continue | None:
        if buffer:
            self.h.receive_data(bytes(buffer))
            buffer.clear()
        return self._next()

    def in_frame(self, buffer: bytearray) -> bool:
        return self._request is not None or bool(buffer) or bool(self.h.trailing_data[0])

    def at_eof(self, buffer: bytearray) -> HttpRequest | HttpError | None:
        if buffer:
            self.h.receive_data(bytes(buffer))
            buffer.clear()
        if not self._eof:
            self._eof = True
            self.h.receive_data(b"")
        frame = self._next()
        return None if frame is CONTINUE else frame  # type: ignore[return-value]

    def _next(self) -> HttpRequest | HttpError | _Continue | None:
        while True:
            try:
                event = self.h.next_event()
            except h11.RemoteProtocolError as exc:
                return HttpError(f"Invalid request: {exc}")
            if event is h11.NEED_DATA:
                return CONTINUE if self.h.they_are_waiting_for_100_continue else None
            if isinstance(event, h11.Request):
                head = len(event.target) + sum(len(name) + len(value) + 4 for name, value in event.headers)
                if head > self.max_bytes:
                    return HttpError("Invalid request: request head too large")
                self._request = event
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > self.max_bytes:
                    return HttpError("Invalid request: request body too large")
            elif isinstance(event, h11.EndOfMessage):
                if self._request is None:  # h11 ends only a message it started: a bug if not
                    raise RuntimeError("h11 ended a message that never began")
                frame = HttpRequest(self._request, bytes(self._body))
                self._request, self._body = None, bytearray()
                return frame
            else:  # ConnectionClosed, or PAUSED (never: the door starts the next cycle first)
                return None
