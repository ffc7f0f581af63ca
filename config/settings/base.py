"""Settings shared by every environment, read from the environment.

One base module (cookiecutter-django's layout): ``dev`` adds generated
secrets and DEBUG, ``production`` refuses to start without its secrets.
The variables are those of ``shared/contracts/operations.md``.
"""
from __future__ import annotations

from pathlib import Path

import environ

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
    },
}
