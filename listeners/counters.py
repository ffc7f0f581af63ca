"""What a listener has seen: plain integers, read by tests, logged by the listener.

A door adds its own fields by subclassing (``terminals.server.TerminalCounters``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Counters:
    accepted: int = 0  # connections admitted
    active: int = 0  # connections open now (a gauge)
    closed: int = 0  # admitted connections that ended, whatever the reason
    rejected_over_cap: int = 0  # refused: max_connections reached
    rejected_per_address: int = 0  # refused: max_connections_per_address reached for that address
    rejected_draining: int = 0  # refused: the listener is stopping
    timeouts: int = 0  # every timeout below, summed
    idle_timeouts: int = 0
    request_timeouts: int = 0
    handshake_timeouts: int = 0
    write_timeouts: int = 0  # a peer that did not read what we wrote in time
    buffer_overflows: int = 0  # more unread input than max_buffered_bytes: the door could not frame it
    requests_in_flight_refused: int = 0  # Connection.spawn beyond max_in_flight
    errors: int = 0  # a door's coroutine failed (a bug: logged with its traceback)
    drain_aborted: int = 0  # connections still busy when the drain time ran out

    def snapshot(self) -> dict[str, int]:
        return asdict(self)

    def __str__(self) -> str:
        return " ".join(f"{name}={value}" for name, value in self.snapshot().items())
