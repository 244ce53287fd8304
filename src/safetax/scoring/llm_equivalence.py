"""An LLM answer-equivalence judge for math answers, run through a generation backend.

math-verify misses some equivalent forms (units, words, unusual notation); the LoRA
paper re-checked answers with Qwen2.5-32B-Instruct. Only answers that were extracted
but judged different are re-checked: the judge can turn a mismatch into a match,
never the other way, and an unparseable verdict leaves the mismatch as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from safetax.data.chat import render_prompt
from safetax.generation.base import GenerationBackend, SamplingConfig
from safetax.records import Score
from safetax.scoring.equivalence import llm_equivalence_prompt, parse_llm_equivalence


def llm_recheck(
    backend: GenerationBackend, questions: Sequence[str], references: Sequence[str], scores: Sequence[Score],
    max_new_tokens: int = 256,
) -> list[Score]:
    """Scores with each extracted-but-mismatched answer re-judged by the LLM (greedy, one call)."""
    todo = [i for i, s in enumerate(scores) if s.value == 0.0 and s.answer is not None]
    if not todo:
        return list(scores)
    prompts = [render_prompt(backend.tokenizer, llm_equivalence_prompt(questions[i], references[i], scores[i].answer or "")) for i in todo]
    outs = backend.generate(prompts, SamplingConfig(max_new_tokens=max_new_tokens))
    result = list(scores)
    for i, comps in zip(todo, outs, strict=True):
        verdict = parse_llm_equivalence(comps[0].text)
        if verdict:
            result[i] = replace(scores[i], value=1.0, reason="equivalent by the LLM judge (math-verify: mismatch)")
        else:
            note = "LLM judge agrees: not equivalent" if verdict is False else "LLM judge verdict unparseable"
            result[i] = replace(scores[i], reason=f"{scores[i].reason}; {note}")
    return result
