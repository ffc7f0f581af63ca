#!/usr/bin/env python3
"""What the acquirer path costs a payment, without a database or sockets.

- the sandbox's ledger (one O_APPEND write per authorization, so that another
  process can ask about it): the sandbox's authorize with and without it;
- the acquirer pool (every call runs on its own threads, with a deadline):
  the connector called directly, through ``acquirer_run`` (a thread hand-off
  and a wait, what synchronous callers pay), and through
  ``acquirer_answer_async`` from an event loop (what the terminal listener
  pays), one call at a time and 32 at once;
- an inquiry (the resolver's question) against ledgers of 10^5 and 10^6
  lines, for a recent transaction and for one the sandbox never saw (a
  whole-file scan).

With ``--database-url`` (a local PostgreSQL database of yours: it is
migrated, and a "bench" merchant and terminal are added), also one whole
terminal payment (``token_issue`` + ``payment_sale_with_token``, one thread),
in interleaved rounds: as shipped; with the connector called inline instead
of on the pool; and without the partial index ``txn_processing_since`` that
the resolver's question needs (dropped for the round, then rebuilt).

Wall and CPU time per call, with the load average (the machine may be shared:
compare the rows of one run, A/B, not figures of different runs).

    .venv/bin/python bench/acquirer_cost.py [-n 20000] [--database-url postgres://postgres@127.0.0.1:5432/NAME]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(label: str, func, n: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    for _ in range(min(200, n)):
        func()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        func()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label:64} wall {1e6 * wall / n:8.1f} µs   CPU {1e6 * cpu / n:8.1f} µs")
    return wall / n, cpu / n


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20000)
    parser.add_argument("--database-url", default="", help="also measure whole payments on this PostgreSQL database")
    parser.add_argument("--payments", type=int, default=1000, help="payments per round (with --database-url)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="acquirer-bench-"))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings.dev", GATEWAY_VAR_DIR=str(folder),
        DATABASE_URL=args.database_url or "sqlite://:memory:", DJANGO_DEBUG="0",
        SANDBOX_ACQUIRER_LEDGER=str(folder / "ledger"), LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    from payments.acquirers.base import AuthorizationRequest
    from payments.acquirers.sandbox import Ledger, SandboxAcquirer
    from payments.services import acquiring

    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    sandbox = SandboxAcquirer()
    counter = iter(range(1, 10**9))

    def request() -> AuthorizationRequest:
        return AuthorizationRequest(transaction_id=next(counter), amount=Decimal("12.50"), currency="EUR",
                                    capture=True, pan="4242424242424242")

    n = args.n
    print("-- the sandbox's ledger")
    _, cpu_with = measure("sandbox authorize, ledger on (one write per call)", lambda: sandbox.authorize(request()), n)
    real_append = Ledger.append
    Ledger.append = lambda self, *a: None  # type: ignore[method-assign]
    _, cpu_without = measure("sandbox authorize, ledger off", lambda: sandbox.authorize(request()), n)
    Ledger.append = real_append  # type: ignore[method-assign]
    print(f"   ledger: {1e6 * (cpu_with - cpu_without):.1f} µs CPU per authorization")

    print("-- the acquirer pool")
    direct = measure("connector called directly", lambda: sandbox.authorize(request()), n)
    pooled = measure("acquirer_run (pool hand-off, deadline)", lambda: acquiring.acquirer_run(sandbox.authorize, request()), n)

    async def one_at_a_time() -> None:
        for _ in range(n):
            await acquiring.acquirer_answer_async(sandbox.authorize, request())

    async def thirty_two_at_once() -> None:
        for _ in range(n // 32):
            await asyncio.gather(*(acquiring.acquirer_answer_async(sandbox.authorize, request()) for _ in range(32)))

    from terminals.server import _loop_factory

    loop_factory = _loop_factory()
    for label, coroutine, calls in (
        ("acquirer_answer_async from an event loop, 1 at a time", one_at_a_time, n),
        ("acquirer_answer_async from an event loop, 32 at once", thirty_two_at_once, (n // 32) * 32),
    ):
        wall, cpu = time.perf_counter(), time.process_time()
        with asyncio.Runner(loop_factory=loop_factory) as runner:  # the listener's loop (uvloop)
            runner.run(coroutine())
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"{label:64} wall {1e6 * wall / calls:8.1f} µs   CPU {1e6 * cpu / calls:8.1f} µs")
    print(f"   pool hand-off (sync): {1e6 * (pooled[1] - direct[1]):.1f} µs CPU per call")

    print("-- inquiries (the resolver's, rare)")
    for lines in (10**5, 10**6):
        path = folder / f"ledger-{lines}"
        with open(path, "w") as ledger:
            for pk in range(1, lines + 1):
                ledger.write(f"A {pk} approved 1 sbx_0123456789abcdef01234567 123456 - 12.50\n")
        probe = SandboxAcquirer()
        probe.ledger = Ledger(path)
        measure(f"inquire, {lines:>7} lines, a recent transaction", lambda: probe.inquire(transaction_id=lines - 50), 200)
        measure(f"inquire, {lines:>7} lines, never seen (back to the horizon)", lambda: probe.inquire(transaction_id=lines + 7), 5)
    size = (folder / "ledger").stat().st_size
    print(f"ledger line: {size / next(counter):.0f} bytes per authorization")
    if args.database_url:
        whole_payments(args.payments, args.rounds)
    return 0


def whole_payments(n: int, rounds: int) -> None:
    from django.core.management import call_command
    from django.db import connection

    from merchants.models import Merchant
    from merchants.services import merchant_create
    from payments import services
    from payments.services import acquiring
    from payments.states import PaymentMethod
    from terminals.services import terminal_create

    if connection.vendor != "postgresql" or connection.settings_dict.get("HOST") not in ("127.0.0.1", "localhost"):
        raise SystemExit("--database-url must be a local PostgreSQL database")
    call_command("migrate", verbosity=0)
    merchant = Merchant.objects.filter(name="bench").first() or merchant_create(name="bench")
    terminal, _ = terminal_create(merchant=merchant, label="acquirer bench")

    def payment() -> None:
        token = services.token_issue(terminal_pk=terminal.pk, payment_type=PaymentMethod.CARD, try_count=3)
        services.payment_sale_with_token(
            terminal_pk=terminal.pk, token=token.value, method=PaymentMethod.CARD, amount="12.50",
            card_type="VISA", card_number="4242424242424242", pin="1235",
        )

    pooled = acquiring.acquirer_run

    def inline(call, /, *a, **kw):  # type: ignore[no-untyped-def]
        return call(*a, **kw)

    def no_index(run):  # type: ignore[no-untyped-def]
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX txn_processing_since")
        try:
            return run()
        finally:
            with connection.cursor() as cursor:
                cursor.execute(
                    "CREATE INDEX txn_processing_since ON payments_transaction (updated_at) WHERE status = 'processing'"
                )

    sys.path.insert(0, str(ROOT / "bench"))
    from terminal_bench import _postgres_ticks

    tick = os.sysconf("SC_CLK_TCK")

    def measure_db(label: str) -> tuple[float, float]:
        for _ in range(50):
            payment()
        pg, cpu = _postgres_ticks(), time.process_time()
        for _ in range(n):
            payment()
        cpu, pg = (time.process_time() - cpu) / n, (_postgres_ticks() - pg) / tick / n
        print(f"{label:52} client CPU {1e3 * cpu:6.3f} ms   postgres CPU {1e3 * pg:6.3f} ms")
        return cpu, pg

    print(f"-- whole payments (token + sale, one thread, {n} per round), load {os.getloadavg()[0]:.2f}")
    totals: dict[str, list[tuple[float, float]]] = {"shipped": [], "connector inline": [], "no partial index": []}
    for _ in range(rounds):
        totals["shipped"].append(measure_db("shipped (pool + deadline, ledger, partial index)"))
        acquiring.acquirer_run = inline  # type: ignore[assignment]
        try:
            totals["connector inline"].append(measure_db("connector inline (no pool)"))
        finally:
            acquiring.acquirer_run = pooled  # type: ignore[assignment]
        totals["no partial index"].append(no_index(lambda: measure_db("without the partial index")))
    for label, rows in totals.items():
        cpu = sorted(r[0] for r in rows)[len(rows) // 2]
        pg = sorted(r[1] for r in rows)[len(rows) // 2]
        print(f"   median of {rounds}, {label:18}: client CPU {1e3 * cpu:.3f} ms, postgres CPU {1e3 * pg:.3f} ms")


if __name__ == "__main__":
    sys.exit(main())
