"""Real threads released at the same instant, each with its own database connection."""
from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connection


def run_at_once(calls: list[Callable[[], object]]) -> list[object]:
    """Run the calls in threads released together; each result or the exception raised."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def worker(index: int, call: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = call()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, c), daemon=True) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return results
