"""Every Python snippet in the README and docs runs, so the documentation cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def snippets(path: Path) -> list[str]:
    return FENCE.findall(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_snippets_run_in_order(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A document's snippets run top to bottom in one namespace without error."""
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
    for index, code in enumerate(snippets(path)):
        exec(compile(code, f"{path.name}[snippet {index}]", "exec"), namespace)


def test_the_readme_has_snippets() -> None:
    """The README's first graph is checked by the test above."""
    assert len(snippets(ROOT / "README.md")) >= 2


def test_relative_links_in_docs_point_to_files() -> None:
    """Every relative Markdown link in the README and docs names an existing file."""
    link = re.compile(r"\]\(([^)#:]+)(#[^)]*)?\)")
    for path in DOCUMENTS:
        for target, _ in link.findall(path.read_text(encoding="utf-8")):
            assert (path.parent / target).exists(), f"{path.name} links to missing {target}"
