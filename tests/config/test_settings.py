"""Settings from the environment (operations.md): production refuses to start without
its secrets and a database; each secret may be given as NAME_FILE."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings.secrets import MissingSecret, dev_secret, read_secret, require_secret

ROOT = Path(__file__).resolve().parents[2]

PRINT_SETTINGS = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'secret': s.SECRET_KEY, 'master': s.PAYMENTS_MASTER_KEY, "
    "'engine': s.DATABASES['default']['ENGINE'], 'debug': s.DEBUG}))"
)

COMPLETE = {
    "DJANGO_SECRET_KEY": "prod-secret-key",
    "PAYMENTS_MASTER_KEY": "prod-master-key",
    "DATABASE_URL": "postgres://gateway@db.invalid:5432/gateway",
    "CELERY_BROKER_URL": "redis://broker.invalid:6379/0",
}


def start(env: dict[str, str], tmp_path: Path, settings: str = "config.settings.production"):  # type: ignore[no-untyped-def]
    """Load the settings in a fresh interpreter with only ``env`` (a clean environment)."""
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": settings,
        "GATEWAY_VAR_DIR": str(tmp_path / "var"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("DJANGO_SECRET_KEY", "DJANGO_SECRET_KEY is not set. Production refuses to start without it"),
        ("PAYMENTS_MASTER_KEY", "PAYMENTS_MASTER_KEY is not set. Production refuses to start without it"),
        ("DATABASE_URL", "DATABASE_URL is not set. Production refuses to fall back to SQLite."),
        ("CELERY_BROKER_URL", "CELERY_BROKER_URL is not set. Production refuses the embedded broker"),
    ],
)
def test_production_refuses_to_start_without(missing, message, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in COMPLETE.items() if k != missing}
    result = start(env, tmp_path)
    assert result.returncode != 0
    assert "MissingSecret" in result.stderr and message in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "var").exists() or not any((tmp_path / "var").iterdir())  # nothing generated


def test_production_with_nothing_configured(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = start({}, tmp_path)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr and "DJANGO_SECRET_KEY_FILE" in result.stderr


def test_production_empty_value_is_missing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = start({**COMPLETE, "PAYMENTS_MASTER_KEY": ""}, tmp_path)
    assert result.returncode != 0 and "PAYMENTS_MASTER_KEY is not set" in result.stderr


def test_production_starts_with_its_secrets(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = start(COMPLETE, tmp_path)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded == {
        "secret": "prod-secret-key", "master": "prod-master-key",
        "engine": "django.db.backends.postgresql", "debug": False,
    }


def test_production_reads_secrets_from_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "secret").write_text("secret-from-file\n")
    (tmp_path / "master").write_text("  master-from-file  \n")
    env = {
        "DJANGO_SECRET_KEY_FILE": str(tmp_path / "secret"),
        "PAYMENTS_MASTER_KEY_FILE": str(tmp_path / "master"),
        "DATABASE_URL": COMPLETE["DATABASE_URL"],
        "CELERY_BROKER_URL": COMPLETE["CELERY_BROKER_URL"],
    }
    result = start(env, tmp_path)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["secret"] == "secret-from-file" and loaded["master"] == "master-from-file"


def test_production_unreadable_secret_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {**COMPLETE, "PAYMENTS_MASTER_KEY": "", "PAYMENTS_MASTER_KEY_FILE": str(tmp_path / "nope")}
    result = start(env, tmp_path)
    assert result.returncode != 0
    assert f"PAYMENTS_MASTER_KEY_FILE={tmp_path / 'nope'} cannot be read" in result.stderr


def test_dev_settings_start_with_nothing_configured(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = start({}, tmp_path, settings="config.settings.dev")
    assert first.returncode == 0, first.stderr
    loaded = json.loads(first.stdout)
    assert loaded["engine"] == "django.db.backends.sqlite3" and loaded["debug"] is True
    assert len(loaded["secret"]) >= 40 and loaded["secret"] != loaded["master"]
    key_file = tmp_path / "var" / "payments_master_key.secret"
    assert key_file.read_text().strip() == loaded["master"]
    assert key_file.stat().st_mode & 0o077 == 0  # not readable by others
    second = json.loads(start({}, tmp_path, settings="config.settings.dev").stdout)
    assert second == loaded  # generated once, then kept


# --- The helpers, in process -------------------------------------------------------------


def test_read_secret(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("GW_TEST_SECRET", raising=False)
    monkeypatch.delenv("GW_TEST_SECRET_FILE", raising=False)
    assert read_secret("GW_TEST_SECRET") is None
    with pytest.raises(MissingSecret, match="GW_TEST_SECRET is not set"):
        require_secret("GW_TEST_SECRET")
    path = tmp_path / "s"
    path.write_text("from-file\n")
    monkeypatch.setenv("GW_TEST_SECRET_FILE", str(path))
    assert require_secret("GW_TEST_SECRET") == "from-file"
    monkeypatch.setenv("GW_TEST_SECRET", "direct")  # the variable wins over the file
    assert require_secret("GW_TEST_SECRET") == "direct"
    monkeypatch.delenv("GW_TEST_SECRET")
    path.write_text("\n")
    assert read_secret("GW_TEST_SECRET") is None


def test_dev_secret_prefers_the_environment(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GW_TEST_DEV", "given")
    assert dev_secret("GW_TEST_DEV", tmp_path) == "given"
    assert not (tmp_path / "gw_test_dev.secret").exists()
    monkeypatch.delenv("GW_TEST_DEV")
    generated = dev_secret("GW_TEST_DEV", tmp_path)
    assert generated == dev_secret("GW_TEST_DEV", tmp_path) == (tmp_path / "gw_test_dev.secret").read_text()
