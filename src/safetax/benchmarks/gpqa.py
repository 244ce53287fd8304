r"""GPQA Diamond: 198 graduate-level multiple-choice questions, choices shuffled per question.

The data ships as a password-protected zip (GPQA's authors ask that the
questions never appear in plain text where a crawler could read them); the
loader reads the CSV inside it in memory and never writes it out. A plain CSV
in the same format (``Question``, ``Correct Answer``, ``Incorrect Answer 1..3``,
``Record ID``) is read as well.

The four choices are shuffled with ``random.Random(f"{seed}:{record_id}")``, so
the order is the same on every run and machine and independent of row order;
the reference is the letter the correct answer lands on.

Prompt styles (:mod:`safetax.benchmarks.styles`): ``deepseek`` (the seeds' instruction, then the
question and "A) ..." lines), ``lora-paper`` (LoRA paper appendix A.3) and ``rpsa-paper`` (RPSA
appendix B, lm-evaluation-harness's GPQA layout with a step-by-step instruction). Both papers'
templates ask for "Final Answer: \boxed{X}", which :func:`safetax.scoring.mcq.score_choice` reads.
"""

from __future__ import annotations

import csv
import io
import random
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safetax.benchmarks.registry import Item, benchmark, resolve_data
from safetax.benchmarks.styles import DEEPSEEK, DEFAULT_STYLE, LORA_PAPER, RPSA_PAPER, pick
from safetax.data.tables import DataError, read_rows, require_columns, row_label
from safetax.records import Score
from safetax.scoring.mcq import LETTERS, score_choice

ZIP_PASSWORD = b"deserted-untie-orchid"
CORRECT = "Correct Answer"
INCORRECT = ("Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
COLUMNS = ("Question", CORRECT, *INCORRECT, "Record ID")
PROMPT_HEAD = (
    "Answer the following multiple choice question. Please reason step by step, and put the "
    "final answer letter (A, B, C, or D) within \\boxed{}."
)


def read_gpqa_rows(path: Path, member: str | None = None) -> list[dict[str, Any]]:
    """Rows of a GPQA CSV: a plain (optionally gzipped) CSV, or the CSV inside GPQA's encrypted zip.

    Args:
        path: ``.csv``/``.csv.gz`` file, or ``.zip`` holding one CSV (password :data:`ZIP_PASSWORD`).
        member: the CSV's name inside the zip; default the only ``.csv`` member.

    Raises:
        DataError: the zip holds no single CSV, or cannot be opened with the password.
    """
    if not path.name.lower().endswith(".zip"):
        return read_rows(path)
    try:
        with zipfile.ZipFile(path) as z:
            if member is None:
                csvs = [n for n in z.namelist() if n.lower().endswith(".csv")]
                if len(csvs) != 1:
                    raise DataError(f"{path}: expected one .csv in the zip, found {csvs}")
                member = csvs[0]
            with z.open(member, pwd=ZIP_PASSWORD) as f:
                return list(csv.DictReader(io.TextIOWrapper(f, encoding="utf-8")))
    except (zipfile.BadZipFile, RuntimeError, KeyError) as e:
        raise DataError(f"{path}: cannot read GPQA zip ({type(e).__name__}: {e})") from None


def shuffle_choices(correct: str, incorrect: Sequence[str], record_id: str, seed: int = 0) -> tuple[list[str], str]:
    """The choices in a fixed per-question random order, and the letter of the correct one.

    >>> shuffle_choices("right", ["w1", "w2", "w3"], "rec1") == shuffle_choices("right", ["w1", "w2", "w3"], "rec1")
    True
    >>> choices, letter = shuffle_choices("right", ["w1", "w2", "w3"], "rec1")
    >>> choices["ABCD".index(letter)]
    'right'
    """
    choices = [correct, *incorrect]
    order = list(range(len(choices)))
    random.Random(f"{seed}:{record_id}").shuffle(order)
    shuffled = [choices[i] for i in order]
    return shuffled, LETTERS[order.index(0)]


def gpqa_prompt(question: str, choices: Sequence[str]) -> str:
    r"""The user turn: instruction, question, then "A) ...", "B) ...", ... one per line.

    >>> print(gpqa_prompt("Q?", ["a", "b", "c", "d"]).splitlines()[-1])
    D) d
    """
    lines = [f"{LETTERS[i]}) {c}" for i, c in enumerate(choices)]
    return f"{PROMPT_HEAD}\n\n{question}\n\n" + "\n".join(lines)


def _paren_choices(choices: Sequence[str]) -> str:
    return "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))


def lora_gpqa_prompt(question: str, choices: Sequence[str]) -> str:
    r"""LoRA paper appendix A.3 (its first sentence is one line: the print wraps it at 68 columns).

    >>> print(lora_gpqa_prompt("Q?", ["a", "b", "c", "d"]))
    You are solving a multiple-choice question. At the end, present your final answer using the format: Final Answer: \boxed{X}, where X is one of A, B, C, or D.
    Question: Q?
    Choices:
    (A) a
    (B) b
    (C) c
    (D) d
    """
    head = ("You are solving a multiple-choice question. At the end, present your final answer using the format: "
            "Final Answer: \\boxed{X}, where X is one of A, B, C, or D.")
    return f"{head}\nQuestion: {question}\nChoices:\n{_paren_choices(choices)}"


def rpsa_gpqa_prompt(question: str, choices: Sequence[str]) -> str:
    r"""RPSA appendix B (no space after "question:", as printed and as in lm-evaluation-harness).

    >>> print(rpsa_gpqa_prompt("Q?", ["a", "b", "c", "d"]))
    What is the correct answer to this question:Q?
    Choices:
    (A) a
    (B) b
    (C) c
    (D) d
    Please reason step by step, and present your final answer using the format: Final Answer: \boxed{X}, where X is one of A, B, C, or D.
    """
    tail = ("Please reason step by step, and present your final answer using the format: Final Answer: \\boxed{X}, "
            "where X is one of A, B, C, or D.")
    return f"What is the correct answer to this question:{question}\nChoices:\n{_paren_choices(choices)}\n{tail}"


GPQA_PROMPTS = {DEEPSEEK: gpqa_prompt, LORA_PAPER: lora_gpqa_prompt, RPSA_PAPER: rpsa_gpqa_prompt}


@benchmark("gpqa")
class Gpqa:
    """GPQA Diamond with deterministically shuffled choices; reference = the correct letter."""

    name = "gpqa"
    kind = "reasoning"
    VERSION = "1"
    default_path = "gpqa/gpqa_diamond.zip"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def load(self, uri: str | None = None, limit: int = 0, style: str = DEFAULT_STYLE) -> list[Item]:
        """Read and validate every row, shuffle its choices, and build one :class:`Item` per question."""
        prompt = pick(GPQA_PROMPTS, style)
        path = resolve_data(uri, self.default_path, self.name)
        rows = read_gpqa_rows(path)
        require_columns(path, rows, COLUMNS)
        items: list[Item] = []
        seen: set[str] = set()
        for i, row in enumerate(rows, start=1):
            record_id = str(row["Record ID"]).strip()
            if record_id in seen:
                raise DataError(f"{path}: {row_label(rows, i)}: duplicate 'Record ID' {record_id!r}")
            seen.add(record_id)
            correct = str(row[CORRECT]).strip()
            incorrect = [str(row[c]).strip() for c in INCORRECT]
            choices, letter = shuffle_choices(correct, incorrect, record_id, self.seed)
            meta = {
                "domain": str(row.get("High-level domain") or "").strip(),
                "subdomain": str(row.get("Subdomain") or "").strip(),
                "seed": self.seed,
            }
            items.append(Item(record_id, prompt(str(row["Question"]).strip(), choices), letter, meta))
        return items[:limit] if limit > 0 else items

    def score(self, responses: Sequence[str], items: Sequence[Item]) -> list[Score]:
        """Correctness of each full response (``<think>`` included): the extracted letter vs the reference."""
        if len(responses) != len(items):
            raise ValueError(f"{len(responses)} responses for {len(items)} items")
        return [score_choice(r, it.reference) for r, it in zip(responses, items)]
