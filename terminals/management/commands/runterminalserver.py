"""Start the terminal listener (the protocol lives in terminals.server, the plumbing in listeners)."""
from __future__ import annotations

import os

from django.core.management.base import BaseCommand

from terminals.server import serve


class Command(BaseCommand):
    help = (
        "Run the terminal listener (JSON lines and HTTP on one port). Prints 'listening on HOST:PORT' when "
        "ready; SIGTERM stops accepting, lets requests in flight finish (TERMINAL_DRAIN_SECONDS) and exits 0."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=9000, help="0 picks a free port (printed)")
        parser.add_argument(
            "--workers", type=int, default=int(os.environ.get("TERMINAL_WORKERS", "1")),
            help="processes sharing the port with SO_REUSEPORT, a dead one restarted "
                 "(default 1, or TERMINAL_WORKERS)",
        )

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        def announce(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        code = serve(options["host"], options["port"], workers=options["workers"], announce=announce)
        if code:
            raise SystemExit(code)
