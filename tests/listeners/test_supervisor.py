"""Processes sharing the ports, for real: ``tests/listeners/sample_door.py --workers 2``
(a gateway port and a diagnostic port in each worker), SIGTERM, a killed worker, a killed parent."""
from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import LineClient
from .test_limits import eventually

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("sample_door.py")

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads worker pids from /proc (Linux)")


class Process:
    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.process.stdout], daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.process.stderr), daemon=True).start()

    def wait_announce(self, timeout: float = 30) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            pytest.fail(f"no announcement; stderr: {''.join(self.stderr)[-2000:]}")
        # "listening on 127.0.0.1:P (diagnostic 127.0.0.1:D) (2 workers)"
        assert line.startswith("listening on 127.0.0.1:"), line
        self.port = int(line.split()[2].rsplit(":", 1)[1])
        self.diag_port = int(line.split()[4].rstrip(")").rsplit(":", 1)[1])
        return line

    def workers(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return sorted(int(pid) for pid in path.read_text().split())
        except OSError:
            return []

    def log(self) -> str:
        return "".join(self.stderr)

    def kill(self) -> None:
        for pid in self.workers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def processes():
    started: list[Process] = []

    def start(*args: str) -> Process:
        process = Process(*args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def pids_serving(port: int, attempts: int = 40) -> set[int]:
    seen: set[int] = set()
    for _ in range(attempts):
        client = LineClient(port)
        seen.add(int(client.ask("PID")))
        client.close()
    return seen


def test_two_workers_share_both_ports_and_drain_on_sigterm(processes) -> None:
    server = processes("--workers", "2", "--close-reply-timeout", "5")
    assert server.wait_announce().endswith("(2 workers)\n")
    workers = server.workers()
    assert len(workers) == 2
    assert pids_serving(server.port) == set(workers)  # the kernel spreads connections over both
    diag = socket.create_connection(("127.0.0.1", server.diag_port), timeout=5)
    diag.sendall(b"one diagnostic message\r\n")
    assert diag.recv(100) == b""  # journaled, never answered, closed
    diag.close()
    busy = LineClient(server.port)
    busy.send("SLOW job 1.0")
    time.sleep(0.2)
    server.process.send_signal(signal.SIGTERM)
    assert busy.read() == "CLOSE"  # forwarded to the worker, which tells its connections
    assert busy.read() == "DONE job"  # work in flight finishes
    busy.send("CLOSE-REPLY")
    assert busy.closed() == b""
    assert server.process.wait(30) == 0, server.log()
    busy.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2)
    assert "diag journal" in server.log() and "one diagnostic message" in server.log()
    assert server.log().count("sample listener stopped: accepted=") == 2  # each worker logs its counters


def test_a_killed_worker_is_restarted_and_the_port_keeps_serving(processes) -> None:
    server = processes("--workers", "2")
    server.wait_announce()
    first = server.workers()
    victim = first[0]
    os.kill(victim, signal.SIGKILL)
    eventually(lambda: len(server.workers()) == 2 and victim not in server.workers(), timeout=20)
    replacement = (set(server.workers()) - set(first)).pop()
    deadline = time.monotonic() + 20
    while replacement not in pids_serving(server.port, attempts=10):  # it listens on the same port
        assert time.monotonic() < deadline, "the restarted worker never served"
    assert "restarting it" in server.log()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(30) == 0, server.log()


def test_workers_stop_when_the_supervisor_is_killed(processes) -> None:
    server = processes("--workers", "2")
    server.wait_announce()
    workers = server.workers()
    server.process.kill()
    server.process.wait(10)

    def gone() -> bool:
        return all(not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid) for pid in workers)

    eventually(gone, timeout=20)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].split("\n", 1)[0].lower()
    except (OSError, IndexError):
        return "zombie"


def test_a_worker_that_cannot_start_stops_the_supervisor_with_status_1(processes) -> None:
    server = processes("--workers", "2", "--fail-start")
    assert server.process.wait(30) == 1
    assert "this worker cannot start" in server.log()
    assert server.lines.empty()  # never announced


def test_one_process_mode_serves_both_ports_and_drains(processes) -> None:
    server = processes("--workers", "1")
    assert server.wait_announce().endswith("(1 workers)\n")
    client = LineClient(server.port)
    assert client.ask("ECHO hi") == "hi"
    server.process.send_signal(signal.SIGTERM)
    assert client.read() == "CLOSE"
    client.send("CLOSE-REPLY")
    client.closed()
    assert server.process.wait(30) == 0, server.log()
    client.close()
