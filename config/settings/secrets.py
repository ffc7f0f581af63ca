"""Reading secrets from the environment, as the operations contract says.

Every secret ``NAME`` may be given directly or as ``NAME_FILE`` (a path to a
file holding it, the Docker/Kubernetes convention). Development settings may
fall back to a value generated once into ``var/``; production never does.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from .environment import generated_key_refusal, is_embedded_engine


class MissingSecret(RuntimeError):
    """A secret production cannot run without is not configured."""


def read_secret(name: str) -> str | None:
    """The secret ``name`` from the environment or ``NAME_FILE``, else None."""
    value = os.environ.get(name)
    if value:
        return value.strip()
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError as exc:
            raise MissingSecret(f"{name}_FILE={path} cannot be read: {exc.strerror}") from exc
    return None


def require_secret(name: str) -> str:
    value = read_secret(name)
    if not value:
        raise MissingSecret(
            f"{name} is not set. Production refuses to start without it: "
            f"set {name} or {name}_FILE (see docs/settings.md). "
            "For development run the dev settings instead: DJANGO_SETTINGS_MODULE=config.settings.dev."
        )
    return value


def dev_secret(name: str, var_dir: Path, nbytes: int = 32, *, database: Mapping[str, object] | None = None) -> str:
    """The secret from the environment, or one generated once into var/.

    Only for development: the file keeps dev data (fingerprints, sessions)
    valid across restarts without anyone having to configure anything. Given
    ``database``, a server database (not the embedded SQLite) gets no
    generated key and no key from var/: MissingSecret instead (see
    config/settings/environment.py for why).
    """
    value = read_secret(name)
    if value:
        return value
    if database is not None and not is_embedded_engine(str(database.get("ENGINE", ""))):
        raise MissingSecret(generated_key_refusal(name, database))
    var_dir.mkdir(parents=True, exist_ok=True)
    path = var_dir / f"{name.lower()}.secret"
    if not path.exists():
        # O_EXCL: two processes starting at once must not write two keys.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(nbytes))
    return path.read_text().strip()
