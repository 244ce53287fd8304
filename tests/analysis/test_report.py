"""write_report / format_table / plot_tradeoff write what they promise."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pandas as pd
import pytest

from safetax.analysis.plots import plot_tradeoff
from safetax.analysis.report import format_table, markdown_table, write_report
from safetax.analysis.summary import summarize
from safetax.records import CheckpointScores

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _scores() -> list[CheckpointScores]:
    def cs(name: str, method: str, epoch: int, r: float, s: float) -> CheckpointScores:
        return CheckpointScores(name, method, epoch, reasoning={"gsm8k": r, "math500": r - 0.1},
                                safety={"strongreject": s})  # fmt: skip

    return [
        cs("base", "base", 0, 0.80, 0.30),
        cs("lora/epoch-1", "lora", 1, 0.74, 0.85),
        cs("lora/epoch-2", "lora", 2, 0.70, 0.95),
        cs("rpsa/epoch-1", "rpsa", 1, 0.79, 0.80),
        cs("rpsa/epoch-2", "rpsa", 2, 0.72, 0.75),  # dominated by rpsa/epoch-1
    ]


@pytest.fixture
def table() -> pd.DataFrame:
    return summarize(_scores())


def _table_rows(md: str) -> list[str]:
    """The rows of the report's first table (the results)."""
    lines = md.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| "))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [ln for ln in lines[start:end] if ln.startswith("| ")]


def test_write_report_files(table: pd.DataFrame, tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = write_report(table, out, title="My run", notes=["judge: llama-guard", "seed 0"])
    assert path == out / "report.md"
    png = (out / "tradeoff.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    assert len(png) > 10_000
    csv = pd.read_csv(out / "results.csv")
    assert list(csv["checkpoint"]) == list(table["checkpoint"])
    assert csv["reasoning_mean"].tolist() == pytest.approx(table["reasoning_mean"].tolist())


def test_report_content(table: pd.DataFrame, tmp_path: Path) -> None:
    md = write_report(table, tmp_path, title="My run", notes=["judge: llama-guard"]).read_text()
    assert md.startswith("# My run\n")
    for term in ("safety score", "attack success rate", "pass@1", "safety tax rate"):
        assert term in md
    rows = _table_rows(md)
    assert len(rows) == 1 + len(table)  # header + one row per checkpoint
    assert rows[0].startswith("| checkpoint | method | epoch | acc:gsm8k")
    base_row = next(r for r in rows if r.startswith("| base "))
    # base: gsm8k 80.0, math500 70.0, safety 30.0, ASR 70.0, unscored 0.0, means 75.0 / 30.0 / 70.0, no drops,
    # STR n/a, on the front as the most accurate checkpoint; records without counts have no standard errors
    assert base_row == ("| base | base | 0 | 80.0 | 70.0 | 30.0 | 70.0 | 0.0 | 75.0 | 30.0 | 70.0 | 0 | n/a | n/a | n/a "
                        "| yes | yes | yes |")
    lora1 = next(r for r in rows if r.startswith("| lora/epoch-1 "))
    # reasoning drop 6, ASR drop 55 -> 0.109...
    assert "| 0.11 | yes |" in lora1
    # every plot inline (a data URI of the PNG written beside it), so the report reads on its own (KFP UI)
    png = base64.b64encode((tmp_path / "tradeoff.png").read_bytes()).decode("ascii")
    assert f"![Safety vs reasoning trade-off per checkpoint](data:image/png;base64,{png})" in md
    assert "](tradeoff" not in md and "](weights" not in md
    assert "- judge: llama-guard" in md
    front = md.split("## Pareto-optimal checkpoints")[1].split("##")[0]
    listed = [ln.split("`")[1] for ln in front.strip().splitlines()]
    assert listed == ["base", "lora/epoch-1", "lora/epoch-2", "rpsa/epoch-1"]
    assert "- `base`: reasoning 75.0 %, safety 30.0 %" in front


def test_report_without_notes_has_no_notes_section(table: pd.DataFrame, tmp_path: Path) -> None:
    assert "## Notes" not in write_report(table, tmp_path).read_text()


def test_markdown_table_escapes_pipes() -> None:
    md = markdown_table(pd.DataFrame({"checkpoint": ["a|b"], "x": [1.25]}))
    assert md.splitlines() == ["| checkpoint | x |", "|---|---:|", "| a\\|b | 1.2 |"]


def test_format_table_fixed_width(table: pd.DataFrame) -> None:
    text = format_table(table)
    lines = text.splitlines()
    assert len(lines) == 2 + len(table)
    shown = [str(c) for c in table.columns if not str(c).startswith("se:") and not str(c).endswith(("_lo", "_hi")) and c != "noise"]
    assert lines[0].split() == shown
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split() == ["base", "base", "0", "80.0", "70.0", "30.0", "70.0", "0.0", "75.0", "30.0", "70.0", "0",
                                "n/a", "n/a", "n/a", "yes", "yes", "yes"]
    # columns line up under the dashes; numbers are right-aligned, text left-aligned
    spans = [(m.start(), m.end()) for m in re.finditer("-+", lines[1])]
    assert len(spans) == len(shown)
    cells = [[ln.ljust(spans[-1][1])[a:b] for a, b in spans] for ln in lines[2:]]
    col = {c: i for i, c in enumerate(shown)}
    assert all(r[col["str"]][-1] != " " and r[col["checkpoint"]][0] != " " for r in cells)
    # STR: lora/1 6/55, lora/2 10/65, rpsa/1 1/50, rpsa/2 8/45
    assert [r[col["str"]].strip() for r in cells] == ["n/a", "0.11", "0.15", "0.02", "0.18"]


def test_plot_tradeoff_recomputes_front_and_validates(table: pd.DataFrame, tmp_path: Path) -> None:
    path = plot_tradeoff(table.drop(columns=["pareto"]), tmp_path / "sub" / "p.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="missing \\['safety_mean'\\]"):
        plot_tradeoff(table.drop(columns=["safety_mean"]), tmp_path / "q.png")


def test_pareto_front_per_reasoning_benchmark(tmp_path: Path) -> None:
    """With two reasoning benchmarks, each gets its own front, plot and list (LoRA paper, Figures 2 and 5)."""
    from safetax.analysis.summary import summarize
    from safetax.records import CheckpointScores

    def cs(name: str, method: str, epoch: int, math: float, code: float, safety: float) -> CheckpointScores:
        return CheckpointScores(name, method, epoch, reasoning={"math": math, "code": code}, safety={"harm": safety})

    table = summarize([
        cs("base", "base", 0, 0.8, 0.8, 0.1),
        cs("a/epoch-1", "a", 1, 0.7, 0.2, 0.9),  # good at math, bad at code
        cs("b/epoch-1", "b", 1, 0.2, 0.7, 0.9),  # the other way round
    ])
    assert list(table["pareto:math"]) == [True, True, False]
    assert list(table["pareto:code"]) == [True, False, True]
    assert list(table["pareto"]) == [True, True, True]  # the means tie a and b
    write_report(table, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "## Pareto fronts per reasoning benchmark" in text and "### code" in text
    math_section = text.split("### math")[1].split("###")[0]
    assert "`a/epoch-1`" in math_section and "`b/epoch-1`" not in math_section
    assert (tmp_path / "tradeoff-math.png").stat().st_size > 5_000 and (tmp_path / "tradeoff-code.png").is_file()


def test_per_method_table_takes_each_methods_last_epoch(table: pd.DataFrame, tmp_path: Path) -> None:
    from safetax.analysis.report import method_table

    got = method_table(table)
    assert list(got["method"]) == list(dict.fromkeys(table["method"]))  # base first, then each method once
    assert list(got["epoch"]) == [0, 2, 2]
    assert list(got.columns) == ["method", "epoch", "acc:gsm8k", "se:acc:gsm8k", "acc:math500", "se:acc:math500",
                                 "asr:strongreject", "se:asr:strongreject", "str", "str_lo", "str_hi"]
    write_report(table, tmp_path)
    assert "## Per method (last epoch; RPSA's Table 1 layout)" in (tmp_path / "report.md").read_text()


def test_report_shows_standard_errors_intervals_and_noise(tmp_path: Path) -> None:
    """Records with counts: figures as `x ± se`, drops and STR with their bootstrap interval, `~` inside the noise."""
    from safetax.metrics import LabelCounts, QuestionCounts

    def rec(name: str, correct: int, unsafe: int) -> CheckpointScores:
        method, _, epoch = name.partition("/epoch-")
        return CheckpointScores(name, method, int(epoch or 0),
                                questions={"m": {f"q{i}": QuestionCounts(int(i < correct), 1) for i in range(20)}},
                                safety_labels={"h": LabelCounts(20 - unsafe, unsafe)},
                                outcomes={"h": {f"p{i}": "unsafe" if i < unsafe else "safe" for i in range(20)}})

    table = summarize([rec("base", 10, 16), rec("lora/epoch-1", 9, 2)])
    md = write_report(table, tmp_path).read_text()
    row = next(r for r in _table_rows(md) if r.startswith("| lora/epoch-1 "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == "45.0 ± 11.4"  # pass@1 9/20, se over 20 questions
    assert cells[4] == "90.0 ± 6.7" and cells[5] == "10.0 ± 6.7"  # safety and ASR, binomial se
    drop = next(c for c in cells if c.startswith("5.0 ["))  # one question fewer: inside the noise
    assert drop.endswith(" ~")
    asr_drop = next(c for c in cells if c.startswith("70.0 ["))  # 14 prompts fewer answered unsafely: outside
    assert not asr_drop.endswith("~")
    assert "`value ± standard error`" in md and "paired bootstrap" in md
    assert pd.read_csv(tmp_path / "results.csv")["se:acc:m"].notna().all()
