"""docs/iotp.md shows one complete exchange per call, the very documents the
exchange test sends and expects; the README links it."""
from __future__ import annotations

from pathlib import Path

from . import docs


def test_the_documented_exchanges_are_the_tested_fixtures() -> None:
    assert docs.current() == docs.section(), "docs/iotp.md is out of date: run python -m tests.iotp.docs"


def test_every_implemented_call_has_an_exchange() -> None:
    from payments.doors.iotp.views import CALLS

    documented = docs.current()
    for call in CALLS:
        assert f"<{call} " in documented or f"<{call}/>" in documented, call
        assert f"<{call}Response" in documented, call


def test_the_readme_links_the_door() -> None:
    readme = (Path(docs.DOC).parents[1] / "README.md").read_text()
    assert "(docs/iotp.md)" in readme
