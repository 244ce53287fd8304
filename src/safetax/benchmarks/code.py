"""Code benchmarks: HumanEval+ (164 tasks) and MBPP+ (pre-release, 399 tasks), EvalPlus format.

Prompts ask for the complete function in a fenced ``python`` block of the final answer, without
EvalPlus's response prefix ("Below is a Python script with a self-contained function...
```python"), which biases reasoning models. Scoring runs the extracted code in the sandbox
(:mod:`safetax.scoring.sandbox`) on the base and plus inputs and compares its outputs, outside the
sandbox, with the canonical solution's (:func:`safetax.scoring.code.score_code`). The rows kept here
(canonical solutions included) stay in the scorer; the code sees only its task's inputs.

Prompt styles (:mod:`safetax.benchmarks.styles`): ``deepseek`` (the prompts above), ``rpsa-paper``
(RPSA appendix B's HumanEval and MBPP+ prompts); ``lora-paper`` is ``deepseek``: its A.4 removes the
response prefix, as ``deepseek`` does, and "slightly rewords" the prompt without printing the words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from safetax.benchmarks.registry import Item, benchmark, resolve_data
from safetax.benchmarks.styles import DEEPSEEK, DEFAULT_STYLE, RPSA_PAPER, check_style, pick
from safetax.data.tables import DataError, read_rows, require_columns, row_label
from safetax.records import Score
from safetax.scoring.code import score_code

INSTRUCTION = "Put the complete function in a ```python code block in your final answer."
COLUMNS = ("task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input", "atol")


def humaneval_prompt(prompt: str) -> str:
    """The user turn of a HumanEval+ task: instruction, then the signature and docstring."""
    return f"Complete the following Python function. {INSTRUCTION}\n\n```python\n{prompt.rstrip()}\n```"


def mbpp_prompt(prompt: str, assertion: str) -> str:
    """The user turn of an MBPP+ task: the task text, one test assertion as an example, the instruction.

    >>> print(mbpp_prompt("'''\\nAdd two numbers.\\n'''", "\\nassert add(1, 2) == 3\\nassert add(0, 0) == 0\\n"))
    Add two numbers.
    Your code should pass this test:
    <BLANKLINE>
    ```python
    assert add(1, 2) == 3
    ```
    <BLANKLINE>
    Write the Python function. Put the complete function in a ```python code block in your final answer.
    """
    text = prompt.strip().strip("'\"").strip()
    example = _first_assertion(assertion)
    test = f"\nYour code should pass this test:\n\n```python\n{example}\n```\n" if example else "\n"
    return f"{text}{test}\nWrite the Python function. {INSTRUCTION}"


def _first_assertion(assertion: str) -> str:
    return next((ln.strip() for ln in assertion.splitlines() if ln.strip().startswith("assert")), "")


def rpsa_humaneval_prompt(prompt: str) -> str:
    """RPSA appendix B's HumanEval prompt (the task's trailing newlines dropped before the last line).

    >>> print(rpsa_humaneval_prompt("def f():\\n    pass\\n"))
    Solve the following problem.
    Problem:
    def f():
        pass
    Please reason step by step, and put your final answer within a code block:
    """
    tail = "Please reason step by step, and put your final answer within a code block:"
    return f"Solve the following problem.\nProblem:\n{prompt.rstrip()}\n{tail}"


def rpsa_mbpp_prompt(prompt: str, assertion: str) -> str:
    """RPSA appendix B's MBPP+ prompt, one line: the task text and the first test assertion (``test_list[0]``).

    >>> print(rpsa_mbpp_prompt("'''\\nAdd two numbers.\\n'''", "\\nassert add(1, 2) == 3\\nassert add(0, 0) == 0\\n"))
    Add two numbers. Your code should satisfy the following assertion: assert add(1, 2) == 3. Please reason step by step, and put your final answer within a code block:
    """
    text = prompt.strip().strip("'\"").strip()
    return (f"{text} Your code should satisfy the following assertion: {_first_assertion(assertion)}. "
            "Please reason step by step, and put your final answer within a code block:")


class _EvalPlusBenchmark:
    """Shared loader and scorer; subclasses set the dataset flavour and the prompt."""

    name = ""
    kind = "reasoning"
    VERSION = "1"
    default_path = ""
    dataset = ""  # "humaneval" | "mbpp": input types and special oracles of EvalPlus
    extra_columns: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}  # task_id -> EvalPlus row, kept for scoring

    def prompt(self, row: dict[str, Any], style: str = DEFAULT_STYLE) -> str:
        raise NotImplementedError

    def load(self, uri: str | None = None, limit: int = 0, style: str = DEFAULT_STYLE) -> list[Item]:
        """Read and validate every task, keep the rows for scoring, build one :class:`Item` per task."""
        check_style(style)  # before the file is read
        path = resolve_data(uri, self.default_path, self.name)
        rows = read_rows(path)
        require_columns(path, rows, COLUMNS + self.extra_columns)
        items: list[Item] = []
        for i, row in enumerate(rows, start=1):
            tid = str(row["task_id"])
            if tid in self.tasks:
                raise DataError(f"{path}: {row_label(rows, i)}: duplicate task_id {tid!r}")
            for col in ("base_input", "plus_input"):
                if row[col] == {}:  # Mbpp/793 stores an empty plus_input as {}
                    row[col] = []
                if not isinstance(row[col], list):
                    raise DataError(f"{path}: {row_label(rows, i)}: column {col!r} must be a list of argument lists")
            self.tasks[tid] = row
            meta = {"task_id": tid, "entry_point": str(row["entry_point"]), "atol": float(row["atol"] or 0)}
            items.append(Item(tid, self.prompt(row, style), "", meta))
        return items[:limit] if limit > 0 else items

    def score(self, responses: Sequence[str], items: Sequence[Item]) -> list[Score]:
        """1.0 when the extracted code passes base and plus tests; None when no code block was found."""
        if any(str(it.meta["task_id"]) not in self.tasks for it in items):
            self.tasks.clear()
            self.load()  # scoring in a fresh process: re-read the tasks from the default location
        return score_code(responses, items, self.tasks, self.dataset)


@benchmark("humanevalplus")
class HumanEvalPlus(_EvalPlusBenchmark):
    """HumanEval+ v0.1.10: 164 function-completion tasks with EvalPlus's extended tests."""

    name = "humanevalplus"
    default_path = "humanevalplus/HumanEvalPlus-v0.1.10.jsonl.gz"
    dataset = "humaneval"

    def prompt(self, row: dict[str, Any], style: str = DEFAULT_STYLE) -> str:
        return pick({DEEPSEEK: humaneval_prompt, RPSA_PAPER: rpsa_humaneval_prompt}, style)(str(row["prompt"]))


@benchmark("mbppplus")
class MbppPlus(_EvalPlusBenchmark):
    """MBPP+ pre-release (evalplus @ 767efcc, 399 tasks) with base and plus tests."""

    name = "mbppplus"
    default_path = "mbppplus/MbppPlus-prerelease-767efcc-2023-11-16.jsonl.gz"
    dataset = "mbpp"
    extra_columns = ("assertion",)

    def prompt(self, row: dict[str, Any], style: str = DEFAULT_STYLE) -> str:
        template = pick({DEEPSEEK: mbpp_prompt, RPSA_PAPER: rpsa_mbpp_prompt}, style)
        return template(str(row["prompt"]), str(row["assertion"]))
