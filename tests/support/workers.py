"""Real Celery processes for the tests: ``celery -A config worker`` and ``beat``,
on the broker the tests use (Redis in CI, the embedded filesystem broker on a
laptop), against the test database, consuming this test run's own queue."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


# The resolver's processes (payments.tasks.resolve_unknown_outcomes): a short acquirer
# deadline, a short wait before a processing row counts as lost (longer than the
# deadline, as the settings require), beat every second.
RESOLVER_ENV = {
    "ACQUIRER_TIMEOUT_SECONDS": "2",
    "PAYMENTS_RESOLVE_AFTER_SECONDS": "3",
    "PAYMENTS_RESOLVE_SWEEP_SECONDS": "1",
}


def database_url_for_workers() -> str:
    """The URL of the database the tests run on (pytest-django's test database)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


class CeleryProcess:
    """A worker or beat subprocess whose output is kept (and shown on failure)."""

    def __init__(self, kind: str, *, env: dict[str, str] | None = None, name: str = "w1") -> None:
        self.kind = kind
        base = [sys.executable, "-m", "celery", "-A", "config"]
        if kind == "worker":
            command = [*base, "worker", "--pool", "solo", "-l", "INFO", "-n", f"{name}-{os.getpid()}@%h",
                       "-Q", settings.CELERY_TASK_DEFAULT_QUEUE, "--without-gossip", "--without-mingle",
                       "--without-heartbeat"]
        else:
            command = [*base, "beat", "-l", "INFO", "-s", str(Path(settings.VAR_DIR) / f"beat-{os.getpid()}-{name}")]
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": database_url_for_workers(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "PAYMENTS_ALLOW_PRIVATE_CALLBACKS": "1",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.output: list[str] = []
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if (self.kind == "worker" and " ready." in line) or (self.kind == "beat" and "beat: Starting" in line):
                self._ready.set()

    def wait_ready(self, timeout: float = 60) -> CeleryProcess:
        if not self._ready.wait(timeout):
            self.stop()
            raise AssertionError(f"celery {self.kind} did not start:\n{self.log()}")
        return self

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.output):
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in celery {self.kind} output:\n{self.log()}")

    def log(self) -> str:
        return "".join(self.output[-80:])

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill: no chance to finish or give anything back."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode


def wait_until(predicate, timeout: float = 30, interval: float = 0.1, message: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(message or "condition not met in time")
