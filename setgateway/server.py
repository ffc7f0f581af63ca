"""The SET gateway on the listener foundation: the gateway port and the diagnostic log port.

The foundation (``listeners``) accepts, caps connections overall and per
source address, bounds buffers, times out slow peers (t30 is its handshake
deadline: from accept until the merchant is authenticated), drains on
SIGTERM and runs the processes sharing the ports. This module keeps only
what is SET's:

- ``SetDoor``: one connection's bytes through ``session.Session`` (the
  spec's states and messages, no I/O), its actions carried out here: the
  greeting and authentication look-ups, each request's database work
  (``services.set_request_handle``) spawned so that requests run
  concurrently and their answers go out as they finish, the close on
  SIGTERM (then t120 for the close-reply);
- ``DiagnosticDoor``: one MIME message per connection, journaled;
- the live connections, published for the back office every few seconds.

Database work runs in a small pool of threads, each with its own persistent
connection, so the event loop never blocks on the database.
"""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from django.conf import settings
from django.db import connections

from listeners import Connection, ConnectionTimeout, Counters, Door, Listener, ListenerConfig, supervisor
from listeners.threads import DatabaseThreads

from . import framing
from .credentials import set_authenticate, set_greeting_decision
from .journal import LiveSnapshot, diagnostic_record, live_connections_forget, live_connections_publish
from .services import set_request_handle
from .session import Authenticate, Close, Dispatch, Send, Session, State

logger = logging.getLogger("setgateway.server")

HOST_NAME = framing.printable_field(socket.gethostname())[:64]


@dataclass(frozen=True)
class SetConfig:
    t30: float = 30.0
    t120: float = 120.0
    max_outstanding: int = 16
    max_message_bytes: int = 1024 * 1024
    idle_timeout: float = 600.0
    max_connections: int = 10_000
    max_connections_per_address: int = 256
    db_threads: int = 8
    live_publish_seconds: float = 5.0

    @classmethod
    def from_settings(cls, **overrides: Any) -> SetConfig:
        values = {
            "t30": settings.SET_T30_SECONDS,
            "t120": settings.SET_T120_SECONDS,
            "max_outstanding": settings.SET_MAX_OUTSTANDING,
            "max_message_bytes": settings.SET_MAX_MESSAGE_BYTES,
            "idle_timeout": settings.SET_IDLE_TIMEOUT_SECONDS,
            "max_connections": settings.SET_MAX_CONNECTIONS,
            "max_connections_per_address": settings.SET_MAX_CONNECTIONS_PER_ADDRESS,
            "db_threads": settings.SET_DB_THREADS,
            "live_publish_seconds": settings.SET_LIVE_PUBLISH_SECONDS,
        }
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)

    def gateway_limits(self) -> ListenerConfig:
        return ListenerConfig(
            idle_timeout=self.idle_timeout,
            # One message (up to 1 MiB) must arrive within t30 once begun.
            request_timeout=self.t30,
            handshake_timeout=self.t30,
            max_connections=self.max_connections,
            max_connections_per_address=self.max_connections_per_address,
            max_in_flight=self.max_outstanding,
            # On SIGTERM, t120 for the close-reply, and the last request's answer.
            drain_seconds=self.t120 + self.t30,
        )

    def diagnostic_limits(self) -> ListenerConfig:
        return ListenerConfig(
            idle_timeout=self.t30, request_timeout=self.t30, handshake_timeout=self.t30,
            max_connections=self.max_connections, max_connections_per_address=self.max_connections_per_address,
            drain_seconds=self.t30,
        )


@dataclass
class SetCounters(Counters):
    """The foundation's counters and the SET door's own."""

    authenticated: int = 0
    authentication_failures: int = 0
    refused_addresses: int = 0
    requests: int = 0
    bad_messages: int = 0
    merchant_closes: int = 0


@dataclass
class DiagnosticCounters(Counters):
    journaled: int = 0
    unreadable: int = 0


# --- The gateway port --------------------------------------------------------------------------


class SetDoor(Door):
    name = "set-gateway"

    def __init__(self, config: SetConfig, db: DatabaseThreads, counters: SetCounters) -> None:
        self.config = config
        self.db = db
        self.counters = counters
        # Connection ids: unique across hosts (the host name) and restarts (a nonce per process).
        self._boot = secrets.token_hex(3)

    def _session(self, conn: Connection) -> Session:
        return Session(connection_id=f"{HOST_NAME}-{self._boot}-{conn.id}", host=HOST_NAME,
                       max_outstanding=self.config.max_outstanding, max_message_bytes=self.config.max_message_bytes)

    async def serve(self, conn: Connection) -> None:
        session = self._session(conn)
        conn.state = session
        conn.label = session.state.value
        decision = await self.db.call(set_greeting_decision, peer_ip=conn.peer_ip)
        if decision.refuse:
            self.counters.refused_addresses += 1
        if not await self._act(conn, session, session.start(decision)):
            return
        # t30 in Greeting/Authenticating is the foundation's handshake deadline; in
        # Open, waiting for a message is its idle timeout; a message that has begun
        # must be complete within its request timeout (t30).
        message_deadline: float | None = None
        while session.state is not State.CLOSED:
            conn.label = session.state.value
            if not session.mid_message:
                message_deadline = None
            elif message_deadline is None:
                message_deadline = conn.request_deadline()
            try:
                more = await conn.receive(message_deadline)
            except ConnectionTimeout as timeout:
                if timeout.kind == "idle" and session.state is State.OPEN:
                    # An idle connection gets a graceful close, as the spec suggests.
                    if not await self._act(conn, session, self._close(conn, session, "idle-connection")):
                        return
                    continue
                logger.info("SET connection %s: %s timeout in %s", session.connection_id, timeout.kind,
                            session.state.value)
                session.timed_out()
                return
            if not more:
                return  # the merchant went away, or stopping: what is in flight finishes, its answers dropped
            data = bytes(conn.buffer)
            conn.buffer.clear()
            if not await self._act(conn, session, session.receive(data)):
                return

    def _close(self, conn: Connection, session: Session, reason: str) -> list[Any]:
        """Our close: the session sends it; t120 later, a connection still open is cut."""
        actions = session.shutdown(reason)
        if session.needs_t120:
            asyncio.get_running_loop().call_later(self.config.t120, self._t120_expired, conn, session)
        return actions

    def _t120_expired(self, conn: Connection, session: Session) -> None:
        if session.state is State.CLOSING:
            session.timed_out()
            logger.info("SET connection %s: no close-reply within t120", session.connection_id)
            conn.abort()

    async def _act(self, conn: Connection, session: Session, actions: list[Any]) -> bool:
        """Carry out the session's actions; False once the connection is to be closed."""
        for action in actions:
            if isinstance(action, Send):
                await conn.send(action.data)
            elif isinstance(action, Dispatch):
                self.counters.requests += 1
                if not conn.spawn(self._request(conn, session, action)):  # never: the session keeps the limit
                    session.answered(action.request_id, b"")
                    await conn.send(framing.status_message(framing.RETRY, framing.TOO_MANY_OUTSTANDING,
                                                           msg_tag=action.msg_tag, delay=1))
            elif isinstance(action, Authenticate):
                if not await self._act(conn, session, await self._authenticate(conn, session, action)):
                    return False
            elif isinstance(action, Close):
                if action.reason == "bad message":
                    self.counters.bad_messages += 1
                elif action.reason == "merchant closed":
                    self.counters.merchant_closes += 1
                if conn.transport is not None:
                    conn.transport.close()  # after what was written; answers still running are dropped
                return False
        if session.state is State.OPEN and not conn.identified:
            conn.mark_identified()  # authenticated, or opened by its address
        return True

    async def _authenticate(self, conn: Connection, session: Session, action: Authenticate) -> list[Any]:
        proof = await self.db.call(set_authenticate, transport_id=action.transport_id, response=action.response,
                                   greeting=action.greeting, peer_ip=conn.peer_ip)
        if proof is None:
            self.counters.authentication_failures += 1
            logger.info("SET authentication failed from %s (transport id %r)", conn.peer_ip,
                        action.transport_id[:64])
            return session.authentication_result(merchant_pk=None)
        self.counters.authenticated += 1
        return session.authentication_result(merchant_pk=proof.merchant_pk, transport_id=proof.transport_id)

    async def _request(self, conn: Connection, session: Session, dispatch: Dispatch) -> None:
        if session.merchant_pk is None:  # never: requests are dispatched only once Open, as a merchant
            raise RuntimeError("a SET request on a connection of no merchant")
        answer = await self.db.call(set_request_handle, merchant_pk=session.merchant_pk, body=dispatch.body)
        for action in session.answered(dispatch.request_id, answer):
            if isinstance(action, Send) and conn.transport is not None and not conn.transport.is_closing():
                await conn.send(action.data)

    async def shutdown(self, conn: Connection) -> None:
        """SIGTERM: send close, let outstanding answers go out, wait t120 for close-reply."""
        session = conn.state
        if not isinstance(session, Session):
            conn.close_when_idle()
            return
        actions = self._close(conn, session, "Gateway going out of service")
        for action in actions:
            if isinstance(action, Send):
                await conn.send(action.data)
        if session.state is State.CLOSED:
            conn.close_when_idle()  # still greeting or authenticating: closed at once


# --- The diagnostic log port -----------------------------------------------------------------


class DiagnosticDoor(Door):
    name = "set-diagnostic"

    def __init__(self, config: SetConfig, db: DatabaseThreads, counters: DiagnosticCounters) -> None:
        self.config = config
        self.db = db
        self.counters = counters

    async def serve(self, conn: Connection) -> None:
        """One message, within t30 (the handshake deadline: never identified), journaled, then closed."""
        parser = framing.MimeParser(max_message_bytes=self.config.max_message_bytes)
        while True:
            if not await conn.receive():
                return
            received = datetime.now(tz=timezone.utc)
            data = bytes(conn.buffer)
            conn.buffer.clear()
            try:
                events = parser.feed(data)
            except framing.FramingError as exc:
                events = exc.events
                if not events:
                    self.counters.unreadable += 1
                    logger.info("SET diagnostic message from %s not readable: %s", conn.peer_ip, exc.detail)
                    return
            if events:
                break
        event = events[0]
        if isinstance(event, framing.Oversized):
            size, content_type, body = event.length, event.content_type, None
        else:
            size, content_type, body = len(event.body), event.content_type, event.body
        await self.db.call(diagnostic_record, peer_ip=conn.peer_ip, received_at=received, size=size,
                           content_type=content_type, msg_tag=event.msg_tag, body=body)
        self.counters.journaled += 1


# --- One process: both ports, the live connections -------------------------------------------


class SetGateway:
    """The gateway and diagnostic listeners of one process, and what they share."""

    def __init__(self, config: SetConfig | None = None) -> None:
        self.config = config or SetConfig.from_settings()
        self.db = DatabaseThreads(self.config.db_threads, "set-db")
        self.counters = SetCounters()
        self.diagnostic_counters = DiagnosticCounters()
        self.gateway = Listener(SetDoor(self.config, self.db, self.counters), self.config.gateway_limits(),
                                counters=self.counters, name="set-gateway")
        self.diagnostic = Listener(DiagnosticDoor(self.config, self.db, self.diagnostic_counters),
                                   self.config.diagnostic_limits(), counters=self.diagnostic_counters,
                                   name="set-diagnostic")
        self.process = f"{HOST_NAME}:{os.getpid()}:{secrets.token_hex(3)}"
        self._publisher: asyncio.Task[None] | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0, diag_port: int = 0, *,
                    sockets: list[socket.socket] | None = None) -> None:
        if sockets is not None:
            await self.gateway.start(sock=sockets[0])
            await self.diagnostic.start(sock=sockets[1])
        else:
            await self.gateway.start(host, port)
            await self.diagnostic.start(host, diag_port)
        self._publisher = asyncio.get_running_loop().create_task(self._publish_live())

    @property
    def port(self) -> int:
        return self.gateway.port

    @property
    def diag_port(self) -> int:
        return self.diagnostic.port

    async def stop(self) -> None:
        """Stop accepting on both ports; SET connections get close and t120 (the drain)."""
        await asyncio.gather(self.gateway.stop(), self.diagnostic.stop())
        if self._publisher is not None:
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)
        try:
            await self.db.call(live_connections_forget, process=self.process)
        finally:
            await self.db.close()

    def live(self) -> list[LiveSnapshot]:
        snapshots = []
        for conn in list(self.gateway.connections):
            session = conn.state
            if not isinstance(session, Session):
                continue
            snapshots.append(LiveSnapshot(
                connection_id=session.connection_id, merchant_pk=session.merchant_pk,
                peer=f"{conn.peer_ip}:{conn.peer_port}", state=session.state.value,
                since=datetime.fromtimestamp(conn.since, tz=timezone.utc), outstanding=session.outstanding,
            ))
        return snapshots

    async def _publish_live(self) -> None:
        while True:
            try:
                await self.db.call(live_connections_publish, process=self.process, connections=self.live())
            except Exception:  # the back office's view must never stop the gateway
                logger.exception("SET live connections not published")
            await asyncio.sleep(self.config.live_publish_seconds)


async def _worker(sockets: list[socket.socket], ready: Callable[[], None], stop: asyncio.Event,
                  config: SetConfig) -> None:
    gateway = SetGateway(config)
    await gateway.start(sockets=sockets)
    ready()
    await stop.wait()
    await gateway.stop()


def serve(host: str, port: int, diag_port: int, *, workers: int = 1, config: SetConfig | None = None,
          announce: Callable[[str], None] = print) -> int:
    """Run both ports until SIGTERM/SIGINT; the exit status. ``workers > 1``: that many
    processes share the ports (``listeners.supervisor``)."""
    config = config or SetConfig.from_settings()
    connections.close_all()  # never carry a database connection across fork

    def ready(bound: list[tuple[str, int]], count: int) -> None:
        (gateway_host, gateway_port), (_, diagnostic_port) = bound
        announce(f"listening on {gateway_host}:{gateway_port} (diagnostic log on {gateway_host}:{diagnostic_port})"
                 + (f" ({count} workers)" if count > 1 else ""))

    async def main(sockets: list[socket.socket], ready_: Callable[[], None], stop: asyncio.Event) -> None:
        await _worker(sockets, ready_, stop, config)

    return supervisor.run(
        [(host, port), (host, diag_port)], main, workers=workers, announce=ready, before_fork=connections.close_all,
        stop_timeout=config.t120 + 2 * config.t30, name="set-gateway",
    )
