"""Start the SET gateway: its port and its diagnostic log port (the transport lives in setgateway.server)."""
from __future__ import annotations

import os

from django.core.management.base import BaseCommand

from setgateway.server import SetConfig, serve


class Command(BaseCommand):
    help = "Run the SET merchant/acquirer gateway (MIME over TCP) and its diagnostic log port."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=9100, help="0 picks a free port (printed)")
        parser.add_argument("--diag-port", type=int, default=9101, help="the diagnostic log port; 0 picks one")
        parser.add_argument("--t30", type=float, default=None, help="Greeting/Authenticating time-out (SET_T30_SECONDS)")
        parser.add_argument("--t120", type=float, default=None, help="close-reply time-out (SET_T120_SECONDS)")
        parser.add_argument("--max-outstanding", type=int, default=None,
                            help="requests at once per connection (SET_MAX_OUTSTANDING)")
        parser.add_argument("--max-message-bytes", type=int, default=None, help="SET_MAX_MESSAGE_BYTES")
        parser.add_argument(
            "--workers", type=int, default=int(os.environ.get("SET_WORKERS", "1")),
            help="processes sharing the ports with SO_REUSEPORT (default 1, or SET_WORKERS)",
        )

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        config = SetConfig.from_settings(
            t30=options["t30"], t120=options["t120"], max_outstanding=options["max_outstanding"],
            max_message_bytes=options["max_message_bytes"],
        )

        def announce(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        code = serve(options["host"], options["port"], options["diag_port"], workers=options["workers"],
                     config=config, announce=announce)
        if code:
            raise SystemExit(code)
