"""Settings shared by every environment, read from the environment.

One base module (cookiecutter-django's layout): ``dev`` adds generated
secrets and DEBUG, ``production`` refuses to start without its secrets.
The variables are those of ``shared/contracts/operations.md``.
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

# --- Terminal listener (shared/contracts/terminal.md) -----------------------
TERMINAL_TOKEN_TTL_SECONDS = env.int("TERMINAL_TOKEN_TTL_SECONDS", default=180)
TERMINAL_IDLE_TIMEOUT_SECONDS = env.float("TERMINAL_IDLE_TIMEOUT_SECONDS", default=300.0)
TERMINAL_REQUEST_TIMEOUT_SECONDS = env.float("TERMINAL_REQUEST_TIMEOUT_SECONDS", default=30.0)
TERMINAL_MAX_CONNECTIONS = env.int("TERMINAL_MAX_CONNECTIONS", default=10000)
TERMINAL_MAX_FRAME_BYTES = env.int("TERMINAL_MAX_FRAME_BYTES", default=64 * 1024)
# Threads (each with its own persistent database connection) per listener process.
TERMINAL_DB_THREADS = env.int("TERMINAL_DB_THREADS", default=8)
TERMINAL_DRAIN_SECONDS = env.float("TERMINAL_DRAIN_SECONDS", default=10.0)

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

# --- PLTOKEN credentials (secure API, IOTP: shared/contracts/secure-api.md) ----
# A rotated key pair stays valid this long, so merchants roll over without a failed request.
API_KEY_GRACE_SECONDS = env.int("API_KEY_GRACE_SECONDS", default=24 * 3600)
# A signed request's timestamp may differ from the gateway's clock by at most this.
API_SIGNATURE_MAX_SKEW_SECONDS = env.int("API_SIGNATURE_MAX_SKEW_SECONDS", default=300)

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
