#!/usr/bin/env python3
"""IOTP benchmark: StartPaymentPaymentHandler payments with CardData per second
and their latency, beside esipay card payments in the same run, through the
production web server (gunicorn config.wsgi) on PostgreSQL.

What it does (everything on 127.0.0.1, every loop bounded in time):

1. makes sure the PostgreSQL database exists, runs ``manage.py migrate``;
2. provisions one merchant ("iotp-bench": allowed address 127.0.0.1, a return
   URL on a local server of this script that answers 200, PLTOKEN keys);
3. starts ``gunicorn config.wsgi`` (production settings, ``--workers``
   sync-free gthread workers with ``--threads``) and waits for it to answer;
4. alternates rounds A/B/B/A...: for ``--duration`` seconds, ``--concurrency``
   clients (asyncio + httpx, keep-alive) each loop one payment after another:
   - **iotp**: a signed ``POST /iotp`` StartPaymentPaymentHandler with a new
     PaymentHandlerPayId and CardData (4242424242424242, 12.50 EUR), counted
     when the answer is ``ContStatus="End"`` with no ErrorResponse;
   - **esipay**: ``GET /cardpay/<uuid>/<new cid>/4242424242424242/12/<year>/12.50``
     (authorize, the return-URL POST, capture), counted on 200;
   after ``--warmup`` seconds of each round (not counted), and after one
   uncounted round of each door first (connections, caches);
5. reports per round and the median over rounds: payments/s, p50 and p99
   latency, the CPU gunicorn spent per payment (from /proc: what a loaded
   machine disturbs least), errors; then stops gunicorn with SIGTERM.

The machine may be shared: rounds alternate so that both doors see the
same load, and the medians are what to compare.

Usage:
    .venv/bin/python bench/iotp_bench.py --database-url postgres://postgres@127.0.0.1:5432/NAME
        [--broker-url redis://127.0.0.1:6379/0] [--concurrency 8] [--duration 15] [--warmup 3]
        [--rounds 4] [--workers 2] [--threads 4] [--json]
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import quoteattr

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MANAGE = str(ROOT / "manage.py")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
CARD = "4242424242424242"
AMOUNT = "12.50"
TIMEOUT = 30.0


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


# --- set-up -------------------------------------------------------------------------------


def bench_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=args.database_url,
        CELERY_BROKER_URL=args.broker_url,
        DJANGO_SETTINGS_MODULE="config.settings.production",
        PAYMENTS_MASTER_KEY="iotp-bench-master-key-not-a-secret-0123456789",
        DJANGO_SECRET_KEY="iotp-bench-django-secret-key-not-a-secret-0123456789",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        PAYMENTS_ALLOW_PRIVATE_CALLBACKS="1",  # the return URL is this script's local server
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


def ensure_database(database_url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(database_url)
    if parts.scheme not in ("postgres", "postgresql") or (parts.hostname or "") not in LOCAL_HOSTS:
        raise SystemExit("--database-url must be a PostgreSQL database on this machine")
    name = parts.path.lstrip("/")
    admin = urlunsplit(("postgresql", parts.netloc, "/postgres", parts.query, ""))
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            log(f"creating database {name}")
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


PROVISION = r"""
import json
from merchants.credentials import api_keys_issue
from merchants.models import Merchant
from merchants.services import merchant_create
merchant = Merchant.objects.filter(name="iotp-bench").first() or merchant_create(
    name="iotp-bench", allowed_ips=["127.0.0.1"], callback_url="__RETURN_URL__")
Merchant.objects.filter(pk=merchant.pk).update(callback_url="__RETURN_URL__", allowed_ips=["127.0.0.1"])
keys = api_keys_issue(merchant=merchant)
print("BENCH " + json.dumps({"uuid": str(merchant.uuid), "app_id": keys.app_id, "app_key": keys.app_key}))
"""


def provision(env: dict[str, str], return_url: str) -> dict[str, str]:
    script = PROVISION.replace("__RETURN_URL__", return_url)
    done = subprocess.run([PYTHON, MANAGE, "shell", "-c", script], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True, timeout=120)
    line = next(line for line in done.stdout.splitlines() if line.startswith("BENCH "))
    return json.loads(line.removeprefix("BENCH "))


class _ReturnUrl(BaseHTTPRequestHandler):
    """The merchant's return URL: reads the form, answers 200 (esipay's confirmation)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


def start_gunicorn(env: dict[str, str], args: argparse.Namespace) -> tuple[subprocess.Popen, int]:
    command = [PYTHON, "-m", "gunicorn", "config.wsgi", "--bind", "127.0.0.1:0", "--workers", str(args.workers),
               "--worker-class", "gthread", "--threads", str(args.threads), "--timeout", "60",
               "--error-logfile", "-", "--log-level", "info"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    deadline = time.monotonic() + 60
    port = None
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        match = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line)
        if match:
            port = int(match.group(1))
            break
    if port is None:
        process.kill()
        raise SystemExit("gunicorn did not start")
    # Keep draining its output so that it never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # type: ignore[union-attr]
    return process, port


# --- the two payments ---------------------------------------------------------------------


def _encode(uri: str) -> str:
    unreserved = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
    return "".join(chr(b) if b in unreserved else f"%{b:02x}" for b in uri.lower().encode())


def pltoken(app_id: str, app_key: str, uri: str, body: bytes) -> str:
    """secure-api.md's PLTOKEN, written out here as a client would."""
    nonce, stamp = uuid.uuid4().hex, str(int(time.time()))
    digest = base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324 - the spec's choice
    message = app_id + "POST" + _encode(uri) + stamp + nonce + digest
    signature = base64.b64encode(hmac.new(base64.b64decode(app_key), message.encode(), hashlib.sha256).digest())
    return f"PLTOKEN {app_id}:{signature.decode()}:{nonce}:{stamp}"


def start_document(merchant: str, pay_id: str) -> bytes:
    now = datetime.now(UTC)
    card = base64.b64encode(json.dumps({"pan": CARD, "expiry": f"{now.year + 2}12", "cvv": "123"}).encode())
    ok_from = (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ok_to = (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<IotpPaymentApiRequest xmlns="http://www.iotp.org/2000/08/PaymentAPI">'
        f'<StartPaymentPaymentHandler BrandId="Visa" CurrCode="EUR" Amount="{AMOUNT}" PayDirection="Debit" '
        f'ProtocolId="GatewayCard-1.0" OkFrom="{ok_from}" OkTo="{ok_to}" PaymentHandlerPayId={quoteattr(pay_id)} '
        f'MerchantOrgId="{merchant}"><PaySchemePackagedContent Name="CardData" Transform="BASE64">'
        f"{card.decode()}</PaySchemePackagedContent></StartPaymentPaymentHandler></IotpPaymentApiRequest>"
    ).encode()


async def one_iotp(client: Any, base: str, creds: dict[str, str], n: str) -> bool:
    body = start_document(creds["uuid"], f"B{n}")
    uri = f"{base}/iotp"
    response = await client.post(uri, content=body, headers={
        "Content-Type": "application/xml", "Authorization": pltoken(creds["app_id"], creds["app_key"], uri, body)})
    return response.status_code == 200 and b'ContStatus="End"' in response.content and b"ErrorResponse" not in response.content


async def one_esipay(client: Any, base: str, creds: dict[str, str], n: str) -> bool:
    year = datetime.now(UTC).year + 2
    response = await client.get(f"{base}/cardpay/{creds['uuid']}/b{n}/{CARD}/12/{year}/{AMOUNT}")
    return response.status_code == 200


async def run_round(door: str, base: str, creds: dict[str, str], args: argparse.Namespace, tag: str,
                    server_pid: int = 0) -> dict:
    import httpx

    pay = one_iotp if door == "iotp" else one_esipay
    latencies: list[float] = []
    errors = 0
    counter = 0
    start = time.monotonic()
    measure_from = start + args.warmup
    stop = measure_from + args.duration

    async def client_loop(index: int) -> None:
        nonlocal errors, counter
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as client:
            while (now := time.monotonic()) < stop:
                counter += 1
                began = time.perf_counter()
                try:
                    ok = await pay(client, base, creds, f"{tag}{index}x{counter}")
                except httpx.HTTPError:
                    ok = False
                elapsed = time.perf_counter() - began
                if now >= measure_from:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        errors += 1

    async def cpu_window() -> float:
        await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
        before = server_cpu_seconds(server_pid) if server_pid else 0.0
        await asyncio.sleep(max(0.0, stop - time.monotonic()))
        return (server_cpu_seconds(server_pid) if server_pid else 0.0) - before

    *_, cpu = await asyncio.gather(*(client_loop(i) for i in range(args.concurrency)), cpu_window())
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {"door": door, "payments": len(latencies), "errors": errors, "per_second": len(latencies) / args.duration,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "server_cpu_ms": cpu * 1000 / len(latencies) if latencies else float("nan")}


CLK_TCK = os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(master_pid: int) -> float:
    """CPU (user + system) used so far by gunicorn's master and workers: per
    payment, a figure a loaded machine disturbs far less than payments/s."""
    total = 0.0
    pids = [master_pid]
    try:
        children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
        pids += [int(pid) for pid in children]
    except OSError:
        pass
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.database_url:
        raise SystemExit("give --database-url (a PostgreSQL database on 127.0.0.1)")
    ensure_database(args.database_url)
    env = bench_env(args)
    subprocess.run([PYTHON, MANAGE, "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=600)
    return_server = ThreadingHTTPServer(("127.0.0.1", 0), _ReturnUrl)
    threading.Thread(target=return_server.serve_forever, daemon=True).start()
    creds = provision(env, f"http://127.0.0.1:{return_server.server_port}/return")
    process, port = start_gunicorn(env, args)
    base = f"http://127.0.0.1:{port}"
    log(f"gunicorn on {base}: {args.workers} workers x {args.threads} threads; load {loadavg()}")
    results: list[dict] = []
    run_tag = uuid.uuid4().hex[:8]
    try:
        # Every worker thread opens its database connection and warms its caches first.
        for door in ("iotp", "esipay"):
            asyncio.run(run_round(door, base, creds, argparse.Namespace(**{**vars(args), "duration": args.warmup}),
                                  f"{run_tag}w{door[0]}"))
        for number in range(args.rounds):
            order = ("iotp", "esipay") if number % 2 == 0 else ("esipay", "iotp")
            for door in order:
                result = asyncio.run(run_round(door, base, creds, args, f"{run_tag}r{number}{door[0]}", process.pid))
                result.update(round=number + 1, load=loadavg())
                results.append(result)
                log(f"round {number + 1} {door:6}: {result['per_second']:7.1f}/s  p50 {result['p50_ms']:6.1f} ms  "
                    f"p99 {result['p99_ms']:6.1f} ms  gunicorn CPU {result['server_cpu_ms']:5.1f} ms/payment  "
                    f"errors {result['errors']}  (load {result['load']})")
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        return_server.shutdown()
    summary = {}
    for door in ("iotp", "esipay"):
        rows = [r for r in results if r["door"] == door]
        summary[door] = {key: statistics.median(r[key] for r in rows)
                         for key in ("per_second", "p50_ms", "p99_ms", "server_cpu_ms")}
        summary[door]["errors"] = sum(r["errors"] for r in rows)
    log(f"gunicorn exited {code}")
    for door, row in summary.items():
        log(f"median {door:6}: {row['per_second']:7.1f}/s  p50 {row['p50_ms']:6.1f} ms  p99 {row['p99_ms']:6.1f} ms  "
            f"gunicorn CPU {row['server_cpu_ms']:5.1f} ms/payment  errors {row['errors']}")
    if args.json:
        print(json.dumps({"rounds": results, "median": summary, "concurrency": args.concurrency,
                          "workers": args.workers, "threads": args.threads}, indent=2))
    return 0 if code == 0 and all(row["errors"] == 0 for row in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
