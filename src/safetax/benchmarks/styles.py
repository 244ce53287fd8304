r"""Prompt styles: which paper's wording turns a benchmark row into the user turn.

- ``deepseek`` (default): the seeds' prompts, DeepSeek-R1's recommended "Please reason step by step,
  and put your final answer within \boxed{}." for math and multiple choice, and code prompts without
  EvalPlus's response prefix. Unchanged from before styles existed.
- ``lora-paper``: Xue & Mirzasoleiman (2025), appendix A.3. The paper prints one template, GPQA's;
  AIME uses the codebase of Li et al. (2025b) and the code prompts were "slightly reworded" (A.4)
  without the wording being printed, so every other benchmark falls back to ``deepseek``.
- ``rpsa-paper``: RPSA, appendix B: AIME (also used for MATH-500, which the appendix does not list),
  GPQA, HumanEval+ and MBPP+.

Neither paper prints a wrapper for safety prompts (LoRA A.2: the StrongREJECT question as is; RPSA
§4.2.1: "instructions are provided directly in the user prompt without any system prompt"), so safety
and over-refusal prompts are the dataset's text in every style. RPSA's "<think> prefix" (§4.2.1) is
the R1 chat template's generation prompt, not part of the user turn.

Reading the appendices, which were typeset from source: a printed line break is a newline (RPSA's
GPQA template is lm-evaluation-harness's ``gpqa`` one, ``question:{{Question}}\nChoices:\n(A) ...``),
except where a line was visibly wrapped to the page width inside a sentence (LoRA A.3's first
sentence, wrapped at 68 columns); the backslash of ``\boxed`` lost in RPSA's typesetting
("boxed $\{X\}$") is restored, as §4.2.1 says the prompts ask for ``\boxed{answer}``; RPSA's stray
third brace in ``{{problem}}}`` is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

DEEPSEEK = "deepseek"
LORA_PAPER = "lora-paper"
RPSA_PAPER = "rpsa-paper"
PROMPT_STYLES = (DEEPSEEK, LORA_PAPER, RPSA_PAPER)
DEFAULT_STYLE = DEEPSEEK

F = TypeVar("F", bound=Callable[..., str])


def check_style(style: str) -> str:
    """``style`` if it is a known prompt style.

    >>> check_style("rpsa-paper")
    'rpsa-paper'
    >>> check_style("qwen")
    Traceback (most recent call last):
    ...
    ValueError: `prompt_style` must be one of 'deepseek', 'lora-paper', 'rpsa-paper', got 'qwen'
    """
    if style not in PROMPT_STYLES:
        allowed = ", ".join(repr(s) for s in PROMPT_STYLES)
        raise ValueError(f"`prompt_style` must be one of {allowed}, got {style!r}")
    return style


def pick(templates: dict[str, F], style: str) -> F:
    """The template of ``style``, or the ``deepseek`` one where the paper prints none for this benchmark."""
    return templates.get(check_style(style), templates[DEEPSEEK])
