"""The core's layers import downwards only: doors → services → outbox → models.

The outbox queues Celery tasks by name and never imports ``payments.tasks``
(which imports the services, which import the outbox); no service imports
the tasks either. A cycle there would make the import order decide whether
the gateway starts.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PAYMENTS = Path(__file__).resolve().parents[2] / "payments"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, as absolute names, lazy imports included."""
    # The package a relative import starts from: the folder holding the module.
    package = ["payments", *path.parent.relative_to(PAYMENTS).parts]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join([*parts, *([node.module] if node.module else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", ["outbox.py", *[str(p.relative_to(PAYMENTS)) for p in (PAYMENTS / "services").glob("*.py")]])
def test_no_import_of_the_tasks_module(module: str) -> None:
    assert "payments.tasks" not in _imports(PAYMENTS / module)


def test_the_outbox_does_not_import_the_services() -> None:
    imported = _imports(PAYMENTS / "outbox.py")
    assert not {name for name in imported if name.startswith("payments.services")}


def test_the_check_sees_relative_imports() -> None:
    assert "payments.outbox" in _imports(PAYMENTS / "services" / "payments.py")
    assert "payments.services.sql" in _imports(PAYMENTS / "services" / "tokens.py")
