r"""Prompt styles: each paper's template, written out here from its appendix, for one fixed row.

LoRA paper appendix A.3 prints only GPQA's template; RPSA appendix B prints AIME's (used for
MATH-500 too), GPQA's, HumanEval's and MBPP+'s. Where a paper prints none, the style is the
``deepseek`` one. Expected strings are typed from the appendices, not built from the module.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from safetax.benchmarks.gpqa import shuffle_choices
from safetax.benchmarks.registry import get_benchmark
from safetax.benchmarks.styles import PROMPT_STYLES

PROBLEM = "Find $x$ if $2x = 6$."
DEEPSEEK_MATH = "Find $x$ if $2x = 6$.\nPlease reason step by step, and put your final answer within \\boxed{}."
HE_PROMPT = 'def add(a: int, b: int) -> int:\n    """Return a + b."""\n'
MBPP_PROMPT = "'''\nWrite a function to add two numbers.\n'''"
MBPP_ASSERT = "\nassert add(1, 2) == 3\nassert add(2, 2) == 4\n"


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    math = tmp_path / "math.jsonl"
    math.write_text(json.dumps({"id": "p1", "problem": PROBLEM, "answer": "3"}) + "\n")
    gpqa = tmp_path / "gpqa.csv"
    with gpqa.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3", "Record ID"])
        w.writerow(["Which is even?", "2", "1", "3", "5", "rec-1"])
    code = {"task_id": "T/0", "entry_point": "add", "canonical_solution": "    return a + b\n", "base_input": [[1, 2]],
            "plus_input": [], "atol": 0}
    he = tmp_path / "he.jsonl"
    he.write_text(json.dumps(code | {"prompt": HE_PROMPT}) + "\n")
    mbpp = tmp_path / "mbpp.jsonl"
    mbpp.write_text(json.dumps(code | {"prompt": MBPP_PROMPT, "assertion": MBPP_ASSERT}) + "\n")
    return {"aime24": math, "math500": math, "gpqa": gpqa, "humanevalplus": he, "mbppplus": mbpp}


def prompt(files: dict[str, Path], bench: str, style: str) -> str:
    name = "aime24" if bench == "math500" else bench  # the math file has the AIME id column
    (item,) = get_benchmark(name).load(str(files[bench]), style=style)
    return item.prompt


def gpqa_choices() -> list[str]:
    return shuffle_choices("2", ["1", "3", "5"], "rec-1")[0]


def test_rpsa_math_is_appendix_b_aime(files: dict[str, Path]) -> None:
    expected = ("Solve the following math problem. Present the final answer in the format: Final Answer: \\boxed{your_answer}.\n"
                "Problem: Find $x$ if $2x = 6$.\n"
                "Answer:")
    assert prompt(files, "aime24", "rpsa-paper") == expected
    assert prompt(files, "math500", "rpsa-paper") == expected


def test_lora_paper_gpqa_is_appendix_a3(files: dict[str, Path]) -> None:
    a, b, c, d = gpqa_choices()
    expected = ("You are solving a multiple-choice question. At the end, present your final answer using the format: "
                "Final Answer: \\boxed{X}, where X is one of A, B, C, or D.\n"
                "Question: Which is even?\n"
                "Choices:\n"
                f"(A) {a}\n(B) {b}\n(C) {c}\n(D) {d}")
    assert prompt(files, "gpqa", "lora-paper") == expected


def test_rpsa_gpqa_is_appendix_b(files: dict[str, Path]) -> None:
    a, b, c, d = gpqa_choices()
    expected = ("What is the correct answer to this question:Which is even?\n"
                "Choices:\n"
                f"(A) {a}\n(B) {b}\n(C) {c}\n(D) {d}\n"
                "Please reason step by step, and present your final answer using the format: Final Answer: \\boxed{X}, "
                "where X is one of A, B, C, or D.")
    assert prompt(files, "gpqa", "rpsa-paper") == expected


def test_rpsa_code_prompts_are_appendix_b(files: dict[str, Path]) -> None:
    assert prompt(files, "humanevalplus", "rpsa-paper") == (
        "Solve the following problem.\n"
        "Problem:\n"
        'def add(a: int, b: int) -> int:\n    """Return a + b."""\n'
        "Please reason step by step, and put your final answer within a code block:")
    assert prompt(files, "mbppplus", "rpsa-paper") == (
        "Write a function to add two numbers. Your code should satisfy the following assertion: assert add(1, 2) == 3. "
        "Please reason step by step, and put your final answer within a code block:")


@pytest.mark.parametrize("bench", ["aime24", "math500", "humanevalplus", "mbppplus"])
def test_lora_paper_without_a_printed_template_falls_back_to_deepseek(files: dict[str, Path], bench: str) -> None:
    assert prompt(files, bench, "lora-paper") == prompt(files, bench, "deepseek")


def test_deepseek_is_the_default_and_unchanged(files: dict[str, Path]) -> None:
    (item,) = get_benchmark("aime24").load(str(files["aime24"]))
    assert item.prompt == DEEPSEEK_MATH == prompt(files, "aime24", "deepseek")
    a, b, c, d = gpqa_choices()
    assert prompt(files, "gpqa", "deepseek") == (
        "Answer the following multiple choice question. Please reason step by step, and put the final answer letter "
        f"(A, B, C, or D) within \\boxed{{}}.\n\nWhich is even?\n\nA) {a}\nB) {b}\nC) {c}\nD) {d}")


@pytest.mark.parametrize("bench", ["strongreject", "xstest", "aime24", "gpqa", "humanevalplus", "mbppplus"])
def test_unknown_style_names_the_allowed_ones(bench: str) -> None:
    with pytest.raises(ValueError, match="`prompt_style` must be one of 'deepseek', 'lora-paper', 'rpsa-paper', got 'qwen'"):
        get_benchmark(bench).load("/nonexistent/file.jsonl", style="qwen")  # fails before the file is looked for


def test_safety_prompts_are_the_same_in_every_style(shared_data: Path) -> None:
    path = str(shared_data / "strongreject" / "strongreject_small_dataset.csv")
    # digests only: a failure must never print a harmful prompt
    digests = [[hashlib.sha256(it.prompt.encode()).hexdigest() for it in get_benchmark("strongreject-small").load(path, style=s)]
               for s in PROMPT_STYLES]
    assert digests[0] == digests[1] == digests[2] and len(digests[0]) == 60
