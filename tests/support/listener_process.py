"""``manage.py runterminalserver --port 0`` as a real process against the test
database, that a test can kill with SIGKILL (a crash, an OOM kill)."""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

from .workers import ROOT, database_url_for_workers


class ListenerProcess:
    def __init__(self, *, env: dict[str, str] | None = None, timeout: float = 60) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runterminalserver", "--host", "127.0.0.1", "--port", "0"],
            cwd=ROOT,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "config.settings.test",
                "DATABASE_URL": database_url_for_workers(),
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            },
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.output: list[str] = []
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert self.process.stdout is not None  # noqa: S101 - tests only
            for line in self.process.stdout:
                self.output.append(line)
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if "listening on " in line:
                self.port = int(line.split("listening on ", 1)[1].split()[0].rsplit(":", 1)[1])
                return
        self.kill()
        raise AssertionError(f"the listener did not start:\n{self.log()}")

    def log(self) -> str:
        return "".join(self.output[-60:])

    def kill(self) -> None:
        """SIGKILL: no drain, no chance to answer or record anything."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
