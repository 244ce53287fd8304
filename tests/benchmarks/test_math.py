"""AIME 2024 and MATH-500: loaders on the shared data, and equivalence scoring of their answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from safetax.benchmarks.registry import Item, get_benchmark
from safetax.data.tables import DataError
from safetax.scoring.equivalence import (
    extract_final_answer,
    llm_equivalence_prompt,
    math_equal,
    parse_llm_equivalence,
    score_math,
)

R1 = "Let me work through this carefully.\nSo the result follows.\n</think>\n\n"


def aime_responses(ans: str) -> list[str]:
    """The same answer in the final-answer formats R1-style models commonly use."""
    return [
        R1 + f"The walk takes this long, so the answer is \\boxed{{{ans}}}.",
        R1 + f"**Final Answer**\n\\[\n\\boxed{{{ans}}}\n\\]",
        R1 + f"Final Answer: \\boxed{{{ans}}}",
        R1 + f"Final Answer: {ans}",
        R1 + f"The final answer is ${ans}$.",
        R1 + f"The final answer is {ans}",
        "<think>\nreasoning\n</think>\n\n" + f"Therefore, $\\boxed{{{ans}}}$",
    ]


@pytest.fixture(scope="module")
def aime(shared_data: Path) -> list[Item]:
    return get_benchmark("aime24").load(str(shared_data / "aime24" / "aime24.jsonl"))


@pytest.fixture(scope="module")
def math500(shared_data: Path) -> list[Item]:
    return get_benchmark("math500").load(str(shared_data / "math500" / "math500.jsonl"))


def test_aime_loads_30_with_prompt(aime: list[Item], data_dir: Path) -> None:
    assert len(aime) == 30 and len({it.id for it in aime}) == 30
    assert all(it.prompt.endswith("\nPlease reason step by step, and put your final answer within \\boxed{}.") for it in aime)
    assert sum(it.reference.startswith("0") for it in aime) == 7
    assert get_benchmark("aime24").VERSION == "1"
    assert len(get_benchmark("aime24").load(limit=5)) == 5  # $SAFETAX_DATA_DIR/aime24/aime24.jsonl


def test_aime_every_answer_scores_in_every_format(aime: list[Item]) -> None:
    bench = get_benchmark("aime24")
    for fmt in range(len(aime_responses("1"))):
        responses = [aime_responses(it.reference)[fmt] for it in aime]
        scores = bench.score(responses, aime)
        assert [s.value for s in scores] == [1.0] * 30, f"format {fmt}"
        # the same answer without leading zeros ("25" for "025") is also correct
        stripped = [aime_responses(str(int(it.reference)))[fmt] for it in aime]
        assert all(s.value == 1.0 for s in bench.score(stripped, aime)), f"format {fmt}, no leading zeros"


def test_aime_wrong_number_scores_incorrect(aime: list[Item]) -> None:
    wrong = [R1 + f"\\boxed{{{(int(it.reference) + 1) % 1000}}}" for it in aime]
    assert [s.value for s in get_benchmark("aime24").score(wrong, aime)] == [0.0] * 30


def test_leading_zeros_and_unscored_cases() -> None:
    assert math_equal("025", "25") and math_equal("25", "025") and math_equal("007", "7")
    assert not math_equal("250", "25")
    assert score_math(R1 + "\\boxed{025}", "25").value == 1.0
    cut = score_math("still reasoning \\boxed{25}", "25")  # no </think>: no final answer
    assert cut.value is None and "</think>" in cut.reason
    none = score_math(R1 + "I could not solve it.", "25")
    assert none.value is None and none.answer is None
    assert score_math("\\boxed{25}", "25", require_think=False).value == 1.0
    # the last box of the final answer counts, not boxes inside the reasoning
    assert extract_final_answer("\\boxed{1}\n</think>\n\n\\boxed{2} or rather \\boxed{3}") == "3"


def test_math_equivalence_beyond_strings() -> None:
    assert math_equal("0.5", "\\frac{1}{2}")
    assert math_equal("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})")
    assert math_equal("\\dfrac{14}{3}", "\\frac{14}{3}")
    assert not math_equal("\\frac{1}{3}", "\\frac{1}{2}")
    assert not math_equal("", "1")


def test_math500_loads_500_with_meta(math500: list[Item]) -> None:
    assert len(math500) == 500 and len({it.id for it in math500}) == 500
    assert all(it.reference and it.meta["subject"] and it.meta["level"] in (1, 2, 3, 4, 5) for it in math500)
    assert len({it.meta["subject"] for it in math500}) == 7


# MATH-500 reference answers that math-verify cannot prove equal to themselves (measured: none).
MATH_VERIFY_SELF_FAILURES: set[str] = set()


def test_math500_every_answer_scores_against_itself(math500: list[Item]) -> None:
    from math_verify import parse, verify

    boxed = [R1 + f"\\boxed{{{it.reference}}}" for it in math500]
    assert all(s.value == 1.0 for s in get_benchmark("math500").score(boxed, math500))
    # math-verify alone (no string shortcut), both sides wrapped in \boxed{}
    failures = {
        it.id
        for it in math500
        if not verify(parse(f"\\boxed{{{it.reference}}}"), parse(f"\\boxed{{{it.reference}}}"))
    }
    assert failures == MATH_VERIFY_SELF_FAILURES


def test_loader_errors_name_file_and_row(tmp_path: Path) -> None:
    bad = tmp_path / "aime.jsonl"
    bad.write_text('{"id": 1, "problem": "1+1?", "answer": "2"}\n{"id": 2, "problem": "2+2?", "answer": ""}\n')
    with pytest.raises(DataError, match="line 2.*answer"):
        get_benchmark("aime24").load(str(bad))
    with pytest.raises(FileNotFoundError):
        get_benchmark("math500").load(str(tmp_path / "missing.jsonl"))


def test_llm_judge_hook_pure_functions() -> None:
    prompt = llm_equivalence_prompt("Compute 1/2.", "\\frac{1}{2}", "0.5")
    assert "\\frac{1}{2}" in prompt and "0.5" in prompt and "Yes or No" in prompt
    assert parse_llm_equivalence("Yes") is True
    assert parse_llm_equivalence("No, they differ.") is False
    assert parse_llm_equivalence("<think>yes or no?</think>\n\nNo") is False
    assert parse_llm_equivalence("Not equivalent.") is False
    assert parse_llm_equivalence("") is None
    assert parse_llm_equivalence("Yes, they are equivalent.") is True and parse_llm_equivalence("> *Equivalent*") is True
    # red team: prose that mentions verdict words, or contradicts itself, is no verdict (the mismatch stands)
    for prose in ("Is 1/2 equivalent to 0.5? No.", "I cannot say yes or no.", "They are not exactly equivalent.",
                  "Equivalent? Not equivalent.", "Yes... actually no", "\n\nMaybe.\nYes"):
        assert parse_llm_equivalence(prose) is None, prose
