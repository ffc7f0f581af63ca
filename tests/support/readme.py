"""Code blocks of the README and docs/ that tests run, so the documented examples stay true."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_block(marker: str) -> str:
    """The ```python block that follows ``<!-- marker -->`` in the README or a file of docs/."""
    for document in DOCUMENTS:
        match = re.search(rf"<!-- {re.escape(marker)} -->\s*```python\n(.*?)```", document.read_text(), re.S)
        if match:
            return match.group(1)
    raise AssertionError(f"no python block after <!-- {marker} --> in the README or docs/")


def verify_webhook_function():  # type: ignore[no-untyped-def]
    namespace: dict[str, object] = {}
    exec(python_block("webhook-verification"), namespace)  # noqa: S102 - our own documentation
    return namespace["verify_webhook"]
