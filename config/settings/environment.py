"""Which settings a process runs, and where keys may be generated.

The development settings (``config.settings.dev``, manage.py's default)
generate ``DJANGO_SECRET_KEY`` and ``PAYMENTS_MASTER_KEY`` once into ``var/``
so that a fresh clone runs with nothing configured. That is safe only for the
embedded SQLite database: its key file sits beside the data it protects. A
server database (PostgreSQL) outlives any one machine's ``var/``: a process
that generated a new master key for it would compute new card and PIN
fingerprints (every ban silently stops matching) and could no longer open
the secrets sealed in it. So an environment whose database is a server is
treated as production: nothing there is guessed.

- ``manage.py`` without ``DJANGO_SETTINGS_MODULE`` defaults to the dev
  settings only when the database is embedded; otherwise it refuses to start
  and says which settings to name.
- The dev settings, even when named, never generate a key for a server
  database: the key must be given (``NAME`` or ``NAME_FILE``).
- ``config.wsgi``, ``config.asgi`` and ``celery -A config`` default to the
  production settings, which refuse to start without their secrets.

This module is imported by manage.py before Django is set up: standard
library and django-environ only.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import environ

DEV_SETTINGS = "config.settings.dev"
PRODUCTION_SETTINGS = "config.settings.production"
SQLITE_ENGINE = "django.db.backends.sqlite3"


class RefusedToStart(RuntimeError):
    """The environment looks like production but does not say which settings to run."""


def database_url(env: Mapping[str, str]) -> str:
    return (env.get("DATABASE_URL") or "").strip()


def is_embedded_engine(engine: str) -> bool:
    """SQLite: a database file on this machine, whose generated keys in var/ live beside it."""
    return engine == SQLITE_ENGINE


def is_embedded_url(url: str) -> bool:
    """True when ``DATABASE_URL`` is unset (the SQLite file under var/) or names SQLite."""
    if not url:
        return True
    try:
        return is_embedded_engine(environ.Env.db_url_config(url)["ENGINE"])
    except Exception:  # an unparseable URL is not the embedded database; settings will say what is wrong
        return False


def describe_database(database: Mapping[str, object]) -> str:
    """Engine, host and name of a database, never its password (this goes into error messages)."""
    engine = str(database.get("ENGINE", "?")).rsplit(".", 1)[-1]
    host = database.get("HOST") or "localhost"
    return f"{engine} database {database.get('NAME') or '?'!s} on {host}"


def settings_option(argv: Sequence[str]) -> str:
    """The value of Django's ``--settings`` option in a command line, or ""."""
    for index, arg in enumerate(argv):
        if arg == "--settings" and index + 1 < len(argv):
            return argv[index + 1].strip()
        if arg.startswith("--settings="):
            return arg.split("=", 1)[1].strip()
    return ""


def manage_settings_module(env: Mapping[str, str] | None = None, argv: Sequence[str] = ()) -> str:
    """The settings module manage.py runs: the one named, else dev where dev is safe.

    Named means ``--settings`` on the command line (Django applies it) or
    ``DJANGO_SETTINGS_MODULE``. Raises RefusedToStart when nothing is named
    and the database is a server: a production command (a listener, a
    migration, an import) run without its settings must stop here, before
    the dev settings could generate keys.
    """
    env = os.environ if env is None else env
    named = settings_option(argv) or (env.get("DJANGO_SETTINGS_MODULE") or "").strip()
    if named:
        return named
    url = database_url(env)
    if is_embedded_url(url):
        return DEV_SETTINGS
    try:
        where = describe_database(environ.Env.db_url_config(url))
    except Exception:
        where = "a database that is not the embedded SQLite"
    raise RefusedToStart(
        f"DJANGO_SETTINGS_MODULE is not set and DATABASE_URL names a server database ({where}): "
        "this looks like production, so manage.py will not guess. "
        f"In production set DJANGO_SETTINGS_MODULE={PRODUCTION_SETTINGS} (with DJANGO_SECRET_KEY, "
        "PAYMENTS_MASTER_KEY and CELERY_BROKER_URL); to develop against this database set "
        f"DJANGO_SETTINGS_MODULE={DEV_SETTINGS} and PAYMENTS_MASTER_KEY to the key its data was made with. "
        "See docs/operations.md."
    )


def generated_key_refusal(name: str, database: Mapping[str, object]) -> str:
    """Why the dev settings will not generate ``name`` for this database."""
    return (
        f"{name} is not set, and the database is a server ({describe_database(database)}), not the embedded "
        "SQLite: the development settings generate keys only for the embedded database, because a new "
        "PAYMENTS_MASTER_KEY would silently break every ban fingerprint and every secret already sealed in "
        f"this one. In production set DJANGO_SETTINGS_MODULE={PRODUCTION_SETTINGS}; to develop against this "
        f"database set {name} (or {name}_FILE) to its key. See docs/operations.md."
    )
