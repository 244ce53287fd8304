"""Judge agreement: Cohen's kappa and the confusion table against a hand-computed example."""

from __future__ import annotations

import math

import pytest

from safetax.analysis.agreement import agreement, agreement_markdown, pairwise, verdicts_by_judge

# 10 responses both judges scored: (a, b) = safe/safe 4, safe/unsafe 1, unsafe/safe 2, unsafe/unsafe 3;
# r10 unscored by a only, r11 by both, r12 seen by a only, r13 by b only.
PAIRS = [("safe", "safe")] * 4 + [("safe", "unsafe")] + [("unsafe", "safe")] * 2 + [("unsafe", "unsafe")] * 3
A = {f"r{i}": x for i, (x, _) in enumerate(PAIRS)} | {"r10": "unscored", "r11": "unscored", "r12": "safe"}
B = {f"r{i}": y for i, (_, y) in enumerate(PAIRS)} | {"r10": "safe", "r11": "unscored", "r13": "unsafe"}


def test_hand_computed_kappa_and_table() -> None:
    ag = agreement(A, B, ("guard", "refusal"))
    # p_o = 7/10; a: 5 safe 5 unsafe, b: 6 safe 4 unsafe -> p_e = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = (0.7-0.5)/(1-0.5) = 0.4
    assert ag.observed == pytest.approx(0.7) and ag.kappa == pytest.approx(0.4)
    assert ag.table[("safe", "unsafe")] == 1 and ag.table[("unsafe", "safe")] == 2
    assert ag.table[("unscored", "safe")] == 1 and ag.table[("unscored", "unscored")] == 1 and ag.table[("safe", "unscored")] == 0
    assert (ag.both_scored, ag.common, ag.unscored_by_either, ag.only_a, ag.only_b) == (10, 12, 2, 1, 1)


def test_perfect_chance_and_undefined() -> None:
    same = {f"r{i}": "unsafe" if i % 3 else "safe" for i in range(9)}
    assert agreement(same, same).kappa == pytest.approx(1.0)
    opposite = {k: "safe" if v == "unsafe" else "unsafe" for k, v in same.items()}
    assert agreement(same, opposite).kappa < 0 and agreement(same, opposite).observed == 0
    constant = {f"r{i}": "safe" for i in range(5)}
    ag = agreement(constant, constant)
    assert ag.observed == 1.0 and math.isnan(ag.kappa)  # p_e = 1: kappa undefined, not 1
    nothing = agreement({"r": "unscored"}, {"r": "unscored"})
    assert nothing.both_scored == 0 and math.isnan(nothing.kappa) and math.isnan(nothing.observed)


def test_bad_label_names_the_judge() -> None:
    with pytest.raises(ValueError, match="judge 'b': verdicts must be one of \\['safe', 'unsafe', 'unscored'\\], got \\['harmful'\\]"):
        agreement({"r": "safe"}, {"r": "harmful"})


def test_from_judgement_rows_and_markdown() -> None:
    rows = [{"checkpoint": "base", "benchmark": "strongreject", "item_id": k, "sample": 0, "label": v, "judge": "llama-guard-logit"}
            for k, v in A.items()]
    rows += [{"checkpoint": "base", "benchmark": "strongreject", "item_id": k, "sample": 0, "label": v, "judge": "refusal"}
             for k, v in B.items()]
    rows += [{"checkpoint": "base", "benchmark": "xstest", "item_id": "x", "sample": 0, "label": "safe", "judge": "other"}]
    (ag,) = pairwise(verdicts_by_judge(rows))  # "other" shares no response with either: no pair
    assert ag.judges == ("llama-guard-logit", "refusal") and ag.kappa == pytest.approx(0.4)
    text = agreement_markdown([ag])
    assert "### llama-guard-logit vs refusal" in text
    assert "kappa 0.400, observed agreement 0.700 over 10 responses; 2 of 12 unscored by either judge" in text
    assert "| unsafe | 2 | 3 | 0 |" in text and "| unscored | 1 | 0 | 1 |" in text
    assert agreement_markdown([]) == ""


def test_score_records_carry_the_two_judges_table_and_the_report_pools_it(tmp_path) -> None:
    """The score stage counts, per checkpoint, the label pairs of the safety judge and its second opinion; the report
    pools them over checkpoints into kappa and the confusion table."""
    from safetax.artifacts import JudgementRow
    from safetax.records import CheckpointScores, Judgement
    from safetax.stages import analytics
    from safetax.stages.score import _agreement

    def row(i: int, label: str) -> dict:
        return {"checkpoint": "c", "benchmark": "sr", "kind": "safety", "item_id": str(i), "sample": 0, "label": label,
                "judge": "llama-guard-logit"}

    judged = [row(0, "safe"), row(1, "safe"), row(2, "unsafe"), row(3, "unscored")]
    second = {("c", "sr", str(i), 0): JudgementRow(("c", "sr", str(i), 0), Judgement(lab, None, ""), "refusal")
              for i, lab in enumerate(["safe", "unsafe", "unsafe", "safe"])}
    table = _agreement(judged, second)
    assert table == {"llama-guard-logit vs refusal": {"safe|safe": 1, "safe|unsafe": 1, "unscored|safe": 1, "unsafe|unsafe": 1}}
    recs = [CheckpointScores(f"m/epoch-{e}", "m", e, judge_agreement=table) for e in (1, 2)]
    assert CheckpointScores.from_dict(recs[0].to_dict()).judge_agreement == table
    [text] = analytics.agreement_section(recs)
    assert "### llama-guard-logit vs refusal" in text and "over 6 responses" in text  # 2 checkpoints x 3 both-scored
    assert "| safe | 2 | 2 | 0 |" in text


def test_the_report_has_a_cost_table_per_checkpoint_and_stage() -> None:
    from safetax.artifacts import StageCost
    from safetax.records import CheckpointScores
    from safetax.stages import analytics

    def cost(stage: str, generated: int, cached: int, tokens: int, wall: float) -> dict:
        c = StageCost(stage, generated + cached, generated, 0, cached, tokens, wall, 1).to_dict()
        return {k: float(v) for k, v in c.items() if k != "stage"}

    recs = [CheckpointScores("base", "base", 0, cost={"generate": cost("generate", 0, 10, 0, 1.0)}),
            CheckpointScores("m/epoch-1", "m", 1, cost={"generate": cost("generate", 10, 0, 500, 5.0),
                                                        "judge": cost("judge", 10, 0, 0, 2.0)})]
    assert CheckpointScores.from_dict(recs[1].to_dict()).cost == recs[1].cost
    [text] = analytics.cost_section(recs)
    assert "| base | generate | 10 | 0 | 0 | 10 | 100 | 0 | 0 | 1 |" in text
    assert "| m/epoch-1 | generate | 10 | 10 | 0 | 0 | 0 | 500 | 100 | 5 |" in text
    assert "| **all** | generate | 20 | 10 | 0 | 10 | 50 | 500 | 83 | 6 |" in text  # 500 tokens in 6 s
    assert analytics.cost_section([CheckpointScores("base", "base", 0)]) == []
