"""Sandbox acquirers that take their time (drain tests, a slow acquirer that must
not stall other terminals) or cut the listener's database while it records."""
from __future__ import annotations

import os
import threading
import time

from payments.acquirers.base import AcquirerResult, AuthorizationRequest
from payments.acquirers.sandbox import SandboxAcquirer


class SlowAcquirer(SandboxAcquirer):
    def authorize(self, request: AuthorizationRequest) -> AcquirerResult:
        time.sleep(float(os.environ.get("SLOW_ACQUIRER_SECONDS", "1.0")))
        return super().authorize(request)


class BlockingAcquirer(SandboxAcquirer):
    """Holds every authorization until the test releases it (in-process listeners):
    ``entered`` counts authorizations waiting at the acquirer."""

    entered = threading.Semaphore(0)
    release = threading.Event()

    def authorize(self, request: AuthorizationRequest) -> AcquirerResult:
        type(self).entered.release()
        type(self).release.wait(30)
        return super().authorize(request)


class DatabaseDroppingAcquirer(SandboxAcquirer):
    """Approves, then cuts the database connections of the listener that asked
    (PostgreSQL's pg_terminate_backend) before it can record the answer: the
    database dropping "while recording". ``spare`` are backend pids to keep (the
    test's own)."""

    spare: set[int] = set()

    def authorize(self, request: AuthorizationRequest) -> AcquirerResult:
        import psycopg
        from django.db import connection

        result = super().authorize(request)
        db = connection.settings_dict
        with psycopg.connect(
            dbname=db["NAME"], user=db.get("USER") or "postgres", password=db.get("PASSWORD") or None,
            host=db.get("HOST") or "127.0.0.1", port=db.get("PORT") or 5432, autocommit=True,
        ) as own:
            own.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND NOT (pid = ANY(%s))",
                [list(type(self).spare)],
            )
        return result
