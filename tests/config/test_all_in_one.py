"""The README's first command, as a user runs it: migrate, seed_demo, runall —
then an esipay payment on :6543-like port confirmed by the demo return URL, a
refund carried out by the real Celery worker on the embedded broker, and its
webhook delivered to the demo endpoint. SIGTERM stops everything with exit 0."""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from clients.secure_api import SecureApiClient

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except (httpx.HTTPError, sqlite3.Error):
            result = None
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(180)
def test_make_run_serves_esipay_refunds_by_celery_and_delivers_webhooks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    web, esipay, terminals, set_port, set_diag = free_port(), free_port(), free_port(), free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings.dev", "GATEWAY_VAR_DIR": str(tmp_path / "var"),
        "PYTHONUNBUFFERED": "1",
    }  # nothing else: no DATABASE_URL, no CELERY_BROKER_URL (embedded defaults)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    seeded = json.loads(subprocess.run(
        [*manage, "seed_demo", "--json", "--web-url", f"http://127.0.0.1:{web}"],
        cwd=ROOT, env=env, check=True, timeout=60, capture_output=True, text=True,
    ).stdout)
    api_keys = json.loads(subprocess.run(
        [*manage, "create_merchant", "--name", "API shop"], cwd=ROOT, env=env, check=True, timeout=60,
        capture_output=True, text=True,
    ).stdout)
    log = open(tmp_path / "runall.log", "w")  # noqa: SIM115
    run = subprocess.Popen(
        [*manage, "runall", "--web-port", str(web), "--esipay-port", str(esipay), "--terminal-port", str(terminals),
         "--set-port", str(set_port), "--set-diag-port", str(set_diag)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        uuid = seeded["merchant"]["uuid"]
        year = time.gmtime().tm_year + 2
        for port in (web, esipay):  # every process up (the return URL is on the web port)
            wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/admin/login/", timeout=5).status_code == 200,
                     60, f"port {port}")
        paid = wait_for(lambda: httpx.get(
            f"http://127.0.0.1:{esipay}/cardpay/{uuid}/demo-1/4242424242424242/12/{year}/12.50", timeout=20
        ), 60, "esipay to answer")
        assert paid.status_code == 200, paid.text
        transaction = paid.json()["transaction"]
        # The secure API is served on the web port too (signed, encrypted).
        api = SecureApiClient(f"http://127.0.0.1:{web}", app_id=api_keys["app_id"], app_key=api_keys["app_key"],
                              data_key=api_keys["data_key"])
        assert api.post("/account", {"name": "Ada"}).status == 200
        api.close()
        short = httpx.get(f"http://127.0.0.1:{esipay}/cardpay/{uuid}/demo-2/4242424242/13/{year}/1.00", timeout=20)
        assert short.status_code == 400 and short.json()["code"] == "invalid_card_expiry"
        refunded = httpx.get(f"http://127.0.0.1:{web}/cardpay/{uuid}/{transaction}/2.50", timeout=20)
        assert refunded.status_code == 200 and refunded.json()["status"] == "pending"

        db = tmp_path / "var" / "gateway.sqlite3"

        def refund_done():  # type: ignore[no-untyped-def]
            with sqlite3.connect(db) as conn:
                return conn.execute("SELECT status FROM payments_refund").fetchone() == ("succeeded",) and \
                    conn.execute(
                        "SELECT COUNT(*) FROM payments_webhookdelivery WHERE status = 'succeeded'"
                    ).fetchone()[0] == 2

        wait_for(refund_done, 60, "the worker to refund and deliver both webhooks")
        with sqlite3.connect(db) as conn:
            types = sorted(t for (t,) in conn.execute("SELECT type FROM payments_event"))
        assert types == ["payment.succeeded", "refund.succeeded"]

        # The SET gateway is up too, for the demo merchant's printed credentials.
        from decimal import Decimal

        from setgateway.client import BlockingSetClient

        def set_authorized():  # type: ignore[no-untyped-def]
            try:
                with BlockingSetClient("127.0.0.1", set_port, transport_id=seeded["set"]["transport_id"],
                                       secret=seeded["set"]["secret"], timeout=10) as gateway:
                    answer = gateway.authorize("set-demo-1", pan="4242424242424242", expiry=f"{year}12",
                                               amount=Decimal("3.00"))
            except (OSError, TimeoutError):
                return False
            return answer.status == "approved"

        wait_for(set_authorized, 60, "the SET gateway to authorize")
    finally:
        run.send_signal(signal.SIGTERM)
        code = run.wait(timeout=60)
        log.close()
    output = (tmp_path / "runall.log").read_text()
    assert code == 0, output[-3000:]
    assert "demo merchant: webhook refund.succeeded" in output and "signature ok" in output
    assert "/cardpay/" in output and "Bad Request" in output  # the access and warning lines are there...
    assert "4242424242" not in output  # ...with the card masked, the 10-digit one too
