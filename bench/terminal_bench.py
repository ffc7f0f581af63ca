#!/usr/bin/env python3
"""Terminal listener benchmark: approved card payments per second and latency.

What it does (all on 127.0.0.1, every loop bounded in time):

1. makes sure the PostgreSQL database exists (CREATE DATABASE when missing),
   runs ``manage.py migrate`` against it;
2. provisions one merchant ("bench") and N terminals through the services
   (``merchant_create``, ``terminal_create``), in a ``manage.py shell``;
3. starts ``manage.py runterminalserver --port 0 --workers W`` and reads its
   "listening on HOST:PORT" line;
4. drives N concurrent terminals (asyncio, raw sockets, one connection each):
   each loops ``/token`` (CARD, try_count 3) then ``/payment/card`` (4242...,
   pin 1235, amount "12.50"), over JSON lines (after an ``/auth`` frame) and
   over HTTP/1.1 keep-alive with Basic auth; after a warm-up, it counts
   approved payments (responses with "transaction"), errors by code, and the
   latency of each payment (token + payment round trips, and the payment
   request alone);
5. idle test: restarts the listener with one worker, holds ``--idle``
   authenticated JSON-lines connections open (from loopback aliases
   127.0.x.y, ``--idle-per-address`` each: the listener caps connections per
   source address), checks after a few seconds that they are all still open
   and answered, runs payments meanwhile (latency), and reads the listener's
   RSS (VmRSS in /proc/PID/status);
6. stops the listener with SIGTERM and checks that it exits 0.

It also reports where the CPU went during each measured window (bench
client, listener processes, all ``postgres`` processes and, apart, the
backends connected to the bench database, everything else), from /proc, and
the load average, since the machine is shared.

A/B mode: ``--compare REF`` checks git revision REF out in a temporary
worktree under /tmp and measures its listener and this tree's in the same
run, alternating (round 1: A then B, round 2: B then A, ...), and prints the
medians side by side. ``--variant LABEL=REF[:NAME=VALUE,...]`` (repeatable)
adds variants, e.g. this tree with another setting:
``--variant unprepared=.:DATABASE_PREPARED_STATEMENTS=0``. Variants of this
tree share its database; another revision gets a database of its own
(``<database>_<label>``: its migrations differ) unless its ``DATABASE_URL``
is set. A revision whose requirements differ gets a virtualenv in its
temporary tree.

Usage:
    .venv/bin/python bench/terminal_bench.py [--terminals 32] [--duration 20]
        [--warmup 3] [--framing jsonl|http|both] [--workers 2] [--idle 5000]
        [--database-url postgres://postgres@127.0.0.1:5432/gateway_bench] [--json]
        [--compare main] [--variant LABEL=REF[:NAME=VALUE,...]] [--rounds 3] [--idle-rounds N]
        [--pyspy-dir DIR]   # also sample the listener with py-spy (if installed)
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/gateway_bench"
LOOPBACK = "127.0.0.1"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}

CARD = "4242424242424242"
PIN = "1235"
AMOUNT = "12.50"
REQUEST_TIMEOUT = 10.0  # seconds: one round trip slower than this counts as a timeout
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


# --- environment and database ---------------------------------------------------------


def bench_env(database_url: str, args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="config.settings.dev",
        # Fixed bench secrets: the digests of the terminals' secrets stay valid across runs.
        PAYMENTS_MASTER_KEY="bench-master-key-not-a-secret-0123456789abcdef",
        DJANGO_SECRET_KEY="bench-django-secret-key-not-a-secret-0123456789abcdef",
        # dev settings default to DEBUG=True, which makes Django keep every query
        # (CursorDebugWrapper); a benchmark measures the production code path.
        DJANGO_DEBUG="1" if args.debug else "0",
        LOG_LEVEL=args.log_level,
        PYTHONUNBUFFERED="1",
    )
    if args.db_threads:
        env["TERMINAL_DB_THREADS"] = str(args.db_threads)
    return env


def check_local(database_url: str) -> None:
    parts = urlsplit(database_url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise SystemExit(f"--database-url must be a PostgreSQL URL, not {parts.scheme!r}")
    if (parts.hostname or "") not in LOCAL_HOSTS:
        raise SystemExit(f"refusing to benchmark a database on {parts.hostname}: only 127.0.0.1")


def ensure_database(database_url: str, fresh: bool) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/") or "gateway_bench"
    admin_url = urlunsplit(("postgresql", parts.netloc, "/postgres", parts.query, ""))
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists and fresh:
            log(f"dropping database {name} (--fresh)")
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            exists = None
        if not exists:
            log(f"creating database {name}")
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def migrate(env: dict[str, str], tree: Path = ROOT, python: str = PYTHON) -> None:
    started = time.monotonic()
    subprocess.run([python, str(tree / "manage.py"), "migrate", "--noinput", "-v", "0"], cwd=tree, env=env,
                   check=True, timeout=600)
    log(f"migrated {env['DATABASE_URL'].rsplit('/', 1)[-1]} with {tree} in {time.monotonic() - started:.1f}s")


PROVISION = r"""
import json
from merchants.models import Merchant
from merchants.services import merchant_create
from terminals.models import Terminal
from terminals.services import terminal_create
merchant = Merchant.objects.filter(name="bench").first() or merchant_create(name="bench")
# Earlier runs' terminals: retired, so the terminal table does not grow unused.
Terminal.objects.filter(merchant=merchant, is_active=True).update(is_active=False)
creds = []
for i in range(__N__):
    terminal, secret = terminal_create(merchant=merchant, label=f"bench {i}")
    creds.append([terminal.terminal_id, secret])
print("BENCH_CREDENTIALS " + json.dumps(creds))
"""


def provision(env: dict[str, str], count: int, tree: Path = ROOT, python: str = PYTHON) -> list[tuple[str, str]]:
    out = subprocess.run(
        [python, str(tree / "manage.py"), "shell", "-c", PROVISION.replace("__N__", str(int(count)))],
        cwd=tree, env=env, check=True, timeout=300, capture_output=True, text=True,
    ).stdout
    for line in out.splitlines():
        if line.startswith("BENCH_CREDENTIALS "):
            return [tuple(pair) for pair in json.loads(line.split(" ", 1)[1])]
    raise SystemExit("provisioning printed no credentials:\n" + out)


# --- the listener -----------------------------------------------------------------------


class Listener:
    def __init__(self, env: dict[str, str], workers: int, log_path: Path, tree: Path = ROOT,
                 python: str = PYTHON) -> None:
        self.env, self.workers, self.log_path, self.tree, self.python = env, workers, log_path, tree, python
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self, timeout: float = 60.0) -> None:
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [self.python, str(self.tree / "manage.py"), "runterminalserver", "--host", LOOPBACK, "--port", "0",
             "--workers", str(self.workers)],
            cwd=self.tree, env=self.env, stdout=subprocess.PIPE, stderr=self.log_file, text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = self.proc.stdout.readline()
            if not line:
                break
            match = re.search(r"listening on ([\d.]+):(\d+)", line)
            if match:
                if match.group(1) != LOOPBACK:
                    raise SystemExit(f"listener bound {match.group(1)}, not {LOOPBACK}")
                self.port = int(match.group(2))
                sel.close()
                return
        self.proc.kill()
        raise SystemExit(f"the listener did not say 'listening on' in {timeout:.0f}s; see {self.log_path}")

    def pids(self) -> list[int]:
        """The listener process and its workers (forked children)."""
        assert self.proc is not None
        pids = [self.proc.pid]
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            pids += [int(c) for c in children]
        except OSError:
            pass
        return pids

    def worker_pids(self) -> list[int]:
        pids = self.pids()
        return pids[1:] or pids

    def stop(self, timeout: float = 40.0) -> int | None:
        """SIGTERM; the exit status, or None if it had to be killed."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            code = None
        self.log_file.close()
        return code


def rss_kib(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


# --- CPU accounting (/proc) --------------------------------------------------------------


def _proc_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def _postgres_ticks() -> int:
    total = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if Path(entry.path, "comm").read_text().strip() == "postgres":
                    total += _proc_ticks(int(entry.name))
            except OSError:
                continue
    return total


def _machine_ticks() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields[:8]), idle


def _backend_pids(database_url: str | None) -> list[int]:
    """PostgreSQL backends connected to the bench database (not other users of the server)."""
    if not database_url:
        return []
    import psycopg

    parts = urlsplit(database_url)
    try:
        with psycopg.connect(urlunsplit(("postgresql", *parts[1:])), connect_timeout=5, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"
            ).fetchall()
    except psycopg.Error:
        return []
    return [row[0] for row in rows]


class CpuSnapshot:
    def __init__(self, listener_pids: list[int], database_url: str | None = None) -> None:
        self.pids = listener_pids
        self.wall = time.monotonic()
        self.client = _proc_ticks(os.getpid())
        self.listener = sum(_proc_ticks(p) for p in listener_pids)
        self.postgres = _postgres_ticks()
        # The machine is shared: other sessions' queries land in "postgres" above;
        # the bench database's own backends are counted apart.
        self.backends = {pid: _proc_ticks(pid) for pid in _backend_pids(database_url)}
        self.total, self.idle = _machine_ticks()

    def since(self, start: CpuSnapshot) -> dict[str, float]:
        """CPU seconds per second of wall time (2.0 = both cores busy)."""
        wall = self.wall - start.wall
        busy = (self.total - self.idle) - (start.total - start.idle)
        backends = sum(ticks - start.backends.get(pid, 0) for pid, ticks in self.backends.items())
        parts = {
            "bench_client": (self.client - start.client) / CLK_TCK / wall,
            "listener": (self.listener - start.listener) / CLK_TCK / wall,
            "postgres": (self.postgres - start.postgres) / CLK_TCK / wall,
            "postgres_bench_backends": backends / CLK_TCK / wall,
            "machine_busy": busy / CLK_TCK / wall,
        }
        parts["other"] = max(0.0, parts["machine_busy"] - parts["bench_client"] - parts["listener"] - parts["postgres"])
        return {k: round(v, 2) for k, v in parts.items()}


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# --- the client: one cheap asyncio Protocol per terminal connection ----------------------


class TerminalConnection(asyncio.Protocol):
    """A raw connection; ``request`` writes one request and awaits one response."""

    def __init__(self, framing: str) -> None:
        self.framing = framing
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._deliver()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed by the listener"))

    def _deliver(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        buf = self.buf
        if self.framing == "jsonl":
            end = buf.find(b"\n")
            if end < 0:
                return
            body = bytes(buf[:end])
            del buf[: end + 1]
            waiter.set_result((200, body))
            return
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(buf[:head_end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop > 0 else len(head)])
        else:
            length = 0
        total = head_end + 4 + length
        if len(buf) < total:
            return
        status = int(head[9:12])
        body = bytes(buf[head_end + 4 : total])
        del buf[:total]
        waiter.set_result((status, body))

    def _timeout(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(TimeoutError("no response"))

    async def request(self, data: bytes, timeout: float = REQUEST_TIMEOUT) -> tuple[int, dict[str, Any]]:
        if self.closed or self.transport is None:
            raise ConnectionError("connection closed")
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.transport.write(data)
        handle = loop.call_later(timeout, self._timeout)
        try:
            status, body = await self.waiter
        finally:
            handle.cancel()
            self.waiter = None
        return status, json.loads(body)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(port: int, framing: str, timeout: float = 10.0, source: str | None = None) -> TerminalConnection:
    loop = asyncio.get_running_loop()
    _, proto = await asyncio.wait_for(
        loop.create_connection(lambda: TerminalConnection(framing), LOOPBACK, port,
                               local_addr=(source, 0) if source else None), timeout
    )
    return proto


def jsonl(path: str, parameters: dict[str, Any]) -> bytes:
    return json.dumps({"path": path, "parameters": parameters}, separators=(",", ":")).encode() + b"\n"


class Framing:
    """Pre-built requests for one framing and one terminal."""

    def __init__(self, kind: str, terminal_id: str, secret: str) -> None:
        self.kind = kind
        self.terminal_id, self.secret = terminal_id, secret
        if kind == "jsonl":
            self.token_request = jsonl("/token", {"type": "CARD", "try_count": 3})
            self.payment_prefix = b'{"path":"/payment/card","parameters":{"token":"'
            self.payment_suffix = (
                f'","card_type":"VISA","card_number":"{CARD}","pin":"{PIN}","amount":"{AMOUNT}"}}}}\n'
            ).encode()
        else:
            basic = base64.b64encode(f"{terminal_id}:{secret}".encode()).decode()
            headers = f" HTTP/1.1\r\nHost: {LOOPBACK}\r\nAuthorization: Basic {basic}\r\n\r\n"
            self.token_request = f"GET /token?type=CARD&try_count=3{headers}".encode()
            self.payment_prefix = b"GET /payment/card?token="
            self.payment_suffix = f"&card_type=VISA&card_number={CARD}&pin={PIN}&amount={AMOUNT}{headers}".encode()

    def payment_request(self, token: str) -> bytes:
        return self.payment_prefix + token.encode() + self.payment_suffix

    async def open(self, port: int, source: str | None = None) -> TerminalConnection:
        conn = await connect(port, self.kind, source=source)
        if self.kind == "jsonl":
            _, body = await conn.request(jsonl("/auth", {"terminal_id": self.terminal_id, "secret": self.secret}))
            if body.get("authenticated") is not True:
                conn.close()
                raise RuntimeError(f"/auth refused: {body}")
        return conn


class Stats:
    def __init__(self) -> None:
        self.approved = 0  # completed inside the measured window
        self.total_ms: list[float] = []  # token + payment, payments started in the window
        self.payment_ms: list[float] = []
        self.token_ms: list[float] = []
        self.errors: Counter[str] = Counter()
        self.reconnects = 0


async def terminal_loop(framing: Framing, port: int, stats: Stats, window: tuple[float, float], end: float) -> None:
    perf = time.perf_counter
    measure_start, measure_end = window
    conn: TerminalConnection | None = None
    try:
        while perf() < end:
            if conn is None or conn.closed:
                if conn is not None:
                    stats.reconnects += 1
                try:
                    conn = await framing.open(port)
                except (OSError, RuntimeError, TimeoutError, ConnectionError) as exc:
                    stats.errors[f"connect: {type(exc).__name__}"] += 1
                    conn = None
                    await asyncio.sleep(0.1)
                    continue
            t0 = perf()
            try:
                _, body = await conn.request(framing.token_request)
                token = body.get("token")
                if not token:
                    stats.errors[f"token {body.get('error_code')}"] += 1
                    continue
                t1 = perf()
                _, body = await conn.request(framing.payment_request(token))
                t2 = perf()
            except (TimeoutError, ConnectionError, OSError) as exc:
                stats.errors[type(exc).__name__] += 1
                if conn is not None:
                    conn.close()
                conn = None
                continue
            if "transaction" in body:
                if measure_start <= t2 <= measure_end:
                    stats.approved += 1
                if t0 >= measure_start and t2 <= measure_end:
                    stats.total_ms.append((t2 - t0) * 1000)
                    stats.payment_ms.append((t2 - t1) * 1000)
                    stats.token_ms.append((t1 - t0) * 1000)
            else:
                stats.errors[f"payment {body.get('error_code')}"] += 1
    finally:
        if conn is not None:
            conn.close()


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered))) - 1))], 2)

    return {"count": len(ordered), "p50": rank(50), "p90": rank(90), "p99": rank(99), "max": round(ordered[-1], 2)}


def pyspy_start(pids: list[int], seconds: float, out_dir: Path, label: str) -> list[subprocess.Popen[bytes]]:
    exe = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    if not Path(exe).exists():
        log("py-spy not found: no profile")
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for pid in pids:
        out = out_dir / f"{label}-{pid}.txt"
        procs.append(subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", "200",
             "--format", "raw", "--gil", "--nonblocking", "-o", str(out)],  # --gil: only the thread running Python
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
    return procs


async def throughput(kind: str, port: int, creds: list[tuple[str, str]], args: argparse.Namespace,
                     listener: Listener, database_url: str | None = None) -> dict[str, Any]:
    stats = Stats()
    framings = [Framing(kind, tid, secret) for tid, secret in creds]
    now = time.perf_counter()
    measure_start = now + args.warmup
    measure_end = measure_start + args.duration
    loop_end = measure_end + 0.2
    run_load = load()
    tasks = [asyncio.create_task(terminal_loop(f, port, stats, (measure_start, measure_end), loop_end)) for f in framings]
    await asyncio.sleep(max(0.0, measure_start - time.perf_counter()))
    cpu_start = CpuSnapshot(listener.pids(), database_url)
    spies = pyspy_start(listener.worker_pids(), args.duration, Path(args.pyspy_dir), kind) if args.pyspy_dir else []
    await asyncio.sleep(max(0.0, measure_end - time.perf_counter()))
    cpu = CpuSnapshot(listener.pids(), database_url).since(cpu_start)
    await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT * 2 + 5)
    for spy in spies:
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
    return {
        "framing": kind,
        "terminals": len(creds),
        "workers": args.workers,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "approved": stats.approved,
        "approved_per_s": round(stats.approved / args.duration, 1),
        "latency_ms_token_plus_payment": percentiles(stats.total_ms),
        "latency_ms_payment": percentiles(stats.payment_ms),
        "latency_ms_token": percentiles(stats.token_ms),
        "errors": dict(stats.errors),
        "reconnects": stats.reconnects,
        "cpu_cores": cpu,
        # CPU milliseconds per approved payment (token + payment): steadier than
        # payments/s on a shared machine, since it does not count the time others took.
        "cpu_ms_per_payment": {
            key: round(cpu[key] * 1000 / (stats.approved / args.duration), 2) if stats.approved else None
            for key in ("listener", "postgres", "postgres_bench_backends", "bench_client")
        },
        "load_avg_at_start": run_load,
        "load_avg_at_end": load(),
    }


def idle_sources(args: argparse.Namespace) -> list[str]:
    """Loopback source addresses for the idle connections, at most ``--idle-per-address`` each:
    a fleet comes from many addresses, and the listener caps connections per address."""
    count = -(-args.idle // max(1, args.idle_per_address))
    sources = [f"127.0.{n // 250}.{n % 250 + 2}" for n in range(count)]
    probe = socket.socket()
    try:
        probe.bind((sources[-1], 0))
    except OSError:
        log("warning: the loopback aliases 127.0.x.y are not usable here: every idle connection from 127.0.0.1")
        return []
    finally:
        probe.close()
    return sources


async def idle_test(port: int, pid: int, creds: list[tuple[str, str]], args: argparse.Namespace) -> dict[str, Any]:
    """Hold ``args.idle`` authenticated JSON-lines connections on one listener process."""
    rss_before = rss_kib(pid)
    conns: list[TerminalConnection] = []
    failures: Counter[str] = Counter()
    started = time.monotonic()
    open_deadline = started + args.idle_open_timeout
    batch = 200
    framings = [Framing("jsonl", tid, secret) for tid, secret in creds]
    sources = idle_sources(args)

    async def open_one(i: int) -> None:
        try:
            conns.append(await framings[i % len(framings)].open(port, sources[i % len(sources)] if sources else None))
        except (OSError, RuntimeError, TimeoutError, ConnectionError) as exc:
            failures[type(exc).__name__] += 1

    for first in range(0, args.idle, batch):
        if time.monotonic() > open_deadline:
            failures["open deadline passed"] += args.idle - first
            break
        await asyncio.gather(*(open_one(i) for i in range(first, min(args.idle, first + batch))))
    open_seconds = time.monotonic() - started
    rss_open = rss_kib(pid)
    log(f"idle: {len(conns)} connections authenticated in {open_seconds:.1f}s; holding {args.idle_hold}s")

    # Payments meanwhile, on one more terminal connection.
    stats = Stats()
    now = time.perf_counter()
    payer = asyncio.create_task(terminal_loop(
        framings[0], port, stats, (now, now + args.idle_hold), now + args.idle_hold
    ))
    await asyncio.sleep(args.idle_hold)
    await asyncio.wait([payer], timeout=REQUEST_TIMEOUT * 2 + 5)
    still_open = sum(1 for c in conns if not c.closed)

    # Every held connection must still be served: a request that needs no database
    # (an unknown token type: error 100) proves the listener still reads it.
    probe = jsonl("/token", {"type": "PROBE"})
    answered = 0
    probe_started = time.monotonic()

    async def probe_one(conn: TerminalConnection) -> None:
        nonlocal answered
        try:
            _, body = await conn.request(probe)
            if body.get("error_code") == 100:
                answered += 1
        except (TimeoutError, ConnectionError, OSError):
            pass

    for first in range(0, len(conns), 500):
        if time.monotonic() - probe_started > 60:
            break
        await asyncio.gather(*(probe_one(c) for c in conns[first:first + 500]))
    rss_after = rss_kib(pid)
    return {
        "requested": args.idle,
        "source_addresses": len(sources) or 1,
        "opened": len(conns),
        "open_failures": dict(failures),
        "open_seconds": round(open_seconds, 1),
        "held_seconds": args.idle_hold,
        "still_open_after_hold": still_open,
        "answered_probe": answered,
        "payments_meanwhile": stats.approved,
        "payment_errors_meanwhile": dict(stats.errors),
        "latency_ms_token_plus_payment_meanwhile": percentiles(stats.total_ms),
        "latency_ms_payment_meanwhile": percentiles(stats.payment_ms),
        "listener_rss_kib_before": rss_before.get("VmRSS"),
        "listener_rss_kib_held": rss_open.get("VmRSS"),
        "listener_rss_kib_after_probe": rss_after.get("VmRSS"),
        "listener_rss_peak_kib": rss_after.get("VmHWM"),
        "rss_kib_per_connection": round(((rss_after.get("VmRSS") or 0) - (rss_before.get("VmRSS") or 0)) / max(1, len(conns)), 1),
        "load_avg": load(),
        "_conns": conns,
    }


# --- main ------------------------------------------------------------------------------------


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < need:
        log(f"warning: RLIMIT_NOFILE hard limit {hard} < {need}: the idle test may fail to open all connections")


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def _run_lines(run: dict[str, Any]) -> list[str]:
    total, pay = run["latency_ms_token_plus_payment"], run["latency_ms_payment"]
    cpu, per = run["cpu_cores"], run["cpu_ms_per_payment"]
    return [
        f"  {run['variant']:>12} r{run['round']} {run['framing']:5}  {run['terminals']} terminals, {run['workers']} workers, "
        f"{run['duration_s']}s (+{run['warmup_s']}s warm-up): {run['approved_per_s']:.0f} approved payments/s ({run['approved']})",
        f"         latency token+payment p50 {total['p50']} p90 {total['p90']} p99 {total['p99']} max {total['max']} ms;"
        f" payment alone p50 {pay['p50']} p99 {pay['p99']} ms",
        f"         CPU (cores): listener {cpu['listener']}, postgres {cpu['postgres']} (bench backends "
        f"{cpu['postgres_bench_backends']}), bench client {cpu['bench_client']}, other {cpu['other']}, machine busy "
        f"{cpu['machine_busy']}/{os.cpu_count()}; load {run['load_avg_at_start']} -> {run['load_avg_at_end']}",
        f"         CPU ms per approved payment: listener {per['listener']}, postgres {per['postgres']} (bench backends "
        f"{per['postgres_bench_backends']}), bench client {per['bench_client']}",
        f"         errors {run['errors'] or 'none'}; reconnects {run['reconnects']}",
    ]


def _idle_lines(idle: dict[str, Any]) -> list[str]:
    pay = idle["latency_ms_token_plus_payment_meanwhile"]
    lines = [
        f"  {idle['variant']:>12} r{idle['round']} idle  {idle['opened']}/{idle['requested']} authenticated connections to one "
        f"listener process from {idle['source_addresses']} addresses (opened in {idle['open_seconds']}s), "
        f"{idle['still_open_after_hold']} still open after {idle['held_seconds']}s, {idle['answered_probe']} answered a probe",
        f"         payments meanwhile {idle['payments_meanwhile']} (token+payment p50 {pay['p50']} p99 {pay['p99']} max "
        f"{pay['max']} ms); listener RSS {idle['listener_rss_kib_before']} -> {idle['listener_rss_kib_after_probe']} KiB "
        f"({idle['rss_kib_per_connection']} KiB/connection), peak {idle['listener_rss_peak_kib']} KiB",
    ]
    if idle.get("open_failures"):
        lines.append(f"         open failures {idle['open_failures']}")
    return lines


def median(values: list[float | None]) -> float | None:
    present = sorted(v for v in values if v is not None)
    if not present:
        return None
    mid = len(present) // 2
    value = round(present[mid] if len(present) % 2 else (present[mid - 1] + present[mid]) / 2, 2)
    return int(value) if value == int(value) and all(isinstance(v, int) for v in present) else value


def medians(result: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per variant and framing, the median over rounds of each headline figure."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for variant in result["variants"]:
        label = variant["label"]
        out[label] = {}
        for kind in sorted({run["framing"] for run in result["runs"]}):
            runs = [r for r in result["runs"] if r["variant"] == label and r["framing"] == kind]
            if not runs:
                continue
            out[label][kind] = {
                "rounds": len(runs),
                "approved_per_s": median([r["approved_per_s"] for r in runs]),
                "p50_ms": median([r["latency_ms_token_plus_payment"]["p50"] for r in runs]),
                "p99_ms": median([r["latency_ms_token_plus_payment"]["p99"] for r in runs]),
                "listener_cpu_ms": median([r["cpu_ms_per_payment"]["listener"] for r in runs]),
                "postgres_cpu_ms": median([r["cpu_ms_per_payment"]["postgres"] for r in runs]),
                "postgres_bench_backends_cpu_ms": median([r["cpu_ms_per_payment"]["postgres_bench_backends"] for r in runs]),
                "errors": sum(sum(r["errors"].values()) for r in runs),
            }
        idles = [i for i in result.get("idle", []) if i["variant"] == label]
        if idles:
            out[label]["idle"] = {
                "rounds": len(idles),
                "opened": median([i["opened"] for i in idles]),
                "still_open": median([i["still_open_after_hold"] for i in idles]),
                "answered_probe": median([i["answered_probe"] for i in idles]),
                "payer_p50_ms": median([i["latency_ms_token_plus_payment_meanwhile"]["p50"] for i in idles]),
                "payer_p99_ms": median([i["latency_ms_token_plus_payment_meanwhile"]["p99"] for i in idles]),
                "rss_kib_per_connection": median([i["rss_kib_per_connection"] for i in idles]),
            }
    return out


def _versus(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return ""
    return f" ({(value / base - 1) * 100:+.0f}%)"


def summary(result: dict[str, Any]) -> str:
    lines = [f"terminal listener benchmark  ({result['started']}, load avg at start {result['load_avg_at_start']}, "
             f"{os.cpu_count()} cores, PostgreSQL {result['postgres']})"]
    lines.append(f"database {result['database']}; settings {result['settings']}")
    for variant in result["variants"]:
        lines.append(f"  variant {variant['label']}: {variant['ref']} ({variant['commit'][:12]}) in {variant['tree']},"
                     f" database {variant['database']}" + (f", env {variant['env']}" if variant["env"] else ""))
    for run in result["runs"]:
        lines += _run_lines(run)
    for idle in result.get("idle", []):
        lines += _idle_lines(idle)
    for label, code in result["listener_exit"].items():
        lines.append(f"  listener ({label}) exit status after SIGTERM: {code}")
    table = result["medians"]
    labels = [v["label"] for v in result["variants"]]
    rounds = max((m.get("rounds", 0) for per in table.values() for m in per.values()), default=0)
    if len(labels) > 1 or rounds > 1:
        base = labels[0]
        lines.append(f"A/B: medians of {rounds} rounds, variants alternating within each round (the machine is shared;"
                     f" % against {base})")
        lines.append(f"  {'framing':7} {'variant':>14} {'approved/s':>16} {'p50 ms':>8} {'p99 ms':>14} "
                     f"{'listener ms':>16} {'postgres ms':>12} {'(bench db)':>10}")
        kinds = sorted({k for per in table.values() for k in per if k != "idle"})
        for kind in kinds:
            for label in labels:
                m, b = table[label].get(kind), table[base].get(kind)
                if not m:
                    continue
                lines.append(
                    f"  {kind:7} {label:>14} {m['approved_per_s']:>9}{_versus(m['approved_per_s'], b['approved_per_s']):>7} "
                    f"{m['p50_ms']:>8} {m['p99_ms']:>7}{_versus(m['p99_ms'], b['p99_ms']):>7} "
                    f"{m['listener_cpu_ms']:>9}{_versus(m['listener_cpu_ms'], b['listener_cpu_ms']):>7} "
                    f"{m['postgres_cpu_ms']:>12} {m['postgres_bench_backends_cpu_ms']:>10}"
                )
        for label in labels:
            idle = table[label].get("idle")
            if idle:
                lines.append(
                    f"  {'idle':7} {label:>14} {idle['opened']} open, {idle['still_open']} held, {idle['answered_probe']} "
                    f"answered; paying terminal p50 {idle['payer_p50_ms']} p99 {idle['payer_p99_ms']} ms; "
                    f"{idle['rss_kib_per_connection']} KiB/connection"
                )
    return "\n".join(lines)


# --- variants: this tree and other revisions, side by side --------------------------------


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True,
                          timeout=120).stdout.strip()


def parse_variant(spec: str) -> dict[str, Any]:
    """``LABEL=REF[:NAME=VALUE,NAME=VALUE]``; REF ``.`` is this working tree (uncommitted changes included)."""
    label, sep, rest = spec.partition("=")
    if not sep or not label:
        raise SystemExit(f"--variant {spec!r}: expected LABEL=REF[:NAME=VALUE,...]")
    ref, _, env_text = rest.partition(":")
    env = {}
    for item in filter(None, env_text.split(",")):
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--variant {spec!r}: {item!r} is not NAME=VALUE")
        env[name] = value
    return {"label": label, "ref": ref or ".", "env": env}


def prepare_variants(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Resolve each ref; check other revisions out in temporary git worktrees under /tmp."""
    variants = []
    for spec in specs:
        if spec["ref"] == ".":
            commit = _git("rev-parse", "HEAD") + ("+changes" if _git("status", "--porcelain") else "")
            variants.append({**spec, "commit": commit, "tree": str(ROOT), "python": PYTHON, "temporary": False})
            continue
        commit = _git("rev-parse", "--verify", spec["ref"] + "^{commit}")
        tree = Path(tempfile.mkdtemp(prefix=f"terminal-bench-{re.sub(r'[^A-Za-z0-9]+', '-', spec['label'])}-",
                                     dir="/tmp"))
        tree.rmdir()
        _git("worktree", "add", "--detach", str(tree), commit)
        (tree / "var").mkdir(exist_ok=True)
        log(f"variant {spec['label']}: {spec['ref']} ({commit[:12]}) checked out in {tree}")
        variants.append({**spec, "commit": commit, "tree": str(tree), "python": variant_python(tree),
                         "temporary": True})
    return variants


def variant_python(tree: Path) -> str:
    """This interpreter when the revision needs the same packages; else a virtualenv of its own in its tree."""
    if (tree / "requirements.txt").read_text() == (ROOT / "requirements.txt").read_text():
        return PYTHON
    venv = tree / ".venv-bench"
    log(f"{tree.name}: other requirements; installing them into {venv}")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r",
                    str(tree / "requirements.txt")], check=True, timeout=1200)
    return str(venv / "bin" / "python")


def remove_variants(variants: list[dict[str, Any]]) -> None:
    for variant in variants:
        if variant.get("temporary"):
            try:
                _git("worktree", "remove", "--force", variant["tree"])
            except subprocess.CalledProcessError as exc:  # pragma: no cover - left for `git worktree prune`
                log(f"could not remove {variant['tree']}: {exc.stderr}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_DB)
    parser.add_argument("--terminals", type=int, default=32)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per framing")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--framing", choices=("jsonl", "http", "both"), default="both")
    parser.add_argument("--workers", type=int, default=2, help="listener processes for the throughput runs")
    parser.add_argument("--db-threads", type=int, default=0, help="TERMINAL_DB_THREADS (default: the setting's)")
    parser.add_argument("--idle", type=int, default=5000, help="idle connections to hold (0 skips the idle test)")
    parser.add_argument("--idle-hold", type=float, default=5.0, help="seconds to hold them")
    parser.add_argument("--idle-open-timeout", type=float, default=120.0)
    parser.add_argument("--idle-per-address", type=int, default=200,
                        help="idle connections per loopback source address (127.0.x.y)")
    parser.add_argument("--compare", metavar="REF", default="",
                        help="A/B: run the listener of git revision REF (a temporary worktree in /tmp) and this "
                             "tree's, alternating; same as --variant REF=REF --variant this=.")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=REF[:NAME=VALUE,...]",
                        help="a listener to measure (repeatable): REF '.' is this tree; NAME=VALUE are environment "
                             "settings of that variant (e.g. DATABASE_PREPARED_STATEMENTS=1, DATABASE_URL=...)")
    parser.add_argument("--rounds", type=int, default=0,
                        help="rounds of every variant, alternating order (default 1, or 3 with several variants)")
    parser.add_argument("--idle-rounds", type=int, default=-1, help="rounds of the idle test (default: --rounds)")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"), help="the listener's LOG_LEVEL")
    parser.add_argument("--debug", action="store_true", help="run the listener with DJANGO_DEBUG=1 (slower)")
    parser.add_argument("--fresh", action="store_true", help="drop and recreate the bench database first")
    parser.add_argument("--skip-migrate", action="store_true")
    parser.add_argument("--pyspy-dir", default="", help="sample each listener worker with py-spy into DIR")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    args = parser.parse_args(argv)
    if args.terminals < 1 or args.duration <= 0 or args.warmup < 0 or args.workers < 1 or args.idle < 0:
        parser.error("--terminals, --duration and --workers must be positive; --warmup and --idle not negative")
    specs = [parse_variant(spec) for spec in args.variant]
    if args.compare:
        specs = [{"label": args.compare, "ref": args.compare, "env": {}}, {"label": "this", "ref": ".", "env": {}}] + specs
    if not specs:
        specs = [{"label": "this", "ref": ".", "env": {}}]
    if len({s["label"] for s in specs}) != len(specs):
        parser.error("variant labels must differ")
    rounds = args.rounds or (3 if len(specs) > 1 else 1)
    idle_rounds = rounds if args.idle_rounds < 0 else args.idle_rounds

    check_local(args.database_url)
    for spec in specs:
        if "DATABASE_URL" in spec["env"]:
            check_local(spec["env"]["DATABASE_URL"])
    raise_fd_limit(args.idle + args.terminals + 100)
    base_env = bench_env(args.database_url, args)
    result: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_avg_at_start": load(),
        "database": re.sub(r"//[^@/]*@", "//", args.database_url),
        "settings": f"config.settings.dev, DJANGO_DEBUG={base_env['DJANGO_DEBUG']}, LOG_LEVEL={args.log_level}"
                    + (f", TERMINAL_DB_THREADS={args.db_threads}" if args.db_threads else ""),
        "rounds": rounds,
        "runs": [],
        "idle": [],
        "listener_exit": {},
    }
    variants = prepare_variants(specs)
    try:
        return _measure(args, variants, base_env, rounds, idle_rounds, result)
    finally:
        remove_variants(variants)


def _measure(args: argparse.Namespace, variants: list[dict[str, Any]], base_env: dict[str, str], rounds: int,
             idle_rounds: int, result: dict[str, Any]) -> int:
    result["variants"] = [{k: v for k, v in variant.items() if k != "temporary"} for variant in variants]
    envs = {v["label"]: {**base_env, **v["env"]} for v in variants}
    for variant in variants:
        # Another revision has other migrations: a database of its own, unless told otherwise.
        if variant["temporary"] and "DATABASE_URL" not in variant["env"]:
            parts = urlsplit(base_env["DATABASE_URL"])
            name = parts.path.lstrip("/") + "_" + re.sub(r"[^a-z0-9]+", "_", variant["label"].lower())
            envs[variant["label"]]["DATABASE_URL"] = urlunsplit((*parts[:2], "/" + name, *parts[3:]))
    result["variants"] = [{**v, "database": re.sub(r"//[^@/]*@", "//", envs[v["label"]]["DATABASE_URL"])}
                          for v in result["variants"]]
    creds_by_db: dict[str, list[tuple[str, str]]] = {}
    # This tree first: it migrates and provisions the databases it shares with the others.
    for variant in sorted(variants, key=lambda v: v["ref"] != "."):
        env, tree, python = envs[variant["label"]], Path(variant["tree"]), variant["python"]
        database_url = env["DATABASE_URL"]
        if database_url not in creds_by_db:
            ensure_database(database_url, args.fresh)
        if not args.skip_migrate:
            migrate(env, tree, python)
        if database_url not in creds_by_db:
            creds_by_db[database_url] = provision(env, args.terminals, tree, python)
            log(f"provisioned {args.terminals} terminals in {database_url.rsplit('/', 1)[-1]}")
    import psycopg

    parts = urlsplit(args.database_url)
    with psycopg.connect(urlunsplit(("postgresql", *parts[1:])), connect_timeout=10) as conn:
        result["postgres"] = conn.execute("SHOW server_version").fetchone()[0]

    log_dir = ROOT / "var"
    log_dir.mkdir(exist_ok=True)
    kinds = ["jsonl", "http"] if args.framing == "both" else [args.framing]

    def order(round_index: int) -> list[dict[str, Any]]:
        return variants if round_index % 2 == 0 else variants[::-1]

    with asyncio.Runner(loop_factory=new_loop) as runner:
        for round_index in range(rounds):
            for variant in order(round_index):
                label, env = variant["label"], envs[variant["label"]]
                creds = creds_by_db[env["DATABASE_URL"]]
                listener = Listener(env, args.workers, log_dir / f"bench-listener-{label}.log", Path(variant["tree"]),
                                    variant["python"])
                listener.start()
                log(f"[{label} r{round_index + 1}] listener on port {listener.port}, pids {listener.pids()}")
                try:
                    for kind in kinds:
                        log(f"[{label} r{round_index + 1}] {kind}: {args.terminals} terminals, {args.warmup}s warm-up"
                            f" + {args.duration}s (load {load()})")
                        run = runner.run(throughput(kind, listener.port, creds, args, listener, env["DATABASE_URL"]))
                        run = {"variant": label, "round": round_index + 1, **run}
                        result["runs"].append(run)
                        log(f"[{label} r{round_index + 1}] {kind}: {run['approved_per_s']} approved/s, "
                            f"p99 {run['latency_ms_token_plus_payment']['p99']} ms")
                finally:
                    result["listener_exit"][f"{label} r{round_index + 1}, {args.workers} workers"] = listener.stop()

        for round_index in range(idle_rounds if args.idle else 0):
            for variant in order(round_index):
                label, env = variant["label"], envs[variant["label"]]
                creds = creds_by_db[env["DATABASE_URL"]]
                idle_listener = Listener(env, 1, log_dir / f"bench-listener-idle-{label}.log", Path(variant["tree"]),
                                         variant["python"])
                idle_listener.start()
                log(f"[{label} r{round_index + 1}] idle test: listener pid {idle_listener.proc.pid}, "
                    f"{args.idle} connections")
                conns: list[TerminalConnection] = []
                try:
                    idle = runner.run(idle_test(idle_listener.port, idle_listener.proc.pid, creds, args))
                    conns = idle.pop("_conns")
                    result["idle"].append({"variant": label, "round": round_index + 1, **idle})
                finally:
                    # SIGTERM with the connections still held: the listener must close them and exit 0.
                    result["listener_exit"][f"{label} r{round_index + 1}, 1 worker, idle test"] = idle_listener.stop()
                    for conn in conns:
                        conn.close()

    result["medians"] = medians(result)
    text = summary(result)
    if args.json:
        log(text)
        print(json.dumps(result, indent=2))
    else:
        print(text)
    ok = all(code == 0 for code in result["listener_exit"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
