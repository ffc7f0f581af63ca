"""The TCP listener foundation: what every TCP door shares (no ORM, no door logic).

jPOS's split of a link, applied here:
- a *channel* knows only framing: ``Framer`` objects (``LineFramer`` here;
  each door adds its own, e.g. h11 for the terminal's HTTP) turn buffered
  bytes into frames, no I/O;
- a *multiplexer* only matches requests to answers: on the server side,
  ``Connection.spawn`` runs requests concurrently and their answers go out
  as they finish (the door tags them, SET by msg-tag); on the client side,
  ``listeners.client.Multiplexer`` matches answers to waiting requests by key;
- an *adaptor* only connects and reconnects: ``listeners.client.Adaptor``
  (a merchant's client).

Server side: a ``Door`` (the door's framing and handlers) runs on a
``Listener`` (one port: caps overall and per address, idle, request and
handshake timeouts, bounded buffers, drain, counters); ``supervisor.run``
runs N processes sharing the ports with SO_REUSEPORT. See docs/listeners.md.
"""
from __future__ import annotations

from . import supervisor
from .config import ListenerConfig
from .connection import BufferOverflow, Closed, Connection, ConnectionTimeout, Framer
from .counters import Counters
from .framing import FrameTooLarge, LineFramer
from .server import Door, Listener

__all__ = [
    "BufferOverflow",
    "Closed",
    "Connection",
    "ConnectionTimeout",
    "Counters",
    "Door",
    "FrameTooLarge",
    "Framer",
    "LineFramer",
    "Listener",
    "ListenerConfig",
    "supervisor",
]
