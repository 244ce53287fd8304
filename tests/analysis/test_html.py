"""The HTML report: one self-contained page, checked in a real browser (headless Chromium), and the Markdown
report rendered from the same blocks."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from safetax.analysis.document import Heading, Image, Table, from_markdown, to_markdown
from safetax.analysis.html import to_html
from safetax.analysis.report import markdown_table
from safetax.analysis.summary import summarize
from safetax.records import CheckpointScores
from safetax.stages.analytics import render
from safetax.testing.browser import chromium_path, open_page


def _scores() -> list[CheckpointScores]:
    """Records with counts, so the table carries standard errors and bootstrap intervals."""
    def cs(name: str, method: str, epoch: int, correct: list[int], safe: int, unsafe: int) -> CheckpointScores:
        questions = {"arith": {f"q{i}": [c, 1, 0] for i, c in enumerate(correct)}}
        return CheckpointScores.from_dict({
            "checkpoint": name, "method": method, "epoch": epoch, "reasoning": {"arith": sum(correct) / len(correct)},
            "safety": {"harm": safe / 20}, "counts": {"harm": {"safe": safe, "unsafe": unsafe, "unscored": 20 - safe - unsafe}},
            "questions": questions})

    return [cs("base", "base", 0, [1] * 8 + [0] * 2, 2, 18), cs("lora/epoch-1", "lora", 1, [1] * 7 + [0] * 3, 15, 5),
            cs("lora/epoch-2", "lora", 2, [1] * 7 + [0] * 3, 19, 1), cs("full/epoch-1", "full", 1, [1] * 4 + [0] * 6, 20, 0)]


WEIGHTS = pd.DataFrame([{"method": m, "module": mod, "layer": layer, "stable_rank": 1.0 + layer + (m == "full"),
                         "col_overlap": 0.1, "col_subspace": 0.4, "row_overlap": 0.2, "row_subspace": 0.5}
                        for m in ("lora", "full") for mod in ("up_proj", "down_proj") for layer in (0, 1)])
RPSA = {"rpsa": {"history": [{"step": s, "conflict": 0.5 - s / 100, "k": 0.5, "frozen_share": 0.5} for s in range(0, 40, 10)],
                 "final_k": 0.5, "frozen_share": 0.5}}
VERDICTS = {"lora/epoch-2": {"verdict": "pass", "failed": [], "decided_on": "point estimates", "safety_tax_rate": 0.02},
            "full/epoch-1": {"verdict": "fail", "decided_on": "point estimates", "safety_tax_rate": 0.4,
                             "failed": [{"criterion": "max_reasoning_drop", "message": "reasoning drop 0.4 > 0.05"}]}}


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    scores = _scores()
    render(summarize(scores), scores, out, notes=["seed 0"], weights=WEIGHTS, rpsa=RPSA, verdicts=VERDICTS,
           gate={"gate": "promoted", "checkpoint": "lora/epoch-2", "uri": "s3://b/promoted/r1",
                 "ranked_on": "one-sided 90% lower bounds"})
    return out


def test_markdown_blocks_round_trip() -> None:
    table = pd.DataFrame({"checkpoint": ["a|b", "c"], "x": [1.25, float("nan")]})
    md = markdown_table(table)
    [block] = from_markdown(md)
    assert isinstance(block, Table) and block.header == ("checkpoint", "x") and block.rows == (("a|b", "1.2"), ("c", "n/a"))
    assert block.right == (False, True)
    assert to_markdown([block]).strip() == md


def test_html_escapes_text_and_has_no_external_reference(tmp_path: Path) -> None:
    png = tmp_path / "p.png"
    png.write_bytes(base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="))
    page = to_html([Heading("<b>x</b> & `y`", 1), Table(("a",), (("<script>",),), name="results"), Image(png, 'say "hi"')], "t")
    assert "&lt;b&gt;x&lt;/b&gt; &amp; <code>y</code>" in page
    assert "<td>&lt;script&gt;</td>" in page and 'alt="say &quot;hi&quot;"' in page
    assert 'id="results"' in page and 'src="data:image/png;base64,' in page
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing is fetched


def test_reports_hold_every_section_and_inline_plots(report_dir: Path) -> None:
    md, page = (report_dir / "report.md").read_text(), (report_dir / "report.html").read_text()
    for heading in ("Results (4 checkpoint(s))", "Per method", "Pareto-optimal checkpoints", "Safety vs reasoning",
                    "Weight updates", "RPSA's frozen ratio", "Safety gate verdicts", "What was measured"):
        assert f"## {heading}" in md and f"<h2>{heading}" in page, heading
    pngs = sorted(p.name for p in report_dir.glob("*.png"))
    assert pngs == ["rpsa-ratio-rpsa.png", "tradeoff.png", "weights-overlaps.png", "weights-stable-rank.png"]
    for name in pngs:  # every PNG written is inline in both reports, and no file is linked
        data = base64.b64encode((report_dir / name).read_bytes()).decode("ascii")
        assert f"(data:image/png;base64,{data})" in md and f'src="data:image/png;base64,{data}"' in page, name
    assert not re.search(r"\]\((?!data:)", md)
    assert "| full/epoch-1 | FAIL | point estimates | 0.40 | reasoning drop 0.4 > 0.05 |" in md
    assert ("Promoted `lora/epoch-2` to `s3://b/promoted/r1`. It has the highest one-sided 90% lower bound of mean "
            "pass@1 on the Pareto front of the passing checkpoints' one-sided 90% lower bounds") in md  # the gate's basis
    assert "| lora/epoch-1 | lora | 1 | 70.0 ± 15.3 |" in md  # pass@1 ± its standard error over questions (ddof 1)


@pytest.mark.skipif(chromium_path() is None and os.environ.get("CI") != "true",
                    reason="chromium not installed (scripts/system-deps.sh installs it; in CI this test must run)")
def test_html_report_in_headless_chromium(report_dir: Path, tmp_path: Path) -> None:
    with open_page((report_dir / "report.html").resolve().as_uri()) as page:
        images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        rows = page.evaluate("Array.from(document.querySelectorAll('#results tbody tr')).map(r => r.cells[0].textContent)")
        # sort by safety_mean (click its header): ascending, then descending on a second click
        col = page.evaluate("Array.from(document.querySelectorAll('#results th')).map(t => t.textContent).indexOf('safety_mean')")
        click = f"document.querySelectorAll('#results th')[{col}].click()"
        first = "document.querySelector('#results tbody tr').cells[0].textContent"
        ascending = page.evaluate(f"{click}; {first}")
        descending = page.evaluate(f"{click}; {first}")
        shot = page.screenshot(tmp_path / "report.png")
        errors = page.errors()
    assert errors == []
    assert len(images) == 4 and all(done and w > 0 and h > 0 for done, w, h in images), images
    assert rows == ["base", "full/epoch-1", "lora/epoch-1", "lora/epoch-2"]  # one row per checkpoint
    assert (ascending, descending) == ("base", "full/epoch-1")  # safety 10 % lowest, 100 % highest
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
