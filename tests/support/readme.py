"""Code blocks of the README that tests run, so the documented examples stay true."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def python_block(marker: str) -> str:
    """The ```python block that follows ``<!-- marker -->`` in the README."""
    text = README.read_text()
    match = re.search(rf"<!-- {re.escape(marker)} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"README has no python block after <!-- {marker} -->"
    return match.group(1)


def verify_webhook_function():  # type: ignore[no-untyped-def]
    namespace: dict[str, object] = {}
    exec(python_block("webhook-verification"), namespace)  # noqa: S102 - our own README
    return namespace["verify_webhook"]
