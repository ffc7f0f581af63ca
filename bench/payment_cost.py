#!/usr/bin/env python3
"""Where the time of one terminal payment goes, single-threaded, no sockets.

Runs ``token_issue`` + ``payment_sale_with_token`` (what the listener does for
one /token and one /payment/card) in a loop against the bench database and
reports, per token+payment:
- the queries (CaptureQueriesContext) and the round trips;
- wall and CPU time, split into time inside ``cursor.execute`` (psycopg and
  PostgreSQL) and the rest (the ORM building and compiling queries, models);
- PostgreSQL's CPU (all ``postgres`` processes, from /proc);
- the same SQL sent with raw psycopg (the floor of this query design), and
  a variant with fewer round trips (token lock and try in one UPDATE, limits
  not queried), to size what a rewrite of the hot path could gain.

Run terminal_bench.py once first (it creates the database, the merchant and terminals).
    .venv/bin/python bench/payment_cost.py [--database-url URL] [-n 500]
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import hmac
import os
import secrets
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from terminal_bench import DEFAULT_DB, _postgres_ticks, check_local, load  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def measure(label: str, func, n: int) -> dict[str, float]:
    for _ in range(20):
        func()
    pg0 = _postgres_ticks()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        func()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    pg = (_postgres_ticks() - pg0) / CLK_TCK
    out = {"wall_ms": 1000 * wall / n, "cpu_ms": 1000 * cpu / n, "postgres_cpu_ms": 1000 * pg / n}
    print(f"{label:58} wall {out['wall_ms']:6.2f} ms  client CPU {out['cpu_ms']:5.2f} ms  postgres CPU {out['postgres_cpu_ms']:5.2f} ms")
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_DB)
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--prepared", choices=("0", "1"), default="",
                        help="server-side prepared statements off/on (DATABASE_PREPARED_STATEMENTS: Django's "
                             "server_side_binding and psycopg's prepare_threshold; default: the setting's, on)")
    parser.add_argument("--skip-raw", action="store_true")
    args = parser.parse_args()
    check_local(args.database_url)
    os.environ.update(
        DATABASE_URL=args.database_url,
        DJANGO_SETTINGS_MODULE="config.settings.dev",
        PAYMENTS_MASTER_KEY="bench-master-key-not-a-secret-0123456789abcdef",
        DJANGO_SECRET_KEY="bench-django-secret-key-not-a-secret-0123456789abcdef",
        DJANGO_DEBUG="0",
        LOG_LEVEL="WARNING",
    )
    if args.prepared:
        os.environ["DATABASE_PREPARED_STATEMENTS"] = args.prepared
    import django

    django.setup()
    import psycopg
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from payments import services
    from payments.states import PaymentMethod
    from terminals.models import Terminal
    from terminals.services import terminal_touch

    print(f"load average {load()} (the machine may be shared: compare CPU, not wall)")
    terminal = Terminal.objects.filter(merchant__name="bench", is_active=True).first()
    if terminal is None:
        raise SystemExit("no bench terminal: run bench/terminal_bench.py first")

    def orm() -> None:
        terminal_touch(pk=terminal.pk)
        token = services.token_issue(terminal_pk=terminal.pk, payment_type=PaymentMethod.CARD, try_count=3)
        terminal_touch(pk=terminal.pk)
        services.payment_sale_with_token(
            terminal_pk=terminal.pk, token=token.value, method=PaymentMethod.CARD, amount="12.50",
            card_type="VISA", card_number="4242424242424242", pin="1235",
        )

    orm()
    with CaptureQueriesContext(connection) as ctx:
        orm()
    print(f"queries per token+payment: {len(ctx.captured_queries)} (each one round trip);"
          f" cursor {type(connection.cursor().cursor).__name__}")
    for query in ctx.captured_queries:
        print("   ", " ".join(query["sql"].split())[:110])

    per_sql: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
    inside = [0.0, 0.0]

    def wrapper(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return execute(sql, params, many, context)
        finally:
            dw, dc = time.perf_counter() - wall, time.process_time() - cpu
            inside[0] += dw
            inside[1] += dc
            entry = per_sql[" ".join(sql.split()[:3])[:50]]
            entry[0] += 1
            entry[1] += dw
            entry[2] += dc

    with connection.execute_wrapper(wrapper):
        result = measure("Django services (token_issue + payment_sale_with_token)", orm, args.n)
    n = args.n + 20
    print(f"    inside cursor.execute: wall {1000 * inside[0] / n:.2f} ms, CPU {1000 * inside[1] / n:.2f} ms;"
          f" outside (ORM, models, services): CPU {result['cpu_ms'] - 1000 * inside[1] / n:.2f} ms")
    for sql, (count, wall, cpu) in per_sql.items():
        print(f"      {count / n:3.1f}x  wall {1000 * wall / n:5.2f} ms  CPU {1000 * cpu / n:5.2f} ms  {sql}")

    if args.skip_raw:
        return 0
    # --- the same SQL without the ORM ------------------------------------------------------
    parts = urlsplit(args.database_url)
    raw = psycopg.connect(urlunsplit(("postgresql", *parts[1:])), autocommit=True)
    term, merchant = terminal.pk, terminal.merchant_id
    fingerprint = hmac.new(b"k" * 32, b"card:4242424242424242", hashlib.sha256).hexdigest()
    pin = hmac.new(b"k" * 32, b"pin:1235", hashlib.sha256).hexdigest()
    columns = ("merchant_id, terminal_id, token_id, door, method, status, amount, currency, authorized_amount, "
               "captured_amount, refunded_amount, card_fingerprint, card_bin, card_last4, card_brand, check_number, "
               "merchant_reference, acquirer_reference, authorization_code, failure_code, failure_message, created_at, updated_at")
    insert_txn = f"INSERT INTO payments_transaction ({columns}) VALUES ({','.join(['%s'] * 23)}) RETURNING id"
    holding = "('processing','authorized','captured','partially_refunded','refunded')"

    def values(token_id: int, now: datetime) -> tuple:
        return (merchant, term, token_id, "terminal", "card", "processing", "12.50", "EUR", 0, 0, 0, fingerprint,
                "424242", "4242", "VISA", "", "", "", "", "", "", now, now)

    def insert_token(now: datetime) -> str:
        value = secrets.token_hex(32)
        raw.execute("INSERT INTO payments_token (value, terminal_id, payment_type, try_count, tries_used, created_at,"
                    " expires_at) VALUES (%s,%s,'card',3,0,%s,%s) RETURNING id",
                    (value, term, now, now + timedelta(seconds=180)))
        return value

    def acquirer_update(txn: int, now: datetime) -> None:
        raw.execute("UPDATE payments_transaction SET status='captured', acquirer_reference=%s, authorized_amount=12.50,"
                    " captured_amount=12.50, authorization_code='123456', updated_at=%s WHERE id=%s AND status='processing'",
                    ("sbx_x", now, txn))

    def same_sql() -> None:
        now = datetime.now(timezone.utc)
        raw.execute("SELECT 1 FROM terminals_terminal t JOIN merchants_merchant m ON t.merchant_id=m.id"
                    " WHERE t.is_active AND m.is_active AND t.id=%s LIMIT 1", (term,))
        value = insert_token(now)
        with raw.transaction():
            row = raw.execute(
                f"SELECT t.id, t.tries_used, EXISTS(SELECT 1 FROM payments_transaction x WHERE x.token_id=t.id"
                f" AND x.status IN {holding}) FROM payments_token t JOIN terminals_terminal tt ON tt.id=t.terminal_id"
                f" JOIN merchants_merchant m ON m.id=tt.merchant_id WHERE t.value=%s ORDER BY t.id LIMIT 1 FOR UPDATE OF t",
                (value,)).fetchone()
            raw.execute("UPDATE payments_token SET tries_used=%s WHERE id=%s", (row[1] + 1, row[0]))
            raw.execute("SELECT kind FROM payments_ban WHERE (key=%s AND kind='card') OR (key = ANY(%s) AND kind='bin')"
                        " OR (key=%s AND kind='pin')", (fingerprint, ["424242", "42424242"], pin))
            raw.execute("SELECT kind, max_amount FROM payments_cardlimit WHERE currency='EUR' AND kind = ANY(%s)", (["VISA"],))
            txn = raw.execute(insert_txn, values(row[0], now)).fetchone()[0]
        acquirer_update(txn, now)

    def fewer() -> None:
        now = datetime.now(timezone.utc)
        value = insert_token(now)
        with raw.transaction():
            row = raw.execute(
                f"UPDATE payments_token t SET tries_used = t.tries_used + 1 WHERE t.value=%s AND t.terminal_id=%s"
                f" AND t.expires_at > now() AND t.payment_type='card' AND (t.try_count=-1 OR t.tries_used < t.try_count)"
                f" AND NOT EXISTS(SELECT 1 FROM payments_transaction x WHERE x.token_id=t.id AND x.status IN {holding})"
                f" RETURNING t.id", (value, term)).fetchone()
            raw.execute("SELECT kind FROM payments_ban WHERE (key=%s AND kind='card') OR (key = ANY(%s) AND kind='bin')"
                        " OR (key=%s AND kind='pin')", (fingerprint, ["424242", "42424242"], pin))
            txn = raw.execute(insert_txn, values(row[0], now)).fetchone()[0]
        acquirer_update(txn, now)

    measure("raw psycopg, the same 10 statements", same_sql, args.n)
    measure("raw psycopg, 7 statements (UPDATE..RETURNING lock, no limit query)", fewer, args.n)
    print(f"load average {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
