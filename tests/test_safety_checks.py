"""Safety checks are real exceptions: ``python -O`` strips every ``assert``, so the
product code has none (an AST scan), and the checks that matter still refuse
under ``-O`` (a subprocess run with it)."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Every top-level package of the product (apps added later included), and manage.py.
PRODUCT = sorted(
    path.name for path in ROOT.iterdir()
    if (path / "__init__.py").is_file() and path.name not in {"tests", "bench"}
) + ["manage.py"]


def product_files() -> list[Path]:
    files: list[Path] = []
    for name in PRODUCT:
        path = ROOT / name
        files.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return files


def test_the_scan_covers_every_package() -> None:
    assert {"config", "merchants", "payments", "terminals", "listeners", "backoffice"} <= set(PRODUCT)


def asserts_in(source: str) -> list[int]:
    return [node.lineno for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Assert)]


def test_no_assert_statement_in_the_product_code() -> None:
    found = {
        str(path.relative_to(ROOT)): lines
        for path in product_files()
        if (lines := asserts_in(path.read_text()))
    }
    assert found == {}, f"assert vanishes under python -O; raise a real exception instead: {found}"


def test_the_scan_sees_asserts_and_covers_the_product() -> None:
    assert asserts_in("def f(x):\n    if x:\n        assert x, 'no'\n") == [3]
    names = {str(p.relative_to(ROOT)) for p in product_files()}
    assert {"payments/outbox.py", "payments/services/acquiring.py", "payments/doors/esipay/views.py",
            "terminals/server.py", "terminals/handlers.py"} <= names


CHECKS_UNDER_O = """
import sys
assert False, "not reached under -O"  # proves the interpreter strips asserts
import django
django.setup()
from django.db import transaction
from merchants.models import Merchant
from payments import outbox
from payments.db import TransactionRuleViolation
from payments.doors.esipay.views import _return_url_confirms
from payments.services import acquiring
from payments.states import EventType

refused = []
def expect(what, call):
    try:
        call()
    except TransactionRuleViolation as exc:
        refused.append(f"{what}: {exc}")

expect("event outside its change", lambda: outbox.event_emit(type=EventType.PAYMENT_SUCCEEDED, transaction=None))
with transaction.atomic():
    expect("acquirer call in a transaction", lambda: acquiring.acquirer_run(print))
    expect("payment call in a transaction", lambda: acquiring.acquirer_answer(print))
    expect("return URL in a transaction", lambda: _return_url_confirms(Merchant(callback_url="http://x/"), "c")(None))
print(sys.flags.optimize, len(refused))
print("\\n".join(refused))
"""


def test_the_checks_that_matter_still_refuse_under_python_dash_o() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": "sqlite://:memory:"}
    done = subprocess.run(
        [sys.executable, "-O", "-c", CHECKS_UNDER_O], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    first, *refused = done.stdout.strip().splitlines()
    assert first == "1 4", done.stdout
    assert any("inside a transaction" in line for line in refused)
    assert any("must run inside the change's transaction" in line for line in refused)
