#!/usr/bin/env python3
"""SET gateway benchmark: authorizations per second and latency, beside the terminal door's.

What it does (all on 127.0.0.1, every loop bounded in time):

1. makes sure the PostgreSQL database exists and is migrated (the terminal
   benchmark's own helpers, ``bench/terminal_bench.py``);
2. provisions a SET merchant with ``manage.py create_merchant`` (its printed
   ``set_transport_id`` and ``set_secret``);
3. starts ``manage.py runsetgateway --port 0 --diag-port 0 --workers W``;
4. drives ``--connections`` (16) merchant connections with the project's
   client (``setgateway.client.SetClient``), each keeping ``--outstanding``
   (8) AuthReq in flight (captureNow, 4242..., 12.50 EUR, a fresh transId
   each), and after a warm-up counts approved answers, the latency of each
   and where the CPU went (gateway processes, PostgreSQL, this client);
5. in the same run, alternating with it, runs the terminal benchmark
   (``bench/terminal_bench.py --framing jsonl --idle 0``, 32 terminals) so
   that both figures come from the same minutes of a shared machine;
6. stops the gateway with SIGTERM and checks that it exits 0.

Usage:
    .venv/bin/python bench/set_bench.py [--connections 16] [--outstanding 8] [--duration 15]
        [--warmup 3] [--workers 2] [--rounds 2] [--no-terminal]
        [--database-url postgres://postgres@127.0.0.1:5432/gateway_bench] [--json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import terminal_bench as tb  # noqa: E402 - the shared bench helpers (database, CPU from /proc, percentiles)

from setgateway.client import SetClient  # noqa: E402
from setgateway.payload import AuthRes  # noqa: E402

AMOUNT = Decimal("12.50")
EXPIRY = f"{time.gmtime().tm_year + 3}12"


def provision(env: dict[str, str]) -> tuple[str, str]:
    name = f"set-bench-{int(time.time())}"
    out = subprocess.run(
        [tb.PYTHON, str(tb.ROOT / "manage.py"), "create_merchant", "--name", name, "--allowed-ip", tb.LOOPBACK],
        cwd=tb.ROOT, env=env, check=True, timeout=120, capture_output=True, text=True,
    ).stdout
    data = json.loads(out)
    return data["set_transport_id"], data["set_secret"]


class GatewayProcess(tb.Listener):
    """``runsetgateway`` instead of ``runterminalserver``; the rest (pids, stop) as the terminal bench's."""

    def start(self, timeout: float = 60.0) -> None:
        self.log_file = open(self.log_path, "w")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            [tb.PYTHON, str(tb.ROOT / "manage.py"), "runsetgateway", "--host", tb.LOOPBACK, "--port", "0",
             "--diag-port", "0", "--workers", str(self.workers)],
            cwd=tb.ROOT, env=self.env, stdout=subprocess.PIPE, stderr=self.log_file, text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.proc.stdout], daemon=True).start()
        try:
            announce = lines.get(timeout=timeout)
        except queue.Empty:
            self.proc.kill()
            raise SystemExit(f"the gateway did not announce itself in {timeout:.0f}s; see {self.log_path}") from None
        match = re.search(r"listening on ([\d.]+):(\d+)", announce)
        if not match:
            self.proc.kill()
            raise SystemExit(f"unexpected first line {announce!r}; see {self.log_path}")
        self.port = int(match.group(2))


async def merchant_loop(client: SetClient, name: str, latencies: list[float], counts: dict[str, int],
                        window: tuple[float, float], end: float) -> None:
    n = 0
    while time.perf_counter() < end:
        n += 1
        began = time.perf_counter()
        try:
            answer = await client.authorize(f"{name}-{n}", pan="4242424242424242", expiry=EXPIRY, amount=AMOUNT,
                                            capture=True)
        except Exception as exc:  # noqa: BLE001 - counted, the run goes on
            kind = type(exc).__name__
        else:
            kind = "approved" if isinstance(answer, AuthRes) and answer.status == "approved" else \
                f"{type(answer).__name__}:{getattr(answer, 'status', getattr(answer, 'code', '?'))}"
        done = time.perf_counter()
        if window[0] <= done <= window[1]:
            counts[kind] = counts.get(kind, 0) + 1
            if kind == "approved":
                latencies.append((done - began) * 1000)


async def set_throughput(port: int, transport_id: str, secret: str, args: argparse.Namespace,
                         gateway: GatewayProcess, round_no: int) -> dict[str, Any]:
    clients = [SetClient(tb.LOOPBACK, port, transport_id=transport_id, secret=secret, timeout=30,
                         max_outstanding=args.outstanding) for _ in range(args.connections)]
    await asyncio.gather(*(client.connect() for client in clients))
    latencies: list[float] = []
    counts: dict[str, int] = {}
    now = time.perf_counter()
    window = (now + args.warmup, now + args.warmup + args.duration)
    run_load = tb.load()
    tasks = [asyncio.create_task(merchant_loop(client, f"r{round_no}-{time.time_ns()}-c{c}-s{s}", latencies, counts,
                                               window, window[1] + 0.2))
             for c, client in enumerate(clients) for s in range(args.outstanding)]
    await asyncio.sleep(max(0.0, window[0] - time.perf_counter()))
    cpu_start = tb.CpuSnapshot(gateway.pids(), args.database_url)
    await asyncio.sleep(max(0.0, window[1] - time.perf_counter()))
    cpu = tb.CpuSnapshot(gateway.pids(), args.database_url).since(cpu_start)
    await asyncio.wait(tasks, timeout=60)
    await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
    approved = counts.get("approved", 0)
    rate = approved / args.duration
    return {
        "door": "set",
        "connections": args.connections,
        "outstanding_per_connection": args.outstanding,
        "workers": args.workers,
        "duration_s": args.duration,
        "approved": approved,
        "approved_per_s": round(rate, 1),
        "latency_ms": tb.percentiles(latencies),
        "other_answers": {k: v for k, v in counts.items() if k != "approved"},
        "cpu_cores": cpu,
        "cpu_ms_per_authorization": {key: round(cpu[key.replace("gateway", "listener")] * 1000 / rate, 2) if rate
                                     else None
                                     for key in ("gateway", "postgres", "postgres_bench_backends", "bench_client")},
        "load_avg_at_start": run_load,
        "load_avg_at_end": tb.load(),
    }


def terminal_run(args: argparse.Namespace) -> dict[str, Any]:
    out = subprocess.run(
        [tb.PYTHON, str(BENCH / "terminal_bench.py"), "--framing", "jsonl", "--idle", "0", "--skip-migrate", "--json",
         "--duration", str(args.duration), "--warmup", str(args.warmup), "--workers", str(args.workers),
         "--database-url", args.database_url],
        cwd=tb.ROOT, check=True, timeout=600, capture_output=True, text=True,
    ).stdout
    run = json.loads(out)["runs"][0]
    return {"door": "terminal", "terminals": run["terminals"], "workers": run["workers"],
            "approved_per_s": run["approved_per_s"], "latency_ms": run["latency_ms_token_plus_payment"],
            "latency_ms_payment_alone": run["latency_ms_payment"], "cpu_ms_per_payment": run["cpu_ms_per_payment"],
            "errors": run["errors"], "load_avg_at_start": run["load_avg_at_start"]}


def summary(result: dict[str, Any]) -> str:
    lines = [f"SET gateway benchmark ({result['started']}, {os.cpu_count()} cores shared with other work, "
             f"load avg at start {result['load_avg_at_start']}); database {result['database']}"]
    for run in result["runs"]:
        lat = run["latency_ms"]
        if run["door"] == "set":
            cpu = run["cpu_ms_per_authorization"]
            lines.append(
                f"  SET       {run['connections']} connections x {run['outstanding_per_connection']} outstanding, "
                f"{run['workers']} workers: {run['approved_per_s']:.0f} authorizations/s; "
                f"p50 {lat['p50']} p99 {lat['p99']} max {lat['max']} ms; CPU ms each: gateway {cpu['gateway']}, "
                f"postgres {cpu['postgres']} (this database's backends {cpu['postgres_bench_backends']}), "
                f"client {cpu['bench_client']}; other answers {run['other_answers'] or 'none'}"
                f"; load {run['load_avg_at_start']}")
        else:
            cpu = run["cpu_ms_per_payment"]
            lines.append(
                f"  terminal  {run['terminals']} terminals (JSON lines), {run['workers']} workers: "
                f"{run['approved_per_s']:.0f} payments/s (token + payment); p50 {lat['p50']} p99 {lat['p99']} ms; "
                f"CPU ms each: listener {cpu['listener']}, postgres {cpu['postgres']} (this database's backends "
                f"{cpu['postgres_bench_backends']}); errors {run['errors'] or 'none'}"
                f"; load {run['load_avg_at_start']}")
    for door in ("set", "terminal"):
        rates = [run["approved_per_s"] for run in result["runs"] if run["door"] == door]
        if rates:
            lines.append(f"  median {door}: {statistics.median(rates):.0f}/s over {len(rates)} run(s)")
    lines.append(f"  gateway exit status after SIGTERM: {result['gateway_exit']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or tb.DEFAULT_DB)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--outstanding", type=int, default=8, help="requests in flight per connection")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2, help="gateway (and terminal listener) processes")
    parser.add_argument("--db-threads", type=int, default=0, help="SET_DB_THREADS (default: the setting's)")
    parser.add_argument("--rounds", type=int, default=2, help="SET / terminal runs, alternating")
    parser.add_argument("--no-terminal", action="store_true", help="skip the terminal runs")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--skip-migrate", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    args.debug, args.fresh = False, False

    tb.check_local(args.database_url)
    tb.raise_fd_limit(args.connections + 100)
    env = tb.bench_env(args.database_url, argparse.Namespace(debug=False, log_level=args.log_level, db_threads=0))
    if args.db_threads:
        env["SET_DB_THREADS"] = str(args.db_threads)
    tb.ensure_database(args.database_url, fresh=False)
    if not args.skip_migrate:
        tb.migrate(env)
    transport_id, secret = provision(env)
    result: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_avg_at_start": tb.load(),
                              "database": re.sub(r"//[^@/]*@", "//", args.database_url), "runs": []}
    log_dir = tb.ROOT / "var"
    log_dir.mkdir(exist_ok=True)
    gateway = GatewayProcess(env, args.workers, log_dir / "bench-set-gateway.log")
    gateway.start()
    tb.log(f"SET gateway on port {gateway.port}, pids {gateway.pids()}")
    try:
        with asyncio.Runner(loop_factory=tb.new_loop) as runner:
            for round_no in range(args.rounds):
                run = runner.run(set_throughput(gateway.port, transport_id, secret, args, gateway, round_no))
                result["runs"].append(run)
                tb.log(f"SET round {round_no + 1}: {run['approved_per_s']}/s, p99 {run['latency_ms']['p99']} ms")
                if not args.no_terminal:
                    terminal = terminal_run(args)
                    result["runs"].append(terminal)
                    tb.log(f"terminal round {round_no + 1}: {terminal['approved_per_s']}/s, "
                           f"p99 {terminal['latency_ms']['p99']} ms")
    finally:
        result["gateway_exit"] = gateway.stop()
    text = summary(result)
    if args.json:
        tb.log(text)
        print(json.dumps(result, indent=2))
    else:
        print(text)
    return 0 if result["gateway_exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
