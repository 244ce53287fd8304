"""GPQA Diamond: encrypted-zip loader, deterministic shuffle, letter extraction.

Never print or write out question text: assertions are on counts, letters and booleans only.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import pytest

from safetax.benchmarks.gpqa import Gpqa, shuffle_choices
from safetax.benchmarks.registry import Item, get_benchmark
from safetax.data.tables import DataError
from safetax.scoring.mcq import extract_choice, score_choice

R1 = "Considering each option in turn.\n</think>\n\n"
FORMATS = (
    "Thus the answer is \\boxed{{{L}}}.",
    "\\boxed{{\\text{{{L}}}}}",
    "Final: \\boxed{{({L})}}",
    "**Final Answer**\n\\[\n\\boxed{{\\textbf{{{L}}}}}\n\\]",
    "Final Answer: {L}",
    "The answer is ({L}).",
    "Answer: {L}",
    "The correct answer is **{L}**.",
    "$\\boxed{{{L}}}$",
)


@pytest.fixture(scope="module")
def gpqa_zip(shared_data: Path) -> Path:
    return shared_data / "gpqa" / "gpqa_diamond.zip"


@pytest.fixture(scope="module")
def gpqa(gpqa_zip: Path) -> list[Item]:
    return get_benchmark("gpqa").load(str(gpqa_zip))


def test_loads_198_from_encrypted_zip(gpqa: list[Item], data_dir: Path) -> None:
    assert len(gpqa) == 198 and len({it.id for it in gpqa}) == 198
    assert all(it.reference in "ABCD" and len(it.reference) == 1 for it in gpqa)
    assert all(it.prompt.startswith("Answer the following multiple choice question.") for it in gpqa)
    assert all(all(f"\n{x}) " in it.prompt for x in "ABCD") for it in gpqa)
    assert {it.meta["domain"] for it in gpqa} == {"Biology", "Chemistry", "Physics"}
    assert len(Gpqa().load(limit=3)) == 3  # $SAFETAX_DATA_DIR/gpqa/gpqa_diamond.zip


def test_shuffle_deterministic_and_spread(gpqa: list[Item], gpqa_zip: Path) -> None:
    again = Gpqa().load(str(gpqa_zip))
    # compare digests so that a failure never prints question text
    digest = [hashlib.sha256((it.reference + it.prompt).encode()).hexdigest() for it in gpqa]
    assert [hashlib.sha256((it.reference + it.prompt).encode()).hexdigest() for it in again] == digest
    counts = Counter(it.reference for it in gpqa)
    assert set(counts) == set("ABCD") and min(counts.values()) >= 30  # 198/4 ~ 50 each
    other = Gpqa(seed=1).load(str(gpqa_zip))
    assert sum(a.reference != b.reference for a, b in zip(gpqa, other)) > 100  # the seed matters


def test_correct_letter_recovered_in_every_format(gpqa: list[Item]) -> None:
    bench = get_benchmark("gpqa")
    for fmt in FORMATS:
        responses = [R1 + fmt.format(L=it.reference) for it in gpqa]
        assert [s.value for s in bench.score(responses, gpqa)] == [1.0] * 198, fmt
        wrong = [R1 + fmt.format(L="ABCD"[("ABCD".index(it.reference) + 1) % 4]) for it in gpqa]
        assert [s.value for s in bench.score(wrong, gpqa)] == [0.0] * 198, fmt


def test_unscored_and_precedence() -> None:
    assert extract_choice("Answer: B, no wait\n</think>\n\nI cannot decide.") is None
    assert extract_choice("thinking \\boxed{A}") is None  # reasoning never closed
    assert extract_choice("\\boxed{A}", require_think=False) == "A"
    assert extract_choice(R1 + "\\boxed{42}") is None  # not a letter
    assert extract_choice(R1 + "Answer: A at first, but the answer is (C).") == "C"  # the last one counts
    assert extract_choice(R1 + "\\boxed{B) 3.2 eV}") == "B"
    assert extract_choice(R1 + "Answer: E") is None  # only A-D
    s = score_choice("no close \\boxed{A}", "A")
    assert s.value is None and "</think>" in s.reason


def test_plain_csv_and_shuffle_helper(tmp_path: Path) -> None:
    path = tmp_path / "tiny.csv"
    cols = ["Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3",
            "Record ID", "High-level domain"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for i in range(8):
            w.writerow([f"Made-up question {i}?", f"right {i}", "wrong a", "wrong b", "wrong c", f"rec{i}", "Physics"])
    items = Gpqa().load(str(path))
    assert len(items) == 8
    for i, it in enumerate(items):
        assert f"{it.reference}) right {i}\n" in it.prompt + "\n"
    choices, letter = shuffle_choices("right", ["w1", "w2", "w3"], "rec0")
    assert sorted(choices) == ["right", "w1", "w2", "w3"] and choices["ABCD".index(letter)] == "right"
    # row order does not change a question's shuffle
    assert shuffle_choices("right", ["w1", "w2", "w3"], "rec0") == (choices, letter)


def test_bad_files_raise_data_error(tmp_path: Path) -> None:
    missing_col = tmp_path / "bad.csv"
    missing_col.write_text("Question,Correct Answer\nq,a\n")
    with pytest.raises(DataError, match="Incorrect Answer 1"):
        Gpqa().load(str(missing_col))
    not_zip = tmp_path / "bad.zip"
    not_zip.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read GPQA zip"):
        Gpqa().load(str(not_zip))
