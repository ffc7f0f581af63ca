"""The README and docs/ stand alone in a clone: every link points at a file (and heading)
that exists in the repository, and nothing points at ../shared, which a user does not have."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
_HTML = re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""", re.I)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_SHARED = re.compile(r"(?:\.\./)+shared\b|(?<![\w.-])shared/(?:contracts|specs)\b")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:


def tracked_files(root: Path) -> set[str]:
    """The repository's files (git's index), or every file under root when git is not there."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True, timeout=60)
        files = {name for name in listed.stdout.decode().split("\0") if name}
        if files:
            return files
    except (OSError, subprocess.SubprocessError):
        pass
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".venv" not in p.parts}


def documents(files: set[str]) -> list[str]:
    return sorted(f for f in files if f.endswith(".md") and (f == "README.md" or f.startswith("docs/")))


def strip_code(text: str) -> str:
    """The text without fenced blocks and code spans: an example is not a link."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for heading in _HEADING.findall(_FENCE.sub("", text)):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def link_problems(document: str, text: str, files: set[str], read) -> list[str]:  # type: ignore[no-untyped-def]
    """Every broken link of one document: (missing file, missing heading, outside the repository, ../shared)."""
    problems = [f"{document}: names {m.group(0)!r}, which a clone does not have" for m in _SHARED.finditer(text)]
    prose = strip_code(text)
    targets = [*_INLINE.findall(prose), *_REFERENCE.findall(prose), *_HTML.findall(prose)]
    directories = {str(PurePosixPath(f).parent) for f in files} | {
        str(parent) for f in files for parent in PurePosixPath(f).parents
    }
    base = PurePosixPath(document).parent
    for target in targets:
        if not target or _EXTERNAL.match(target):
            continue
        path_part, _, fragment = target.partition("#")
        path_part = path_part.split("?", 1)[0]
        if path_part:
            parts: list[str] = []
            for piece in (base / path_part).parts:
                if piece == "..":
                    if not parts:
                        parts = ["<outside>"]
                        break
                    parts.pop()
                elif piece != ".":
                    parts.append(piece)
            resolved = "/".join(parts)
            if parts[:1] == ["<outside>"]:
                problems.append(f"{document}: link {target!r} leaves the repository")
                continue
            if resolved.rstrip("/") not in files and resolved.rstrip("/") not in directories:
                problems.append(f"{document}: link {target!r} points at {resolved}, which is not in the repository")
                continue
        else:
            resolved = document
        if fragment and resolved.endswith(".md") and resolved in files:
            if fragment not in anchors(read(resolved)):
                problems.append(f"{document}: link {target!r}: {resolved} has no heading #{fragment}")
    return problems


def test_every_link_of_the_readme_and_docs_exists_in_the_repository() -> None:
    files = tracked_files(ROOT)
    docs = documents(files)
    assert "README.md" in docs and "docs/operations.md" in docs and "docs/esipay.md" in docs

    def read(name: str) -> str:
        return (ROOT / name).read_text(encoding="utf-8")

    problems = [problem for name in docs for problem in link_problems(name, read(name), files, read)]
    assert problems == []


def test_the_readme_indexes_every_document() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for document in documents(tracked_files(ROOT)):
        if document.startswith("docs/"):
            assert f"]({document})" in readme, f"the README's index does not link {document}"


# --- The checker itself can fail ---------------------------------------------------------------------

FILES = {"README.md", "docs/a.md", "docs/b.md", "payments/models.py"}
TEXTS = {"docs/b.md": "# B\n\n## The caller's address\n\n```\n# not a heading\n```\n"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("see [the contract](../shared/contracts/esipay.md)", "which a clone does not have"),
        ("see `shared/contracts/esipay.md`", "which a clone does not have"),
        ("see [gone](c.md)", "docs/c.md, which is not in the repository"),
        ("see [up](../../etc/passwd)", "leaves the repository"),
        ("see [b](b.md#nowhere)", "has no heading #nowhere"),
        ("see [b](b.md#not-a-heading)", "has no heading #not-a-heading"),
        ("[ref]: ./missing.md", "docs/missing.md, which is not in the repository"),
        ('<a href="missing.md">x</a>', "docs/missing.md, which is not in the repository"),
    ],
)
def test_the_checker_finds_a_broken_link(text, problem) -> None:  # type: ignore[no-untyped-def]
    problems = link_problems("docs/a.md", text, FILES, TEXTS.__getitem__)
    assert problems and problem in problems[0], problems


@pytest.mark.parametrize(
    "text",
    [
        "see [b](b.md), [its section](b.md#the-callers-address), [the code](../payments/models.py), "
        "[the package](../payments/) and [the site](https://example.com/x.md)",
        "```\n[not a link](missing.md)\n```\nand `[nor this](missing.md)`",
    ],
)
def test_the_checker_accepts_good_links(text) -> None:  # type: ignore[no-untyped-def]
    assert link_problems("docs/a.md", text, FILES, TEXTS.__getitem__) == []
