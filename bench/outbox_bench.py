#!/usr/bin/env python3
"""Outbox benchmark: how fast payments' webhooks reach a merchant, end to end.

All on 127.0.0.1, bounded in count and time:

1. migrates the bench database (PostgreSQL ``gateway_bench`` by default,
   created when missing) and provisions a merchant with one webhook endpoint:
   a local HTTP server in this process that answers 200 and checks each
   signature;
2. starts ``celery -A config worker`` (prefork, ``--concurrency``) on the
   broker (``CELERY_BROKER_URL``, Redis by default) and a private queue;
3. makes ``--events`` card-not-present sales through
   ``payments.services.payment_authorize`` (each commits its transaction, its
   ``payment.succeeded`` event and delivery, then queues the delivery task),
   from ``--producers`` threads;
4. waits until every delivery is ``succeeded`` and reports: sales/s as made
   (event writing included), deliveries/s, and the latency from the event's
   ``created_at`` to the endpoint receiving it (p50 / p95 / p99 / max).

Usage:
    .venv/bin/python bench/outbox_bench.py [--events 1000] [--concurrency 4]
        [--producers 4] [--database-url postgres://...] [--broker-url redis://...] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/gateway_bench"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4, help="worker processes")
    parser.add_argument("--producers", type=int, default=4, help="threads making sales")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--broker-url", default=os.environ.get("CELERY_BROKER_URL", DEFAULT_BROKER))
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    if args.database_url.startswith("postgres"):
        ensure_database(args.database_url)
    queue = f"outbox-bench-{os.getpid()}"
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings.dev", DATABASE_URL=args.database_url,
        # The dev settings generate no key for a server database: a fixed bench key, as the other benches.
        PAYMENTS_MASTER_KEY="bench-master-key-not-a-secret-0123456789abcdef",
        CELERY_BROKER_URL=args.broker_url, CELERY_TASK_DEFAULT_QUEUE=queue, PAYMENTS_ALLOW_PRIVATE_CALLBACKS="1",
        LOG_LEVEL="WARNING",
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count

    from merchants.models import Merchant
    from merchants.services import merchant_create
    from payments import cards, outbox, services
    from payments.models import WebhookDelivery
    from payments.states import DeliveryStatus, Door

    call_command("migrate", verbosity=0)
    received: dict[str, float] = {}
    lock = threading.Lock()
    secret_box: dict[str, str] = {}

    class Endpoint(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            t = self.headers["X-Gateway-Signature"].split(",")[0][2:]
            ok = outbox.signature_header(secret_box["s"], body, timestamp=int(t)) == self.headers["X-Gateway-Signature"]
            with lock:
                received.setdefault(json.loads(body)["id"], time.time())
            self.send_response(200 if ok else 400)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hooks"

    name = f"outbox-bench-{os.getpid()}"
    merchant = merchant_create(name=name, allowed_ips=["127.0.0.1"])
    _, secret_box["s"] = outbox.webhook_endpoint_create(merchant_pk=merchant.pk, url=url)

    worker_log = open(ROOT / "var" / "outbox-bench-worker.log", "w")  # noqa: SIM115 - read on failure
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-l", "WARNING", "-Q", queue,
         "--concurrency", str(args.concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-n", f"{queue}@%h"],
        cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=worker_log, text=True,
        start_new_session=True,
    )
    try:
        time.sleep(4)  # let the worker connect before the clock starts
        log(f"making {args.events} sales from {args.producers} threads, {args.concurrency} worker processes, "
            f"broker {args.broker_url.split('://')[0]}, database {connection.vendor}")
        per_thread = [args.events // args.producers + (i < args.events % args.producers) for i in range(args.producers)]

        def produce(count: int) -> None:
            try:
                for _ in range(count):
                    services.payment_authorize(
                        merchant_pk=merchant.pk, door=Door.ESIPAY, card_number="4242424242424242",
                        policy=cards.ESIPAY_PAN, amount="12.50", capture=True,
                    )
            finally:
                connection.close()

        started = time.time()
        threads = [threading.Thread(target=produce, args=(n,)) for n in per_thread]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        produced = time.time()
        deliveries = WebhookDelivery.objects.filter(endpoint__merchant=merchant)
        deadline = time.monotonic() + args.timeout
        while deliveries.filter(status=DeliveryStatus.SUCCEEDED).count() < args.events:
            if time.monotonic() > deadline or worker.poll() is not None:
                counts = dict(deliveries.values_list("status").annotate(n=Count("id")))
                raise SystemExit(f"not all delivered ({counts}); worker log: {worker_log.name}")
            time.sleep(0.2)
        finished = time.time()
        created = dict(deliveries.values_list("event__public_id", "event__created_at"))
        latencies = [(received[eid] - at.timestamp()) * 1000 for eid, at in created.items()]
        result = {
            "events": args.events,
            "sales_per_s": round(args.events / (produced - started), 1),
            "deliveries_per_s": round(args.events / (finished - started), 1),
            "latency_ms": {
                "p50": round(statistics.median(latencies), 1), "p95": round(percentile(latencies, 0.95), 1),
                "p99": round(percentile(latencies, 0.99), 1), "max": round(max(latencies), 1),
            },
            "attempts_per_delivery": round(sum(deliveries.values_list("attempts", flat=True)) / args.events, 3),
            "broker": args.broker_url.split("://")[0], "database": connection.vendor,
            "worker_concurrency": args.concurrency, "producers": args.producers,
        }
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
        server.shutdown()
        Merchant.objects.filter(pk=merchant.pk).update(is_active=False)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['events']} events: {result['sales_per_s']} sales/s made (with their events), "
              f"{result['deliveries_per_s']} deliveries/s end to end; event → endpoint latency "
              f"p50 {result['latency_ms']['p50']} ms, p95 {result['latency_ms']['p95']} ms, "
              f"p99 {result['latency_ms']['p99']} ms, max {result['latency_ms']['max']} ms; "
              f"{result['attempts_per_delivery']} attempts per delivery")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
