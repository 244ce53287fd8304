"""The reproduction section against RPSA's Table 1, on hand-built checkpoint scores."""

from __future__ import annotations

import math

import pytest

from safetax.analysis.reproduction import paper_model, published_values, reproduce, reproduction_markdown
from safetax.metrics import LabelCounts, QuestionCounts
from safetax.records import CheckpointScores


def scores(method: str, epoch: int, aime_correct: int, sr_unsafe: int) -> CheckpointScores:
    """AIME (30 questions, one sample) and StrongREJECT (313 prompts), with per-item outcomes for the bootstrap."""
    questions = {f"q{i}": QuestionCounts(float(i < aime_correct), 1) for i in range(30)}
    outcomes = {f"p{i}": "unsafe" if i < sr_unsafe else "safe" for i in range(313)}
    return CheckpointScores(checkpoint="base" if method == "base" else f"{method}/epoch-{epoch}", method=method, epoch=epoch,
                            questions={"aime24": questions}, safety_labels={"strongreject": LabelCounts(313 - sr_unsafe, sr_unsafe)},
                            outcomes={"strongreject": outcomes})


BASE = scores("base", 0, 18, 201)  # R1-Qwen-7B Original: AIME 60.00 = 18/30, SR 64.22 = 201/313


def test_published_table_is_complete_and_consistent() -> None:
    values = published_values()
    rpsa = [v for v in values if v.paper == "rpsa" and v.table == "Table 1"]
    assert len(rpsa) == 2 * 5 * 6 + 2 * 4  # 2 models x 5 rows x 6 metrics, STR for the 4 trained rows
    one = {(v.model, v.method, v.metric): v.value for v in rpsa}
    assert one[("R1-Llama-8B", "LoRA+RPSA", "STR")] == 0.0834 and one[("R1-Qwen-7B", "Original", "GPQA")] == 50.22


def test_model_names() -> None:
    assert paper_model("deepseek-ai/DeepSeek-R1-Distill-Llama-8B") == "R1-Llama-8B"
    assert paper_model("s3://models/deepseek-r1-distill-qwen-7b/") == "R1-Qwen-7B"
    assert paper_model("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B") is None


def test_rows_compare_last_epochs_and_say_whether_they_agree() -> None:
    run = [scores("lora", 1, 0, 300), scores("lora", 6, 13, 2),  # epoch 6 matches LoRA's 43.33 = 13/30 and 0.64 = 2/313
           scores("lora-rpsa", 6, 0, 0), scores("lora+ortho-both-l1", 6, 30, 0)]
    rows = {(r.row, r.metric): r for r in reproduce(BASE, run, "R1-Qwen-7B")}
    assert {row for row, _ in rows} == {"R1-Qwen-7B / Original", "R1-Qwen-7B / LoRA", "R1-Qwen-7B / LoRA+RPSA"}
    original = rows[("R1-Qwen-7B / Original", "AIME")]
    assert original.measured == pytest.approx(60.0) and original.agrees and original.ci_low < 60 < original.ci_high
    lora = rows[("R1-Qwen-7B / LoRA", "SR")]
    assert (lora.published, round(lora.measured, 2), lora.agrees) == (0.64, 0.64, True)
    assert rows[("R1-Qwen-7B / LoRA+RPSA", "AIME")].agrees is False  # 0/30 against 53.33
    gpqa = rows[("R1-Qwen-7B / LoRA", "GPQA")]
    assert math.isnan(gpqa.measured) and gpqa.agrees is None and "Diamond" in gpqa.note
    str_row = rows[("R1-Qwen-7B / LoRA", "STR")]
    expected = (18 / 30 - 13 / 30) / (201 / 313 - 2 / 313)  # mean pass@1 drop / mean ASR drop, one benchmark each
    assert str_row.measured == pytest.approx(expected) and str_row.ci_low <= expected <= str_row.ci_high
    assert str_row.agrees == (str_row.ci_low <= 0.2279 <= str_row.ci_high)
    assert reproduce(BASE, run, "R1-Llama-8B", methods={"Original": "base"})[0].row == "R1-Llama-8B / Original"


def test_markdown_section() -> None:
    rows = reproduce(BASE, [scores("lora", 6, 13, 2)], "R1-Qwen-7B")
    text = reproduction_markdown(rows)
    assert text.startswith("## Reproduction\n")
    assert "| R1-Qwen-7B / LoRA | AIME | 43.33 | 43.33 | [" in text and "| R1-Qwen-7B / LoRA | GPQA | 48.44 | n/a | n/a | n/a |" in text
    assert "- GPQA: paper: GPQA Main (448 questions" in text
    assert "Checkpoints: the paper keeps the best of checkpoints saved every 100 steps" in text  # vs our last epoch
    assert reproduction_markdown([]) == ""


def test_the_run_report_has_the_section_for_a_papers_model_only(tmp_path) -> None:
    """The analytics stage adds the reproduction section when the base model is one a paper reports on."""
    from safetax.artifacts import write_scores
    from safetax.stages import analytics
    from safetax.store import atomic_dir

    with atomic_dir(tmp_path / "scores") as tmp:  # as the score stage leaves it
        write_scores(tmp, [scores("base", 0, 16, 20), scores("lora", 1, 10, 30), scores("lora", 2, 15, 5)])
    analytics.run([tmp_path / "scores"], tmp_path / "paper", base_model="deepseek-ai/DeepSeek-R1-Distill-Qwen-7B")
    analytics.run([tmp_path / "scores"], tmp_path / "other", base_model="/models/tiny")
    paper = (tmp_path / "paper" / "report.md").read_text()
    assert "## Reproduction" in paper and "R1-Qwen-7B / LoRA" in paper
    assert "Reproduction" in (tmp_path / "paper" / "report.html").read_text()
    assert "## Reproduction" not in (tmp_path / "other" / "report.md").read_text()


def test_str_is_measured_over_the_published_tables_benchmarks_only() -> None:
    """A run that also evaluates MATH-500 (not in RPSA Table 1) gets the paper's STR: its drop there is left out."""
    from safetax.analysis.reproduction import restrict
    from safetax.metrics import compare
    from safetax.records import CheckpointScores

    def record(name: str, aime: float, math500: float, safety: float) -> CheckpointScores:
        return CheckpointScores(name, name, 0, reasoning={"aime24": aime, "math500": math500},
                                safety={"strongreject": safety}, counts={"strongreject": {"n": 100, "unscored": 0}})

    base, ckpt = record("base", 0.5, 0.9, 0.3), record("m", 0.4, 0.1, 0.8)  # math500 collapsed: not in the table
    table = {"aime24", "strongreject"}
    whole = compare(base, ckpt).safety_tax_rate.value  # (0.1 + 0.8) / 2 / 0.5
    paper = compare(restrict(base, table), restrict(ckpt, table)).safety_tax_rate.value  # 0.1 / 0.5
    assert whole == pytest.approx(0.9) and paper == pytest.approx(0.2)
    assert restrict(ckpt, table).reasoning == {"aime24": 0.4}
