"""The all-in-one run: back office on :8000 and the terminal listener on :9000.

Starts each process as a child, prints where to reach them, and stops them
all on Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the web back office and the terminal listener together (development)."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--web-port", type=int, default=8000)
        parser.add_argument("--terminal-port", type=int, default=9000)

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        host = options["host"]
        manage = [sys.executable, "manage.py"]
        children = {
            "web": subprocess.Popen([*manage, "runserver", "--noreload", f"{host}:{options['web_port']}"]),
            "terminals": subprocess.Popen(
                [*manage, "runterminalserver", "--host", host, "--port", str(options["terminal_port"])]
            ),
        }
        self.stdout.write(
            f"\nBack office:       http://{host}:{options['web_port']}/admin/\n"
            f"Terminal listener: {host}:{options['terminal_port']} (JSON lines or HTTP)\n"
            f"  try: curl -u TERMINAL_ID:SECRET 'http://{host}:{options['terminal_port']}/token?type=CARD'\n"
            "Stop with Ctrl-C.\n"
        )
        stopping = False

        def stop(signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        failed = None
        while not stopping and failed is None:
            time.sleep(0.5)
            failed = next((name for name, p in children.items() if p.poll() is not None), None)
        for process in children.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in children.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        if failed:
            raise SystemExit(f"{failed} exited with status {children[failed].returncode}")
