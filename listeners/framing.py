"""Framings every TCP door can reuse (a channel, in jPOS's words: framing only, no I/O).

A framer turns the bytes a ``Connection`` buffered into frames, one at a
time (``Connection.next_frame``); it never reads a socket, so it is tested
with plain bytes.
"""
from __future__ import annotations


class FrameTooLarge(Exception):
    """A frame over the door's limit: the door closes (and counts it)."""


class LineFramer:
    """Lines ending in ``\\n`` (a ``\\r`` before it is dropped with ``strip_cr``).

    ``skip_blank``: lines of only whitespace are not frames (JSON lines,
    the stray CRLFs between SET messages). A line longer than ``max_bytes``
    raises ``FrameTooLarge``, as soon as that many bytes arrived without a
    newline: a peer cannot make us buffer an endless line.
    """

    __slots__ = ("max_bytes", "skip_blank", "strip_cr", "_scanned")

    def __init__(self, max_bytes: int, *, skip_blank: bool = True, strip_cr: bool = False) -> None:
        self.max_bytes = max_bytes
        self.skip_blank = skip_blank
        self.strip_cr = strip_cr
        self._scanned = 0  # bytes of the buffer already known to hold no newline

    def next_frame(self, buffer: bytearray) -> bytes | None:
        while True:
            newline = buffer.find(b"\n", self._scanned)
            if newline < 0:
                if len(buffer) > self.max_bytes:
                    raise FrameTooLarge(f"line over {self.max_bytes} bytes")
                # Whitespace without a newline yet is kept: it may begin a line
                # (SET's folded headers start with a space).
                self._scanned = len(buffer)
                return None
            self._scanned = 0
            if newline > self.max_bytes:
                raise FrameTooLarge(f"line over {self.max_bytes} bytes")
            line = bytes(buffer[:newline])
            del buffer[: newline + 1]
            if self.strip_cr and line.endswith(b"\r"):
                line = line[:-1]
            if self.skip_blank and (not line or line.isspace()):
                continue
            return line

    def in_frame(self, buffer: bytearray) -> bool:
        return bool(buffer) and not (self.skip_blank and buffer.isspace())

    def at_eof(self, buffer: bytearray) -> None:
        # A last line without its newline is not a frame (the peer broke off).
        return None
