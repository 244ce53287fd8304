"""The documentation: docs/parameters.md is what the pipelines' docstrings generate (so the docs and the KFP UI
never disagree), every page is linked from the README, and no link between pages is broken."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from safetax import docs

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("quickstart.md", "deploy.md", "parameters.md", "methods-and-metrics.md", "audits.md", "security.md",
         "reproducing.md", "troubleshooting.md", "benchmarks.md", "training.md")


def test_parameter_reference_is_fresh() -> None:
    generated, committed = docs.render(), (ROOT / "docs" / "parameters.md").read_text(encoding="utf-8")
    assert committed == generated, f"docs/parameters.md is stale: regenerate it with `{docs.REGENERATE}` (from the repository root)"


@pytest.mark.parametrize("name", docs.PIPELINES)
def test_every_parameter_is_documented(name: str) -> None:
    from safetax.platform import PlatformConfig
    from safetax.runner import pipeline

    rows = docs.parameters(name)
    assert [r[0] for r in rows] == list(pipeline(name, PlatformConfig()).component_spec.inputs)
    undocumented = [r[0] for r in rows if r[3] == docs.UNDOCUMENTED]
    assert undocumented == [], f"{name}: parameters without an Args: entry in the pipeline's docstring: {undocumented}"


def test_check_mode_names_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "parameters.md"
    stale.write_text("old\n")
    assert docs.main(["--check", "--out", str(stale)]) == 1
    assert "regenerate it with `python -m safetax.docs`" in capsys.readouterr().err
    assert docs.main(["--out", str(stale)]) == 0 and docs.main(["--check", "--out", str(stale)]) == 0


def _links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    heads = re.findall(r"^#{1,6}\s+(.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_readme_links_every_page_and_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_screen = "\n".join(readme.splitlines()[:40])
    assert "make demo" in first_screen and "make test" in first_screen
    assert "docs/img/tradeoff.png" in first_screen and (ROOT / "docs" / "img" / "tradeoff.png").is_file()
    linked = {link.split("#")[0] for link in _links(ROOT / "README.md")}
    assert [p for p in PAGES if f"docs/{p}" not in linked] == []


def test_links_between_pages_resolve() -> None:
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for link in _links(page):
            if re.match(r"[a-z]+:", link):  # http(s):, mailto:
                continue
            target, _, anchor = link.partition("#")
            path = (page.parent / target).resolve() if target else page
            if not path.exists() or (anchor and path.suffix == ".md" and anchor not in _anchors(path)):
                broken.append(f"{page.relative_to(ROOT)}: {link}")
    assert broken == []
