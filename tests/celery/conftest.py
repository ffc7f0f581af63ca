from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.workers import CeleryProcess


@pytest.fixture
def celery_processes() -> Iterator[Callable[..., CeleryProcess]]:
    """Start real ``celery worker`` / ``beat`` processes; all are stopped after the test."""
    started: list[CeleryProcess] = []

    def start(kind: str = "worker", *, env: dict[str, str] | None = None, name: str = "w1") -> CeleryProcess:
        process = CeleryProcess(kind, env=env, name=f"{name}-{len(started)}")
        started.append(process)
        return process.wait_ready()

    yield start
    for process in started:
        process.stop()
