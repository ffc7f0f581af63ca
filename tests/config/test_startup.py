"""Which settings each entry point runs (docs/operations.md, "Settings modules").

A production command started without DJANGO_SETTINGS_MODULE must refuse to
start, never generate a new master key (a new key silently breaks every ban
fingerprint and every sealed secret); a fresh clone with nothing set must
still run. Every test starts the real entry point in a subprocess with a
clean environment: manage.py commands, ``celery -A config``, config.wsgi and
config.asgi.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_DB = "postgres://gateway:not-this-password@db.invalid:5432/gateway"
SECRETS = {"DJANGO_SECRET_KEY": "prod-secret-key", "PAYMENTS_MASTER_KEY": "prod-master-key"}
PRODUCTION = {**SECRETS, "DATABASE_URL": SERVER_DB, "CELERY_BROKER_URL": "redis://broker.invalid:6379/0"}
PRINT_SETTINGS = (
    "from django.conf import settings as s; import json; "
    "print(json.dumps({'module': s.SETTINGS_MODULE, 'engine': s.DATABASES['default']['ENGINE'], "
    "'master': s.PAYMENTS_MASTER_KEY, 'debug': s.DEBUG}))"
)


def run(command: list[str], env: dict[str, str], tmp_path: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """``command`` in a fresh process whose environment holds only ``env`` (and PATH, HOME, var/)."""
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
             "GATEWAY_VAR_DIR": str(tmp_path / "var"), **env}
    try:
        return subprocess.run(command, cwd=ROOT, env=clean, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:  # it started instead of refusing
        raise AssertionError(f"{command} did not refuse to start: {exc.stdout!r} {exc.stderr!r}") from None


def manage(*args: str) -> list[str]:
    return [sys.executable, "manage.py", *args]


def celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "config", *args]


def generated_files(tmp_path: Path) -> list[str]:
    var = tmp_path / "var"
    return sorted(p.name for p in var.rglob("*.secret")) if var.exists() else []


def assert_refused(result: subprocess.CompletedProcess[str], *messages: str) -> None:
    assert result.returncode != 0, result.stdout + result.stderr
    for message in messages:
        assert message in result.stderr, result.stderr
    assert "listening on" not in result.stdout + result.stderr
    assert "not-this-password" not in result.stderr  # the database is described, its password never shown


# --- manage.py ---------------------------------------------------------------------------


def test_manage_py_with_nothing_set_runs_dev_on_sqlite_and_keeps_its_generated_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = run(manage("shell", "-c", PRINT_SETTINGS), {}, tmp_path)
    assert first.returncode == 0, first.stderr
    loaded = json.loads(first.stdout.strip().splitlines()[-1])
    assert loaded["module"] == "config.settings.dev" and loaded["engine"] == "django.db.backends.sqlite3"
    assert generated_files(tmp_path) == ["django_secret_key.secret", "payments_master_key.secret"]
    again = json.loads(run(manage("shell", "-c", PRINT_SETTINGS), {}, tmp_path).stdout.strip().splitlines()[-1])
    assert again["master"] == loaded["master"]  # generated once, then kept


def test_manage_py_with_a_sqlite_url_is_still_the_embedded_development_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'other.sqlite3'}"}
    result = run(manage("shell", "-c", PRINT_SETTINGS), env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["module"] == "config.settings.dev"


@pytest.mark.parametrize(
    "command",
    [
        ["runterminalserver", "--host", "127.0.0.1", "--port", "0"],
        ["runsetgateway", "--host", "127.0.0.1", "--port", "0", "--diag-port", "0"],
        ["runserver", "--noreload", "127.0.0.1:0"],
        ["migrate", "--noinput"],
        ["create_merchant", "--name", "Prod Shop"],
        ["import_bans", "bans.csv"],
        ["runall"],
    ],
    ids=lambda c: c[0],
)
@pytest.mark.parametrize("secrets", ["no secrets", "secrets set"])
def test_manage_py_without_settings_module_refuses_a_server_database(command, secrets, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A production environment (its database is a server) with DJANGO_SETTINGS_MODULE
    forgotten: every command stops before any settings are loaded, whether the
    keys are there or not (the dev settings would also run DEBUG in production)."""
    env = {**(PRODUCTION if secrets == "secrets set" else {"DATABASE_URL": SERVER_DB})}
    result = run(manage(*command), env, tmp_path)
    assert_refused(
        result,
        "refusing to start: RefusedToStart: DJANGO_SETTINGS_MODULE is not set and DATABASE_URL names a server "
        "database (postgresql database gateway on db.invalid)",
        "DJANGO_SETTINGS_MODULE=config.settings.production",
    )
    assert result.stderr.count("\n") == 1  # one clear line, no traceback
    assert generated_files(tmp_path) == [] and not (tmp_path / "var").exists()


@pytest.mark.parametrize("command", [["runterminalserver", "--port", "0"], ["runsetgateway", "--port", "0", "--diag-port", "0"],
                                     ["migrate", "--noinput"]], ids=lambda c: c[0])
def test_dev_settings_named_for_a_server_database_generate_no_master_key(command, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"DJANGO_SETTINGS_MODULE": "config.settings.dev", "DATABASE_URL": SERVER_DB}
    result = run(manage(*command), env, tmp_path)
    assert_refused(
        result,
        "refusing to start: MissingSecret: PAYMENTS_MASTER_KEY is not set, and the database is a server "
        "(postgresql database gateway on db.invalid), not the embedded SQLite",
        "silently break every ban fingerprint",
    )
    assert generated_files(tmp_path) == []


def test_dev_settings_named_for_a_server_database_ignore_a_key_left_in_var(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A key generated earlier for a laptop's SQLite is not the server database's key either."""
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "payments_master_key.secret").write_text("a-laptop-key")
    env = {"DJANGO_SETTINGS_MODULE": "config.settings.dev", "DATABASE_URL": SERVER_DB}
    assert_refused(run(manage("shell", "-c", PRINT_SETTINGS), env, tmp_path), "PAYMENTS_MASTER_KEY is not set")


def test_dev_settings_for_a_server_database_run_with_the_key_given(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "key").write_text("the-database-key\n")
    env = {"DJANGO_SETTINGS_MODULE": "config.settings.dev", "DATABASE_URL": SERVER_DB,
           "PAYMENTS_MASTER_KEY_FILE": str(tmp_path / "key")}
    result = run(manage("shell", "-c", PRINT_SETTINGS), env, tmp_path)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["engine"] == "django.db.backends.postgresql" and loaded["master"] == "the-database-key"
    assert "payments_master_key.secret" not in generated_files(tmp_path)


def test_production_settings_named_run_manage_py(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {**PRODUCTION, "DJANGO_SETTINGS_MODULE": "config.settings.production"}
    result = run(manage("shell", "-c", PRINT_SETTINGS), env, tmp_path)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {"module": "config.settings.production", "engine": "django.db.backends.postgresql",
                      "master": "prod-master-key", "debug": False}
    assert generated_files(tmp_path) == []


def test_production_settings_named_without_the_master_key_refuse(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {**PRODUCTION, "DJANGO_SETTINGS_MODULE": "config.settings.production", "PAYMENTS_MASTER_KEY": ""}
    result = run(manage("runterminalserver", "--port", "0"), env, tmp_path)
    assert_refused(result, "MissingSecret: PAYMENTS_MASTER_KEY is not set. Production refuses to start without it")
    assert generated_files(tmp_path) == []


def test_the_test_settings_run_on_a_server_database_with_nothing_else_set(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """CI: `make test` with DATABASE_URL=postgres://… and no key (the tests' keys are fixed)."""
    env = {"DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": SERVER_DB}
    result = run(manage("shell", "-c", PRINT_SETTINGS), env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["engine"] == "django.db.backends.postgresql"
    assert generated_files(tmp_path) == []


# --- celery -A config, config.wsgi, config.asgi --------------------------------------------------


@pytest.mark.parametrize("program", [["worker", "--pool", "solo"], ["beat"]], ids=lambda c: c[0])
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "MissingSecret: DJANGO_SECRET_KEY is not set. Production refuses to start without it"),
        ({"DATABASE_URL": SERVER_DB}, "MissingSecret: DJANGO_SECRET_KEY is not set. Production refuses"),
        ({**PRODUCTION, "PAYMENTS_MASTER_KEY": ""}, "MissingSecret: PAYMENTS_MASTER_KEY is not set. Production"),
        ({"DJANGO_SETTINGS_MODULE": "config.settings.dev", "DATABASE_URL": SERVER_DB},
         "MissingSecret: PAYMENTS_MASTER_KEY is not set, and the database is a server"),
    ],
    ids=["nothing set", "server database", "no master key", "dev settings named, server database"],
)
def test_celery_refuses_to_start_without_its_keys(program, env, message, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = run(celery(*program, "-l", "INFO"), env, tmp_path)
    assert_refused(result, message)
    assert "ready" not in result.stdout + result.stderr.split(message)[0]
    assert generated_files(tmp_path) == []


@pytest.mark.parametrize("module", ["config.wsgi", "config.asgi"])
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "MissingSecret: DJANGO_SECRET_KEY is not set. Production refuses to start without it"),
        ({**PRODUCTION, "PAYMENTS_MASTER_KEY": ""}, "MissingSecret: PAYMENTS_MASTER_KEY is not set. Production"),
        ({"DJANGO_SETTINGS_MODULE": "config.settings.dev", "DATABASE_URL": SERVER_DB},
         "MissingSecret: PAYMENTS_MASTER_KEY is not set, and the database is a server"),
    ],
    ids=["nothing set", "no master key", "dev settings named, server database"],
)
def test_wsgi_and_asgi_refuse_to_start_without_their_keys(module, env, message, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = run([sys.executable, "-c", f"import {module}"], env, tmp_path)
    assert_refused(result, message)
    assert generated_files(tmp_path) == []


@pytest.mark.parametrize("module", ["config.wsgi", "config.asgi"])
def test_wsgi_and_asgi_default_to_production(module, tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = f"import {module}; from django.conf import settings as s; print(s.SETTINGS_MODULE, s.DEBUG)"
    result = run([sys.executable, "-c", code], PRODUCTION, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["config.settings.production", "False"]


# --- TRUSTED_PROXIES is checked at start-up -----------------------------------------------------------


@pytest.mark.parametrize("value", ["10.0.0.5/8", "proxy.internal", "10.0.0.5, 10.0.0.300"])
def test_a_bad_trusted_proxies_entry_refuses_to_start(value, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = run(manage("runterminalserver", "--port", "0"), {"TRUSTED_PROXIES": value}, tmp_path)
    assert_refused(result, "ImproperlyConfigured: TRUSTED_PROXIES:")


def test_trusted_proxies_are_read_from_the_environment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = "from django.conf import settings as s; print(','.join(s.TRUSTED_PROXIES))"
    result = run(manage("shell", "-c", code), {"TRUSTED_PROXIES": "10.0.0.5, 10.1.0.0/16,unix"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "10.0.0.5,10.1.0.0/16,unix"


@pytest.mark.parametrize("option", [["--settings", "config.settings.production"], ["--settings=config.settings.production"]])
def test_the_settings_option_names_the_settings_too(option, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = run(manage("shell", *option, "-c", PRINT_SETTINGS), PRODUCTION, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["module"] == "config.settings.production"


@pytest.mark.parametrize(("proxies", "header"), [("", None), ("10.0.0.5", ["HTTP_X_FORWARDED_PROTO", "https"])])
def test_production_reads_x_forwarded_proto_only_behind_trusted_proxies(proxies, header, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Without a proxy any client could send X-Forwarded-Proto: https and be taken for HTTPS."""
    code = "from django.conf import settings as s; import json; print(json.dumps(s.SECURE_PROXY_SSL_HEADER))"
    env = {**PRODUCTION, "DJANGO_SETTINGS_MODULE": "config.settings.production", "TRUSTED_PROXIES": proxies}
    result = run(manage("shell", "-c", code), env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == header
