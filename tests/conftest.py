from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection


@pytest.fixture
def on_postgres() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture
def require_postgres() -> None:
    """Row-lock races and PostgreSQL-only statements (CI runs them there)."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (row locks, or a PostgreSQL-only statement): set DATABASE_URL (CI does)")


@pytest.fixture
def shipped_defaults(db):  # type: ignore[no-untyped-def]
    """The limits and bans the payments migrations ship (operations.md, and limits for
    every currency), present even after a transactional test flushed the tables:
    re-run the migrations' own code (found by name: the numbers may change)."""
    import importlib
    from pathlib import Path

    from django.apps import apps

    import payments.migrations

    folder = Path(payments.migrations.__file__).parent
    for suffix in ("_default_limits_and_bans", "_card_limits_for_every_currency"):
        (found,) = folder.glob(f"[0-9][0-9][0-9][0-9]{suffix}.py")
        importlib.import_module(f"payments.migrations.{found.stem}").forwards(apps, None)


@pytest.fixture
def terminal(db):  # type: ignore[no-untyped-def]
    from tests.factories import TerminalFactory

    return TerminalFactory()


@pytest.fixture
def celery_processes():  # type: ignore[no-untyped-def]
    """Start real ``celery worker`` / ``beat`` processes (tests/support/workers.py); all
    are stopped after the test. Here, not in tests/celery: the SET gateway's kill test
    runs the resolver in them too."""
    from tests.support.workers import CeleryProcess

    started: list[CeleryProcess] = []

    def start(kind: str = "worker", *, env: dict[str, str] | None = None, name: str = "w1") -> CeleryProcess:
        process = CeleryProcess(kind, env=env, name=f"{name}-{len(started)}")
        started.append(process)
        return process.wait_ready()

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="session", autouse=True)
def _remove_this_runs_embedded_broker():  # type: ignore[no-untyped-def]
    """The embedded broker's folder and the sandbox ledger of this test run
    (config/settings/test.py) go with it."""
    yield
    import shutil
    from pathlib import Path

    from django.conf import settings

    folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("data_folder_in")
    if folder and "broker-test" in str(folder):
        shutil.rmtree(Path(str(folder)).parent, ignore_errors=True)
    ledger = Path(settings.SANDBOX_ACQUIRER_LEDGER)  # the sandbox acquirer's, of this run
    if "test-runs" in ledger.parts:
        shutil.rmtree(ledger.parent, ignore_errors=True)


@pytest.fixture
def keep_the_test_connection():  # type: ignore[no-untyped-def]
    """As Django's test client does: a request through the WSGI handler must not close
    the test's database connection (it holds the test's transaction)."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def own_sandbox_ledger(tmp_path, settings, monkeypatch):  # type: ignore[no-untyped-def]
    """A sandbox ledger of this test alone, for this process and the processes it starts
    (listeners, gateways, Celery workers inherit the environment). The run's shared ledger
    would answer an inquiry about transaction 7 with an earlier test's transaction 7:
    SQLite numbers transactions from 1 again after each rolled-back test."""
    from payments.acquirers.base import _load

    path = str(tmp_path / "sandbox-acquirer.ledger")
    settings.SANDBOX_ACQUIRER_LEDGER = path
    monkeypatch.setenv("SANDBOX_ACQUIRER_LEDGER", path)
    _load.cache_clear()  # the in-process acquirer opens the new ledger
    yield Path(path)
    _load.cache_clear()


def _transactional(request) -> bool:  # type: ignore[no-untyped-def]
    marker = request.node.get_closest_marker("django_db")
    if marker is not None and marker.kwargs.get("transaction"):
        return True
    return bool({"transactional_db", "live_server"} & set(request.fixturenames))


@pytest.fixture(autouse=True)
def _audit_log_emptied_between_tests(request):  # type: ignore[no-untyped-def]
    """The audit log's triggers refuse DELETE, which is how a transactional
    test's database is emptied on SQLite (PostgreSQL's TRUNCATE does not fire
    them): drop them around the emptying, then guard the table again. Set
    up after the database fixture, so this runs before its flush. For every
    test that writes audit entries (the back office, and the doors' own
    back-office pages)."""
    if not _transactional(request):
        yield
        return
    request.getfixturevalue("transactional_db")
    yield
    from django.db import connection

    from backoffice import append_only

    if connection.vendor == "sqlite":
        append_only.uninstall(connection)
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {append_only.TABLE}")
        finally:
            append_only.install(connection)
