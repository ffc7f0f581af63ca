"""Tests: the dev settings' defaults with fixed keys and fast password hashing.

Built on ``base``, not ``dev``: the dev settings refuse to generate a master
key for a server database, and CI runs the tests on PostgreSQL with no key
configured; the tests' keys are fixed here instead.
"""
from .base import *  # noqa: F401,F403
from .base import env as _env

DEBUG = _env.bool("DJANGO_DEBUG", default=True)

PAYMENTS_MASTER_KEY = "test-master-key-not-for-production-0123456789"
SECRET_KEY = "test-secret-key-not-for-production"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
PAYMENTS_ALLOW_PRIVATE_CALLBACKS = True

# Celery in tests: a queue of this test run's own, so that tasks published by
# tests without a worker never reach another run's worker. The worker tests
# start `celery worker` with the same GATEWAY_TEST_RUN (tests/support/workers.py).
import os as _os  # noqa: E402

from .base import CELERY_BROKER_URL, VAR_DIR as _VAR_DIR  # noqa: E402

GATEWAY_TEST_RUN = _os.environ.setdefault("GATEWAY_TEST_RUN", str(_os.getpid()))
CELERY_TASK_DEFAULT_QUEUE = f"gateway-test-{GATEWAY_TEST_RUN}"
if CELERY_BROKER_URL.startswith("filesystem://"):
    from .broker import filesystem_broker_options, make_broker_folders

    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(_VAR_DIR / "broker-test" / GATEWAY_TEST_RUN)
    make_broker_folders(CELERY_BROKER_TRANSPORT_OPTIONS)

# The sandbox acquirer's ledger of this test run: every test database numbers
# transactions from 1 again, so a ledger shared with earlier runs would answer
# an inquiry with another run's payment. Workers and listeners started by the
# tests share it (same GATEWAY_TEST_RUN). Within a run, SQLite numbers
# transactions from 1 again after each rolled-back test: a test whose
# processes inquire gives them a ledger of its own through the environment
# (the own_sandbox_ledger fixture, tests/conftest.py).
SANDBOX_ACQUIRER_LEDGER = _os.environ.get("SANDBOX_ACQUIRER_LEDGER") or str(
    _VAR_DIR / "test-runs" / GATEWAY_TEST_RUN / "sandbox-acquirer.ledger"
)
