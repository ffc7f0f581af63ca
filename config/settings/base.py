"""Settings shared by every environment, read from the environment.

One base module (cookiecutter-django's layout): ``dev`` adds generated
secrets and DEBUG, ``production`` refuses to start without its secrets.
Every variable is listed in ``docs/settings.md``.
"""
from __future__ import annotations

from pathlib import Path

import environ

from .broker import filesystem_broker_options

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(environ.Env().str("GATEWAY_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "merchants",
    "terminals",
    "payments",
    "payments.iotp",  # IOTP session records (the IOTP door, payments/doors/iotp)
    "backoffice",  # after django.contrib.auth: it re-registers the user and group admins
    "setgateway",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database(url: str) -> dict:
    db = environ.Env.db_url_config(url)
    if db["ENGINE"] == "django.db.backends.sqlite3":
        # IMMEDIATE: a transaction takes the write lock when it begins, so
        # two payments racing on one token serialize instead of one failing
        # with "database is locked" half-way. WAL lets readers go on.
        db["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        # Threads of the race tests need a real file, not shared memory.
        db["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
    elif db["ENGINE"] == "django.db.backends.postgresql":
        db.setdefault("OPTIONS", {})
        # Health-check a persistent connection before reuse: listeners keep
        # one connection per worker thread for hours.
        db["CONN_HEALTH_CHECKS"] = True
        # Server-side prepared statements (docs/benchmarks.md: half of PostgreSQL's
        # CPU per terminal payment was parsing and planning): PostgreSQL binds the
        # parameters, and a statement run twice on a connection is prepared. Not
        # at its first run: Django's migrations send several DDL commands in one
        # string, which cannot be prepared. Turn off behind a pooler that cannot
        # keep prepared statements (PgBouncer < 1.21 in transaction mode).
        if env.bool("DATABASE_PREPARED_STATEMENTS", default=True):
            db["OPTIONS"].update(
                server_side_binding=True, prepare_threshold=env.int("DATABASE_PREPARE_THRESHOLD", default=1)
            )
    db["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    return db


DATABASES = {
    "default": _database(env.str("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'gateway.sqlite3'}")),
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Payments ---------------------------------------------------------------
# Acquirer connector: dotted path of a payments.acquirers.base.Acquirer.
PAYMENTS_ACQUIRER = env.str("PAYMENTS_ACQUIRER", default="payments.acquirers.sandbox.SandboxAcquirer")
PAYMENTS_ALLOW_PRIVATE_CALLBACKS = env.bool("PAYMENTS_ALLOW_PRIVATE_CALLBACKS", default=False)

# --- Behind a proxy (docs/operations.md) -------------------------------------
# Reverse proxies in front of the web app: addresses, networks, or "unix" (a
# proxy on a Unix socket). Only a request whose direct peer is one of them has
# its X-Forwarded-For read (right-most entry that is not a trusted proxy);
# otherwise the caller is REMOTE_ADDR (payments/doors/http.py). A bad entry
# refuses to start: a typo must not quietly trust nobody, or everybody.
TRUSTED_PROXIES = [entry.strip() for entry in env.list("TRUSTED_PROXIES", default=[]) if entry.strip()]
from payments.doors.http import parse_trusted_proxies as _parse_trusted_proxies  # noqa: E402

_parse_trusted_proxies(TRUSTED_PROXIES)

# A repeat of an esipay cid waits this long for the first request's outcome.
ESIPAY_REPEAT_WAIT_SECONDS = env.float("ESIPAY_REPEAT_WAIT_SECONDS", default=15.0)

# --- Outbox: webhooks and refunds delivered by Celery -------------------------
# A webhook is retried with exponential backoff and full jitter
# (base * 2**attempt, at most WEBHOOK_RETRY_MAX_DELAY_SECONDS) until it is
# WEBHOOK_MAX_AGE_SECONDS old (3 days): then it is marked failed, kept for
# staff, who may resend it.
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=10.0)
WEBHOOK_RETRY_MAX_DELAY_SECONDS = env.float("WEBHOOK_RETRY_MAX_DELAY_SECONDS", default=6 * 3600.0)
WEBHOOK_MAX_AGE_SECONDS = env.float("WEBHOOK_MAX_AGE_SECONDS", default=3 * 24 * 3600.0)
# How long a worker owns a claimed delivery or refund; after that (a worker
# killed mid-task) the sweep hands it to another worker. Longer than the
# 10 s a merchant call may take, and than an acquirer call.
OUTBOX_LEASE_SECONDS = env.float("OUTBOX_LEASE_SECONDS", default=60.0)
# The periodic sweep (Celery beat) re-enqueues work that is due and unclaimed
# for more than the grace (so that it does not race the task queued at commit).
OUTBOX_SWEEP_SECONDS = env.float("OUTBOX_SWEEP_SECONDS", default=30.0)
OUTBOX_SWEEP_GRACE_SECONDS = env.float("OUTBOX_SWEEP_GRACE_SECONDS", default=60.0)
OUTBOX_SWEEP_BATCH = env.int("OUTBOX_SWEEP_BATCH", default=500)
# A row the sweep queued is not queued again by it for this long (its message
# may be waiting behind a backlog: re-queuing it would only grow the backlog).
OUTBOX_RESWEEP_SECONDS = env.float("OUTBOX_RESWEEP_SECONDS", default=300.0)
# An esipay authorization still waiting for its confirmation this long after
# its last change was abandoned (its request died): the sweep voids it.
ESIPAY_UNCONFIRMED_VOID_SECONDS = env.float("ESIPAY_UNCONFIRMED_VOID_SECONDS", default=120.0)

# --- Celery -------------------------------------------------------------------
# Default: an embedded broker that needs no server (kombu's filesystem
# transport under var/broker/). Set CELERY_BROKER_URL to redis://... or
# amqp://... for a real one; the code is the same.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
_FS_BROKER_DIR = Path(env.str("CELERY_FS_BROKER_DIR", default=str(VAR_DIR / "broker")))
# Redis (and SQS) redeliver an unacknowledged message after the visibility
# timeout; no countdown may exceed it, or the message would run twice early.
CELERY_VISIBILITY_TIMEOUT_SECONDS = env.int("CELERY_VISIBILITY_TIMEOUT_SECONDS", default=3600)
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The folders are made by the dev settings; production refuses this broker.
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(_FS_BROKER_DIR)
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT_SECONDS,
        # Redis: a broker that accepts and never answers (paused, failing over)
        # must cost seconds, not hang the payment that publishes after commit.
        "socket_connect_timeout": 2,
        "socket_timeout": 2,
    }
# A countdown longer than this is left to the sweep instead (half the
# visibility timeout: a task waiting in a worker is never redelivered early).
CELERY_MAX_COUNTDOWN_SECONDS = CELERY_VISIBILITY_TIMEOUT_SECONDS // 2
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="gateway")
# A task is acknowledged after it ran, and given back if its worker dies.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
# A task never outlives its lease: a hung acquirer or merchant call is cut
# (prefork pool) before the sweep could hand the same row to a second worker.
CELERY_TASK_SOFT_TIME_LIMIT = max(5, int(OUTBOX_LEASE_SECONDS) - 15)
CELERY_TASK_TIME_LIMIT = max(10, int(OUTBOX_LEASE_SECONDS) - 5)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Publishing happens after a commit, in the request: a broker that is down
# must cost a second, not hang the payment (the sweep delivers later).
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}
CELERY_BEAT_SCHEDULE = {
    "sweep-outbox": {"task": "payments.tasks.sweep_outbox", "schedule": OUTBOX_SWEEP_SECONDS},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Acquirer calls and unknown outcomes (docs/decisions.md) -------------------
# Every acquirer call runs on a pool of its own (threads per process) and is
# waited for this long; after that its outcome is unknown: the transaction
# stays processing, holding its token and merchant reference, until the
# resolver settles it.
ACQUIRER_TIMEOUT_SECONDS = env.float("ACQUIRER_TIMEOUT_SECONDS", default=10.0)
ACQUIRER_THREADS = env.int("ACQUIRER_THREADS", default=64)
# The resolver (Celery beat, every PAYMENTS_RESOLVE_SWEEP_SECONDS) takes a
# transaction processing for longer than this, asks the acquirer what became
# of it and records that; an approval nobody was told about is reversed. Its
# lease on a row is OUTBOX_LEASE_SECONDS (the task time limits follow it).
PAYMENTS_RESOLVE_AFTER_SECONDS = env.float("PAYMENTS_RESOLVE_AFTER_SECONDS", default=60.0)
PAYMENTS_RESOLVE_SWEEP_SECONDS = env.float("PAYMENTS_RESOLVE_SWEEP_SECONDS", default=30.0)
PAYMENTS_RESOLVE_BATCH = env.int("PAYMENTS_RESOLVE_BATCH", default=100)
if PAYMENTS_RESOLVE_AFTER_SECONDS <= ACQUIRER_TIMEOUT_SECONDS:
    from django.core.exceptions import ImproperlyConfigured

    # A request still waiting for its answer must never be overtaken by the resolver.
    raise ImproperlyConfigured(
        "PAYMENTS_RESOLVE_AFTER_SECONDS must be longer than ACQUIRER_TIMEOUT_SECONDS "
        f"({PAYMENTS_RESOLVE_AFTER_SECONDS:g} <= {ACQUIRER_TIMEOUT_SECONDS:g})"
    )
CELERY_BEAT_SCHEDULE["resolve-unknown-outcomes"] = {
    "task": "payments.tasks.resolve_unknown_outcomes", "schedule": PAYMENTS_RESOLVE_SWEEP_SECONDS,
}
# The sandbox acquirer's memory, shared by every process of the machine (so
# that a worker can ask about an authorization a listener made): an
# append-only file.
SANDBOX_ACQUIRER_LEDGER = env.str("SANDBOX_ACQUIRER_LEDGER", default=str(VAR_DIR / "sandbox-acquirer.ledger"))

# --- Terminal listener (docs/terminal.md) -----------------------------------
TERMINAL_TOKEN_TTL_SECONDS = env.int("TERMINAL_TOKEN_TTL_SECONDS", default=180)
TERMINAL_IDLE_TIMEOUT_SECONDS = env.float("TERMINAL_IDLE_TIMEOUT_SECONDS", default=300.0)
TERMINAL_REQUEST_TIMEOUT_SECONDS = env.float("TERMINAL_REQUEST_TIMEOUT_SECONDS", default=30.0)
TERMINAL_MAX_CONNECTIONS = env.int("TERMINAL_MAX_CONNECTIONS", default=10000)
TERMINAL_MAX_FRAME_BYTES = env.int("TERMINAL_MAX_FRAME_BYTES", default=64 * 1024)
# Threads (each with its own persistent database connection) per listener process.
TERMINAL_DB_THREADS = env.int("TERMINAL_DB_THREADS", default=8)
# Where tokens and payments meet the database (docs/listeners.md): "auto" is
# an asyncpg pool on the event loop with PostgreSQL, the threads otherwise;
# "threads" forces the threads (any database). Pool size per process, and the
# deadline of a statement (and of waiting for a pooled connection).
TERMINAL_DATABASE_PATH = env.str("TERMINAL_DATABASE_PATH", default="auto")
TERMINAL_DB_POOL_SIZE = env.int("TERMINAL_DB_POOL_SIZE", default=8)
TERMINAL_DB_TIMEOUT_SECONDS = env.float("TERMINAL_DB_TIMEOUT_SECONDS", default=5.0)
TERMINAL_DRAIN_SECONDS = env.float("TERMINAL_DRAIN_SECONDS", default=10.0)
# Against unidentified connections (docs/terminal.md): connections per source
# address per listener process (0: no cap), and seconds a connection has to
# identify its terminal (/auth, Basic, or its address) after connecting.
TERMINAL_MAX_CONNECTIONS_PER_ADDRESS = env.int("TERMINAL_MAX_CONNECTIONS_PER_ADDRESS", default=256)
TERMINAL_IDENTIFY_TIMEOUT_SECONDS = env.float("TERMINAL_IDENTIFY_TIMEOUT_SECONDS", default=10.0)
# Unread input and unflushed output kept per connection (each), in bytes.
TERMINAL_MAX_BUFFERED_BYTES = env.int("TERMINAL_MAX_BUFFERED_BYTES", default=256 * 1024)
# The listener logs its counters this often when they changed (0: only at shutdown).
TERMINAL_COUNTERS_LOG_SECONDS = env.float("TERMINAL_COUNTERS_LOG_SECONDS", default=60.0)

# --- Back office (backoffice/) ----------------------------------------------
# How long a new secret waits, sealed, for its one view after the redirect.
BACKOFFICE_SHOWN_ONCE_SECONDS = env.int("BACKOFFICE_SHOWN_ONCE_SECONDS", default=300)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "filters": {"redact_cards": {"()": "config.logging.RedactCardNumbers"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_cards"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # Django's own handlers for these print request paths (an esipay path
        # holds a card number) without our filter: route them through ours.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "celery": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # payments.outbound logs each merchant call (host, status, duration) itself.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

# --- PLTOKEN credentials (secure API, IOTP: docs/secure-api.md) ----
# A rotated key pair stays valid this long, so merchants roll over without a failed request.
API_KEY_GRACE_SECONDS = env.int("API_KEY_GRACE_SECONDS", default=24 * 3600)
# A signed request's timestamp may differ from the gateway's clock by at most this.
API_SIGNATURE_MAX_SKEW_SECONDS = env.int("API_SIGNATURE_MAX_SKEW_SECONDS", default=300)

# --- IOTP Payment API (POST /iotp: payments/doors/iotp, docs/iotp.md) ---------
# Requests served at once by one process; one more is answered SystemBusy
# (TransientError) with MinRetrySecs = IOTP_BUSY_RETRY_SECONDS.
IOTP_MAX_CONCURRENT_REQUESTS = env.int("IOTP_MAX_CONCURRENT_REQUESTS", default=64)
IOTP_BUSY_RETRY_SECONDS = env.int("IOTP_BUSY_RETRY_SECONDS", default=5)
# A challenge of InquireAuthChallenge is valid this long, for one check.
IOTP_AUTH_CHALLENGE_SECONDS = env.int("IOTP_AUTH_CHALLENGE_SECONDS", default=300)
# A repeated StartPaymentPaymentHandler waits this long for the first one's outcome.
IOTP_REPEAT_WAIT_SECONDS = env.float("IOTP_REPEAT_WAIT_SECONDS", default=10.0)

# --- Secure API (docs/secure-api.md): card-on-file REST, signed + encrypted ----
INSTALLED_APPS += ["drf_spectacular", "drf_spectacular_sidecar", "payments.doors.secure_api"]  # noqa: F405
REST_FRAMEWORK = {
    # The secure API's views set their own authentication (PLTOKEN) and answer
    # every error themselves (9xx, encrypted); nothing else uses DRF yet.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Secure payment API",
    "VERSION": "1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PUBLIC": True,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The schema covers the secure API only; its description (signing, the envelope,
    # the error table) is set by a hook from payments/doors/secure_api/schema.py.
    "PREPROCESSING_HOOKS": ["payments.doors.secure_api.schema.only_the_secure_api"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "payments.doors.secure_api.schema.describe",
    ],
}
# A held CVV (POST .../paymentinfo/{id}/cvv) can be used once, within this long.
SECURE_API_CVV_TTL_SECONDS = env.int("SECURE_API_CVV_TTL_SECONDS", default=15 * 60)
# An Idempotency-Key's first answer is kept (and replayed) this long; orderIDs are kept for good.
SECURE_API_IDEMPOTENCY_TTL_SECONDS = env.int("SECURE_API_IDEMPOTENCY_TTL_SECONDS", default=24 * 3600)
# A request still "running" this long after it claimed its key died: a repeat may take over.
SECURE_API_IDEMPOTENCY_LEASE_SECONDS = env.int("SECURE_API_IDEMPOTENCY_LEASE_SECONDS", default=120)
# API calls are listed in the back office this long.
SECURE_API_CALL_LOG_DAYS = env.int("SECURE_API_CALL_LOG_DAYS", default=90)
CELERY_BEAT_SCHEDULE["prune-secure-api"] = {"task": "secure_api.prune", "schedule": 300.0}

# --- SET gateway (docs/set-gateway.md) ----------------------------------------
# Timers of the spec: t30 for Greeting/Authenticating, t120 for our Closing.
SET_T30_SECONDS = env.float("SET_T30_SECONDS", default=30.0)
SET_T120_SECONDS = env.float("SET_T120_SECONDS", default=120.0)
SET_MAX_OUTSTANDING = env.int("SET_MAX_OUTSTANDING", default=16)
SET_MAX_MESSAGE_BYTES = env.int("SET_MAX_MESSAGE_BYTES", default=1024 * 1024)
# Greet addresses registered to no SET merchant with a challenge instead of -ERR.
SET_ACCEPT_UNKNOWN_ADDRESSES = env.bool("SET_ACCEPT_UNKNOWN_ADDRESSES", default=False)
# A request being worked on holds its ids this long; a repeat after that (its
# process died) takes it over. Longer than any request may take.
SET_REQUEST_LEASE_SECONDS = env.float("SET_REQUEST_LEASE_SECONDS", default=60.0)
# A repeat that finds its first request still being worked on waits this long.
SET_REPEAT_WAIT_SECONDS = env.float("SET_REPEAT_WAIT_SECONDS", default=10.0)
# Each gateway process publishes its live connections this often (back office).
SET_LIVE_PUBLISH_SECONDS = env.float("SET_LIVE_PUBLISH_SECONDS", default=5.0)
# An Open connection with nothing outstanding this long gets our close ("idle-connection").
SET_IDLE_TIMEOUT_SECONDS = env.float("SET_IDLE_TIMEOUT_SECONDS", default=600.0)
SET_MAX_CONNECTIONS = env.int("SET_MAX_CONNECTIONS", default=10000)
SET_MAX_CONNECTIONS_PER_ADDRESS = env.int("SET_MAX_CONNECTIONS_PER_ADDRESS", default=256)
# Threads (each with its own persistent database connection) per gateway process.
SET_DB_THREADS = env.int("SET_DB_THREADS", default=8)
