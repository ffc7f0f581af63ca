#!/usr/bin/env python3
"""Where the listener's CPU of one terminal payment goes on the async path, no sockets.

Runs the async path's ``token_async`` + ``pay_async`` (what the listener does
for one /token and one /payment/card, without the framing) in a loop on one
event loop against the bench database, and reports per token + payment the
client CPU, PostgreSQL's CPU and wall time, then (``--profile``) the
functions that cost most (cProfile, cumulative).

Run terminal_bench.py once first (it creates the database, the merchant and terminals).
    .venv/bin/python bench/async_payment_cost.py [--database-url URL] [-n 2000] [--profile]
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from terminal_bench import DEFAULT_DB, _postgres_ticks, check_local, load  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_DB)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--socket-dir", default="", help="reach PostgreSQL by its Unix socket in DIR instead of TCP")
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
    import django

    django.setup()
    from django.conf import settings

    from listeners.database import AsyncDatabase, dsn_from_django
    from payments.services import sale_async
    from payments.states import PaymentMethod
    from terminals import handlers, protocol
    from terminals.models import Terminal
    from terminals.services import TerminalIdentity

    terminal = Terminal.objects.select_related("merchant").filter(merchant__name="bench", is_active=True).first()
    if terminal is None:
        raise SystemExit("no bench terminal: run bench/terminal_bench.py first")
    identity = TerminalIdentity(terminal.pk, terminal.terminal_id, terminal.merchant.name)
    print(f"load average {load()} (the machine may be shared: compare CPU, not wall)")

    async def run() -> None:
        connect = dsn_from_django(settings.DATABASES["default"])
        if args.socket_dir:
            connect.update(host=args.socket_dir, port=None)
        db = AsyncDatabase(connect, size=1, init=sale_async.connection_init)
        await db.start()

        async def once() -> None:
            body = await handlers.token_async(db, identity, protocol.TokenCommand(payment_type=PaymentMethod.CARD, try_count=3))
            command = protocol.PaymentCommand(
                method=PaymentMethod.CARD, token=body["token"], amount="12.50", card_type="VISA",
                card_number="4242424242424242", pin="1235", check_number=None,
            )
            answer = await handlers.pay_async(db, lambda ids: None, identity, command)
            if "transaction" not in answer:
                raise SystemExit(f"not approved: {answer}")

        for _ in range(50):
            await once()
        profiler = cProfile.Profile() if args.profile else None
        pg0 = _postgres_ticks()
        wall, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        for _ in range(args.n):
            await once()
        if profiler:
            profiler.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        pg = (_postgres_ticks() - pg0) / CLK_TCK
        print(f"async path, token + payment, {args.n} times: client CPU {1000 * cpu / args.n:.3f} ms,"
              f" PostgreSQL CPU {1000 * pg / args.n:.3f} ms, wall {1000 * wall / args.n:.3f} ms"
              + (" (under cProfile)" if profiler else ""))
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        await db.close()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
