r"""Math reasoning benchmarks: AIME 2024 (30 problems) and MATH-500.

Prompt styles (:mod:`safetax.benchmarks.styles`): ``deepseek`` (the seeds' prompt: the problem,
then "Please reason step by step, and put your final answer within \boxed{}."); ``rpsa-paper``
(RPSA appendix B's AIME prompt, used for MATH-500 too, which the appendix does not list);
``lora-paper`` prints no math template (A.3 names only the codebase), so it is ``deepseek``.
Both are scored by answer equivalence
(:func:`safetax.scoring.equivalence.score_math`), so ``025`` matches ``25`` and
``\frac{1}{2}`` matches ``0.5``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from safetax.benchmarks.registry import Item, benchmark, resolve_data
from safetax.benchmarks.styles import DEEPSEEK, DEFAULT_STYLE, RPSA_PAPER, pick
from safetax.data.tables import DataError, read_rows, require_columns, row_label
from safetax.records import Score
from safetax.scoring.equivalence import score_math

PROMPT_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."


def math_prompt(problem: str) -> str:
    r"""The user turn for a math problem (the seeds' prompt).

    >>> math_prompt("What is 1+1?")
    'What is 1+1?\nPlease reason step by step, and put your final answer within \\boxed{}.'
    """
    return problem.strip() + PROMPT_SUFFIX


def rpsa_math_prompt(problem: str) -> str:
    r"""RPSA appendix B's AIME prompt.

    >>> print(rpsa_math_prompt("What is 1+1?"))
    Solve the following math problem. Present the final answer in the format: Final Answer: \boxed{your_answer}.
    Problem: What is 1+1?
    Answer:
    """
    head = "Solve the following math problem. Present the final answer in the format: Final Answer: \\boxed{your_answer}."
    return f"{head}\nProblem: {problem.strip()}\nAnswer:"


MATH_PROMPTS = {DEEPSEEK: math_prompt, RPSA_PAPER: rpsa_math_prompt}


def score_items(responses: Sequence[str], items: Sequence[Item]) -> list[Score]:
    """Score each response against its item's reference with :func:`score_math`."""
    if len(responses) != len(items):
        raise ValueError(f"{len(responses)} responses for {len(items)} items")
    return [score_math(r, it.reference) for r, it in zip(responses, items)]


class _MathBenchmark:
    """Shared loader of JSONL math benchmarks; subclasses name columns and meta."""

    name = ""
    kind = "reasoning"
    VERSION = "1"
    default_path = ""
    id_column = ""
    meta_columns: tuple[str, ...] = ()

    def load(self, uri: str | None = None, limit: int = 0, style: str = DEFAULT_STYLE) -> list[Item]:
        """Read and validate every row, then build one :class:`Item` per problem (the first ``limit`` if > 0)."""
        prompt = pick(MATH_PROMPTS, style)
        path = resolve_data(uri, self.default_path, self.name)
        rows = read_rows(path)
        require_columns(path, rows, ("problem", "answer", self.id_column))
        items: list[Item] = []
        seen: set[str] = set()
        for i, row in enumerate(rows, start=1):
            item_id = str(row[self.id_column])
            if item_id in seen:
                raise DataError(f"{path}: {row_label(rows, i)}: duplicate {self.id_column} {item_id!r}")
            seen.add(item_id)
            meta: dict[str, Any] = {c: row[c] for c in self.meta_columns if c in row}
            items.append(Item(item_id, prompt(str(row["problem"])), str(row["answer"]).strip(), meta))
        return items[:limit] if limit > 0 else items

    def score(self, responses: Sequence[str], items: Sequence[Item]) -> list[Score]:
        """Correctness of each full response (``<think>`` included) by answer equivalence."""
        return score_items(responses, items)


@benchmark("aime24")
class Aime24(_MathBenchmark):
    """AIME 2024 I and II: 30 problems with integer answers 0-999 (some written "025")."""

    name = "aime24"
    default_path = "aime24/aime24.jsonl"
    id_column = "id"
    meta_columns = ("url",)


@benchmark("math500")
class Math500(_MathBenchmark):
    """MATH-500 (the PRM800K test split): LaTeX answers, with subject and level in ``meta``."""

    name = "math500"
    default_path = "math500/math500.jsonl"
    id_column = "unique_id"
    meta_columns = ("subject", "level")
