"""The limits of one listener (one port): caps, timeouts, buffers, drain.

Plain values, no Django: a door builds one from its own settings
(``terminals.server.TerminalConfig.limits()``), tests build them directly.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ListenerConfig:
    #: Seconds a connection may wait, with nothing in flight, for its next request to begin.
    idle_timeout: float = 300.0
    #: Seconds to receive one request once its first byte arrived; also the
    #: longest a write may wait for a peer that does not read.
    request_timeout: float = 30.0
    #: Seconds from accept until the door calls ``Connection.mark_identified``
    #: (a terminal identified, a SET merchant authenticated); None: no limit.
    #: A deadline, not an idle timer: blank keep-alives do not extend it.
    handshake_timeout: float | None = None
    #: Open connections on this listener (this process).
    max_connections: int = 10_000
    #: Open connections from one source address on this listener (this
    #: process); 0: no cap.
    max_connections_per_address: int = 0
    #: Bytes kept per connection on each side: unread input (reading from the
    #: socket pauses at this size) and unflushed output (a write waits, up to
    #: ``request_timeout``, until the peer has read it down).
    max_buffered_bytes: int = 256 * 1024
    #: Requests one connection may have running at once (``Connection.spawn``).
    max_in_flight: int = 1
    #: On stop, seconds that work in flight may take before connections are cut.
    drain_seconds: float = 10.0
    #: Log the counters this often (seconds) when they changed; 0: only at stop.
    counters_log_seconds: float = 60.0
    #: Listen backlog (the kernel caps it at net.core.somaxconn).
    backlog: int = 4096

    def __post_init__(self) -> None:
        if self.max_buffered_bytes < 1024:
            raise ValueError("max_buffered_bytes must be at least 1024")
        if self.max_connections < 1 or self.max_connections_per_address < 0 or self.max_in_flight < 1:
            raise ValueError("connection caps must be positive (per address: 0 for none)")
