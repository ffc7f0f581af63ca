"""Processes sharing ports: bind, fork workers, forward SIGTERM, restart the dead.

``run(addresses, main, workers=N)`` is what a listener's management command
calls. With one worker it serves in this process. With more, the parent

- binds every address with ``SO_REUSEPORT`` and keeps those sockets (never
  listening on them) so that port 0 resolves once and a restarted worker
  gets the same ports; the kernel spreads new connections over the
  workers' own listening sockets;
- forks the workers; each builds its event loop (uvloop when installed),
  binds the same addresses, runs ``main(sockets, ready, stop)`` and tells
  the parent it listens; the parent announces once all of them do;
- forwards SIGTERM/SIGINT to the workers, waits for them (each drains and
  exits 0), and kills any still alive after ``stop_timeout``;
- restarts a worker that dies on its own, after a delay that grows while
  it keeps dying young; a worker that dies before the first announcement
  aborts the start (exit status 1: a configuration error, not a crash to
  retry forever).

Workers also ask the kernel to send them SIGTERM if the parent dies, so a
killed supervisor leaves no orphan serving the port.

The exit status is 0 when every worker drained and exited 0.
"""
from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

logger = logging.getLogger("listeners.supervisor")

Address = tuple[str, int]
#: ``main(sockets, ready, stop)``: serve on the bound ``sockets``, call ``ready()`` once listening,
#: return after draining once ``stop`` is set (SIGTERM/SIGINT).
WorkerMain = Callable[[list[socket.socket], Callable[[], None], asyncio.Event], Awaitable[None]]

RESTART_DELAY = 0.5
RESTART_DELAY_MAX = 10.0
YOUNG_SECONDS = 10.0  # a worker dying younger than this doubles the next restart delay


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in requirements on Linux
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def raise_fd_limit() -> None:
    """Thousands of idle connections need as many file descriptors."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):  # pragma: no cover - platform dependent
        pass


def bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when its parent dies (PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


async def _serve(main: WorkerMain, sockets: list[socket.socket], ready: Callable[[], None],
                 early_stop: list[bool]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if early_stop[0]:  # SIGTERM arrived before the loop could take it
        stop.set()
    await main(sockets, ready, stop)


def _serve_in_this_process(main: WorkerMain, sockets: list[socket.socket], ready: Callable[[], None]) -> None:
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(_serve(main, sockets, ready, [False]))


def run(
    addresses: Sequence[Address],
    main: WorkerMain,
    *,
    workers: int = 1,
    announce: Callable[[list[Address], int], None],
    before_fork: Callable[[], None] | None = None,
    stop_timeout: float = 30.0,
    name: str = "listener",
) -> int:
    """Serve until SIGTERM/SIGINT; the exit status. See the module docstring."""
    raise_fd_limit()
    if workers <= 1:
        sockets = [bind(host, port, reuse_port=False) for host, port in addresses]
        bound = [tuple(s.getsockname()[:2]) for s in sockets]
        _serve_in_this_process(main, sockets, lambda: announce(bound, 1))  # type: ignore[arg-type]
        return 0
    return _Supervisor(addresses, main, workers, announce, before_fork, stop_timeout, name).run()


class _Supervisor:
    def __init__(self, addresses: Sequence[Address], main: WorkerMain, workers: int,
                 announce: Callable[[list[Address], int], None], before_fork: Callable[[], None] | None,
                 stop_timeout: float, name: str) -> None:
        self.main, self.workers, self.announce = main, workers, announce
        self.before_fork, self.stop_timeout, self.name = before_fork, stop_timeout, name
        self.reserved = [bind(host, port, reuse_port=True) for host, port in addresses]
        self.bound: list[Address] = [(str(s.getsockname()[0]), int(s.getsockname()[1])) for s in self.reserved]
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (index, started at)
        self.restart_at: dict[int, float] = {}  # index -> monotonic time of its restart
        self.delays: dict[int, float] = {}
        self.restarts = 0
        self.ready_count = 0
        self.announced = False
        self.stop_requested = False
        self.stopping = False
        self.stop_deadline = 0.0
        self.status = 0
        self.parent_pid = os.getpid()

    # --- the parent ---------------------------------------------------------------------

    def run(self) -> int:
        self.ready_r, self.ready_w = os.pipe()
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.ready_r, self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)}
        old_wakeup = signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake select() through the wakeup fd
        try:
            for index in range(self.workers):
                self._spawn(index)
            self._loop()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for sock in self.reserved:
                sock.close()
            for fd in (self.ready_r, self.ready_w, self.wake_r, self.wake_w):
                os.close(fd)
            sys.stdout.flush()
        logger.info("%s supervisor stopped: %d workers, %d restarts, exit status %d",
                    self.name, self.workers, self.restarts, self.status)
        return self.status

    def _on_stop(self, signum: int, _frame: object) -> None:
        self.stop_requested = True

    def _loop(self) -> None:
        while True:
            self._reap()
            if self.stop_requested and not self.stopping:
                self._begin_stop()
            now = time.monotonic()
            if self.stopping:
                if not self.children:
                    return
                if now >= self.stop_deadline:
                    logger.error("%s: workers still alive %.0fs after SIGTERM: killing them", self.name, self.stop_timeout)
                    self.status = 1
                    for pid in list(self.children):
                        _signal(pid, signal.SIGKILL)
                    self.stop_deadline = now + 10
            else:
                for index, when in list(self.restart_at.items()):
                    if when <= now:
                        del self.restart_at[index]
                        self._spawn(index)
            wait_until = [self.stop_deadline] if self.stopping else list(self.restart_at.values())
            timeout = max(0.0, min(wait_until) - time.monotonic()) if wait_until else None
            try:
                readable, _, _ = select.select([self.wake_r, self.ready_r], [], [], timeout)
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
            if self.wake_r in readable:
                _drain_fd(self.wake_r)
            if self.ready_r in readable:
                self.ready_count += len(_drain_fd(self.ready_r))
                if not self.announced and self.ready_count >= self.workers and not self.stopping:
                    self.announced = True
                    self.announce(self.bound, self.workers)

    def _begin_stop(self) -> None:
        self.stopping = True
        self.stop_deadline = time.monotonic() + self.stop_timeout
        self.restart_at.clear()
        for pid in list(self.children):
            _signal(pid, signal.SIGTERM)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            entry = self.children.pop(pid, None)
            if entry is None:
                continue
            index, started = entry
            code = os.waitstatus_to_exitcode(wait_status)
            if self.stopping:
                if code != 0:
                    logger.error("%s worker %d (pid %d) exited with %d while stopping", self.name, index, pid, code)
                    self.status = 1
                continue
            if not self.announced:
                logger.error("%s worker %d (pid %d) exited with %d before listening: stopping", self.name, index,
                             pid, code)
                self.status = 1
                self.stop_requested = True
                continue
            age = time.monotonic() - started
            delay = self.delays.get(index, RESTART_DELAY)
            delay = min(RESTART_DELAY_MAX, delay * 2) if age < YOUNG_SECONDS else RESTART_DELAY
            self.delays[index] = delay
            self.restarts += 1
            logger.error("%s worker %d (pid %d) exited with %d after %.0fs; restarting it in %.1fs (%d restarts)",
                         self.name, index, pid, code, age, delay, self.restarts)
            self.restart_at[index] = time.monotonic() + delay

    def _spawn(self, index: int) -> None:
        if self.before_fork is not None:
            self.before_fork()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._child(index)  # never returns
        self.children[pid] = (index, time.monotonic())
        logger.info("%s worker %d started (pid %d)", self.name, index, pid)

    # --- a worker -------------------------------------------------------------------------

    def _child(self, index: int) -> None:
        code = 0
        try:
            early_stop = [False]

            def remember(signum: int, _frame: object) -> None:
                early_stop[0] = True

            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, remember)
            signal.signal(signal.SIGINT, remember)
            _die_with_parent()
            if os.getppid() != self.parent_pid:  # the parent died before the line above
                early_stop[0] = True
            for fd in (self.ready_r, self.wake_r, self.wake_w):
                os.close(fd)
            for sock in self.reserved:
                sock.close()
            sockets = [bind(host, port, reuse_port=True) for host, port in self.bound]
            ready_w = self.ready_w

            def ready() -> None:
                try:
                    os.write(ready_w, b"r")
                except OSError:  # pragma: no cover - the parent is gone
                    pass

            with asyncio.Runner(loop_factory=new_event_loop) as runner:
                runner.run(_serve(self.main, sockets, ready, early_stop))
        except BaseException:  # noqa: BLE001 - report, then leave the child
            logger.exception("%s worker %d failed", self.name, index)
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _drain_fd(fd: int) -> bytes:
    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            return data
        if not chunk:
            return data
        data += chunk
