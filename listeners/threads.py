"""The threaded database path of the TCP doors: synchronous work off the event loop.

A few threads, each with its own persistent Django connection (Django's are
per thread), so the services run as they do for every other door, on any
database (the embedded SQLite default included). The terminal door's
identification and, with ``TERMINAL_DATABASE_PATH=threads`` or on SQLite,
its tokens and payments run here; so does all of the SET gateway's database
work. The async PostgreSQL path is ``listeners.database``.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import SyncToAsync
from django.db import connections


class DatabaseThreads:
    def __init__(self, threads: int, name: str) -> None:
        self.threads = threads
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    async def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``func(*args, **kwargs)`` in one of the threads, awaited."""
        return await SyncToAsync(func, thread_sensitive=False, executor=self.executor)(*args, **kwargs)

    async def close(self) -> None:
        # One task per thread, held apart by a barrier, so that each closes its own connection.
        barrier = threading.Barrier(self.threads)

        def close_own() -> None:
            connections.close_all()
            try:
                barrier.wait(timeout=5)
            except threading.BrokenBarrierError:  # pragma: no cover - a thread stuck in a query
                pass

        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self.executor, close_own) for _ in range(self.threads)))
        self.executor.shutdown(wait=True)
