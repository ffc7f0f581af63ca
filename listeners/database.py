"""Asynchronous PostgreSQL for the TCP doors: an asyncpg pool on the event loop.

Why asyncpg and not the threads with Django's connections (the embedded
default, any database): on the terminals' hot path the threads and Django's
cursor layer doubled the listener's CPU per payment, and asyncpg's binary
protocol halved psycopg's async cost again (issue 10's prototype table,
docs/benchmarks.md). What this module adds to the driver:

- server-side prepared statements (asyncpg prepares and caches every
  statement per connection) written with Django's ``%s`` placeholders, so a
  statement is written once for both paths (``numbered``);
- no per-release reset: asyncpg's default ``RESET ALL; UNLISTEN *; ...`` on
  every release cost a third of the rate; the doors hold a connection for
  one statement in autocommit and never change session state, except what
  ``init`` sets up once per connection (temporary functions);
- a deadline on every statement (and on waiting for a connection);
- one exception for a lost or unusable database (``DatabaseUnavailable``),
  which the door answers in its vocabulary; the pool replaces a broken
  connection at its next use, so a restarted server (or
  ``pg_terminate_backend``) costs the requests in flight, nothing more.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

logger = logging.getLogger("listeners.database")

_PLACEHOLDER = re.compile(r"%s")


@functools.lru_cache(maxsize=256)
def numbered(sql: str) -> str:
    """A statement written for Django (``%s``) with asyncpg's ``$1, $2...``.

    The hot path's statements hold no literal ``%`` (values are parameters)."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


class StatementFailed(Exception):
    """The server refused a statement (a constraint, an error a function raised):
    nothing it carried was committed. ``sqlstate`` says which."""

    def __init__(self, message: str, *, sqlstate: str | None = None, constraint: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.constraint = constraint


class DatabaseUnavailable(Exception):
    """The database could not answer this statement (lost, restarted, too slow).

    Whether a write it carried committed is unknown to the caller."""


# What a lost connection, a restarted server or a deadline look like from asyncpg.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,  # includes ConnectionDoesNotExistError
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.QueryCanceledError,
    asyncpg.TooManyConnectionsError,
)


async def _no_reset(connection: asyncpg.Connection) -> None:
    """Release without ``RESET ALL`` (see the module docstring)."""


def dsn_from_django(database: dict[str, Any]) -> dict[str, Any]:
    """asyncpg's connection arguments from a Django ``DATABASES`` entry."""
    options = database.get("OPTIONS", {})
    return {
        "host": database.get("HOST") or None,
        "port": int(database["PORT"]) if database.get("PORT") else None,
        "user": database.get("USER") or None,
        "password": database.get("PASSWORD") or None,
        "database": database.get("NAME") or None,
        "ssl": options.get("sslmode") if options.get("sslmode") not in (None, "", "disable", "allow", "prefer") else None,
    }


class AsyncDatabase:
    """A pool of asyncpg connections for one listener process."""

    def __init__(
        self,
        connect: dict[str, Any],
        *,
        size: int = 8,
        timeout: float = 5.0,
        application_name: str = "gateway-listener",
        init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    ) -> None:
        self._connect = {k: v for k, v in connect.items() if v is not None}
        self.size = size
        self.timeout = timeout
        self.application_name = application_name
        self._init = init
        self._pool: asyncpg.Pool | None = None
        self.lost = 0  # statements answered DatabaseUnavailable (a counter for the logs)

    async def start(self) -> None:
        """Open the pool (connections are made lazily, at first use, so a
        listener starts even while the database is down)."""
        self._pool = await asyncpg.create_pool(
            **self._connect,
            min_size=0,
            max_size=self.size,
            max_inactive_connection_lifetime=300.0,
            reset=_no_reset,
            init=self._init,
            command_timeout=self.timeout,
            server_settings={"application_name": self.application_name},
        )

    async def close(self) -> None:
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), timeout=self.timeout)
            except (asyncio.TimeoutError, *_UNAVAILABLE):
                self._pool.terminate()
            self._pool = None

    async def fetchrow(self, sql: str, args: Sequence[object]) -> asyncpg.Record | None:
        return await self._run("fetchrow", sql, args)

    async def fetch(self, sql: str, args: Sequence[object]) -> list[asyncpg.Record]:
        return await self._run("fetch", sql, args)

    async def execute(self, sql: str, args: Sequence[object]) -> str:
        return await self._run("execute", sql, args)

    async def _run(self, method: str, sql: str, args: Sequence[object]) -> Any:
        if self._pool is None:
            raise DatabaseUnavailable("the database pool is not open")
        try:
            async with self._pool.acquire(timeout=self.timeout) as connection:
                return await getattr(connection, method)(sql, *args, timeout=self.timeout)
        except _UNAVAILABLE as exc:
            self.lost += 1
            logger.warning("database unavailable (%s: %s)", type(exc).__name__, exc)
            raise DatabaseUnavailable(f"{type(exc).__name__}") from exc
        except asyncpg.PostgresError as exc:
            raise StatementFailed(
                str(exc), sqlstate=exc.sqlstate, constraint=getattr(exc, "constraint_name", None)
            ) from exc
