"""The all-in-one run (``make run``): every process of the gateway on embedded defaults.

- web: back office, esipay and the demo merchant's pages on :8000;
- esipay: the same web app bound to :6543 too (esipay's documented port);
- terminals: the terminal listener on :9000;
- set: the SET gateway on :9100, its diagnostic log port on :9101;
- worker and beat: a real Celery worker and scheduler, on the embedded
  filesystem broker unless ``CELERY_BROKER_URL`` names a real one.

Each process is a child; Ctrl-C or SIGTERM stops them all. The demo
merchant's return URL and webhook endpoint are on this machine, so private
callbacks are allowed here unless ``PAYMENTS_ALLOW_PRIVATE_CALLBACKS`` says
otherwise.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the web app, esipay, the terminal listener, the SET gateway and a Celery worker and beat together (development)."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--web-port", type=int, default=8000)
        parser.add_argument("--esipay-port", type=int, default=6543)
        parser.add_argument("--terminal-port", type=int, default=9000)
        parser.add_argument("--set-port", type=int, default=9100)
        parser.add_argument("--set-diag-port", type=int, default=9101)

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        host = options["host"]
        manage = [sys.executable, "manage.py"]
        celery = [sys.executable, "-m", "celery", "-A", "config"]
        env = {**os.environ, "PAYMENTS_ALLOW_PRIVATE_CALLBACKS": os.environ.get("PAYMENTS_ALLOW_PRIVATE_CALLBACKS", "1")}
        commands = {
            "web": [*manage, "runserver", "--noreload", f"{host}:{options['web_port']}"],
            "esipay": [*manage, "runserver", "--noreload", f"{host}:{options['esipay_port']}"],
            "terminals": [*manage, "runterminalserver", "--host", host, "--port", str(options["terminal_port"])],
            "set": [*manage, "runsetgateway", "--host", host, "--port", str(options["set_port"]),
                    "--diag-port", str(options["set_diag_port"])],
            "worker": [*celery, "worker", "-l", "INFO", "--concurrency", "2", "-n", "gateway@%h",
                       "--without-gossip", "--without-mingle"],
            "beat": [*celery, "beat", "-l", "INFO", "-s", settings.CELERY_BEAT_SCHEDULE_FILENAME],
        }
        children = {name: subprocess.Popen(command, env=env) for name, command in commands.items()}
        broker = settings.CELERY_BROKER_URL.split("://")[0]
        self.stdout.write(
            f"\nBack office:       http://{host}:{options['web_port']}/admin/\n"
            f"esipay:            http://{host}:{options['esipay_port']}/cardpay/... (and on :{options['web_port']})\n"
            f"Terminal listener: {host}:{options['terminal_port']} (JSON lines or HTTP)\n"
            f"SET gateway:       {host}:{options['set_port']} (diagnostic log {host}:{options['set_diag_port']})\n"
            f"Celery:            worker + beat on the {broker} broker"
            f"{' (embedded, under var/broker/)' if broker == 'filesystem' else ''}\n"
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
