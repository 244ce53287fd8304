"""An LLM answer-equivalence judge for math answers, run through a generation backend.

math-verify misses some equivalent forms (units, words, unusual notation); the LoRA
paper re-checked answers with Qwen2.5-32B-Instruct. Only answers that were extracted
but judged different are re-checked: the judge can turn a mismatch into a match,
never the other way, and an unparseable verdict leaves the mismatch as it was.

The extracted answer is model-written text that the judge reads, so only answers that
look like a short math answer (:func:`~safetax.scoring.equivalence.recheck_refusal`)
are sent, neutralised and marked as data; the rest stay mismatches, with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from safetax.data.chat import render_prompt
from safetax.generation.base import GenerationBackend, SamplingConfig
from safetax.records import Score
from safetax.scoring.equivalence import llm_equivalence_prompt, parse_llm_equivalence, recheck_refusal


def llm_recheck(
    backend: GenerationBackend, questions: Sequence[str], references: Sequence[str], scores: Sequence[Score],
    max_new_tokens: int = 256,
) -> list[Score]:
    """Scores with each extracted-but-mismatched short answer re-judged by the LLM (greedy, one call)."""
    result = list(scores)
    todo = []
    for i, s in enumerate(scores):
        if s.value != 0.0 or s.answer is None:
            continue
        why = recheck_refusal(s.answer)
        if why is None:
            todo.append(i)
        else:
            result[i] = replace(s, reason=f"{s.reason}; not re-checked by the LLM judge: {why}")
    if not todo:
        return result
    prompts = [render_prompt(backend.tokenizer, llm_equivalence_prompt(questions[i], references[i], scores[i].answer or "")) for i in todo]
    outs = backend.generate(prompts, SamplingConfig(max_new_tokens=max_new_tokens))
    for i, comps in zip(todo, outs, strict=True):
        verdict = parse_llm_equivalence(comps[0].text)
        if verdict:
            result[i] = replace(scores[i], value=1.0, reason="equivalent by the LLM judge (math-verify: mismatch)")
        else:
            note = "LLM judge agrees: not equivalent" if verdict is False else "LLM judge verdict unparseable"
            result[i] = replace(scores[i], reason=f"{scores[i].reason}; {note}")
    return result
