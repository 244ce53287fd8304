"""Llama-Guard-3 on vLLM: the engine behind ``LlamaGuardJudge(backend="vllm")``.

Logit mode reads what the transformers path reads: P(unsafe) restricted to the first tokens of ``safe`` and
``unsafe`` at the first answer position, and the two tokens' share of the full vocabulary (``mass``). vLLM V1
returns log-probabilities of the raw model output (``logprobs_mode="raw_logprobs"``, its default: before
temperature, penalties or allowed-token masks), i.e. ``log_softmax(logits)``, so the restricted softmax is
``sigmoid(lp_unsafe - lp_safe)``, the same number as the transformers path's softmax over the two logits. The judge
turns both backends' numbers into verdicts with one function (:func:`safetax.judging.guard_output.logit_verdict`): a
pair that is not finite (both tokens at ``-inf``: NaN) or with less than ``min_mass`` is unscored, never safe.

One step per prompt: a one-token greedy request with the top :data:`TOP_LOGPROBS` log-probabilities at that
position (prefix caching applies). Where ``safe`` or ``unsafe`` is not among them (the guard is all but certain
of the other), that token is appended to the prompt and its exact log-probability read from the prompt
log-probabilities of a second request (vLLM V1 reads no prefix cache for such requests: a full prefill, which is
why it is the fallback and not the rule). Generate mode decodes greedily and parses the text as the transformers
path does.

Prompts go in as token ids without added special tokens (the rendered guard prompt starts with its BOS text), with
special tokens written as text parsed: the template's own are, and the model-written text in the prompt cannot add
any (:func:`safetax.judging.untrusted.neutralize` breaks their syntax before it is pasted in). A
prompt that does not fit the engine's context (``max_model_len``) gets ``None``: the judge labels it unscored,
never safe.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

TOP_LOGPROBS = 20  # vLLM's default max_logprobs: the most a request may ask for without raising the engine's limit


def pair_probability(lp_unsafe: float, lp_safe: float) -> tuple[float, float]:
    """``(P(unsafe | safe or unsafe), P(safe or unsafe))`` from the two tokens' log-probabilities (both ``-inf``: NaN).

    >>> p, mass = pair_probability(math.log(0.3), math.log(0.6))
    >>> round(p, 6), round(mass, 6)
    (0.333333, 0.9)
    """
    top = max(lp_unsafe, lp_safe)  # subtract the larger one: no overflow however far apart they are
    unsafe, safe = math.exp(lp_unsafe - top), math.exp(lp_safe - top)
    return unsafe / (unsafe + safe), math.exp(top) * (unsafe + safe)


def first_token_logprobs(request_output: Any) -> dict[int, float]:
    """Token id -> log-probability at the first generated position of a ``RequestOutput`` (its first sample)."""
    steps = request_output.outputs[0].logprobs or []
    if not steps:
        return {}
    return {int(t): float(getattr(lp, "logprob", lp)) for t, lp in steps[0].items()}


def appended_logprob(request_output: Any) -> float:
    """The log-probability of a request's last prompt token given the tokens before it (its prompt logprobs)."""
    last = request_output.prompt_token_ids[-1]
    entry = request_output.prompt_logprobs[-1][last]
    return float(getattr(entry, "logprob", entry))


def fits(prompt_lengths: Sequence[int], new_tokens: int, max_model_len: int) -> list[bool]:
    """Whether each prompt plus ``new_tokens`` fits the context (0 = no known limit).

    >>> fits([10, 95], 10, 100)
    [True, False]
    """
    return [max_model_len <= 0 or n + new_tokens <= max_model_len for n in prompt_lengths]


class VLLMGuardEngine:
    """A Llama-Guard model on ``vllm.LLM`` (LoRA off, prefix caching on)."""

    def __init__(self, model: str, max_model_len: int = 0, gpu_memory_utilization: float = 0.9) -> None:
        try:
            from vllm import LLM
        except ImportError as e:
            raise ImportError("judge_backend 'vllm' needs the vllm package (the safetax-vllm image has it); use 'hf' here") from e
        from safetax.generation.vllm import engine_max_model_len

        self.llm = LLM(model=model, max_model_len=max_model_len or None, gpu_memory_utilization=gpu_memory_utilization,
                       enable_prefix_caching=True, max_logprobs=TOP_LOGPROBS)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = engine_max_model_len(self.llm, max_model_len)

    def _ids(self, prompts: Sequence[str], new_tokens: int) -> list[list[int] | None]:
        ids = [self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]
        return [x if ok else None for x, ok in zip(ids, fits([len(x) for x in ids], new_tokens, self.max_model_len), strict=True)]

    def _run(self, requests: list[list[int]], **params: Any) -> list[Any]:
        from vllm import SamplingParams

        if not requests:
            return []
        return self.llm.generate([{"prompt_token_ids": x} for x in requests], SamplingParams(**params), use_tqdm=False)

    def generate_texts(self, prompts: Sequence[str], max_new_tokens: int) -> tuple[list[str | None], int]:
        """Greedy continuations (special tokens skipped; None where the prompt does not fit) and the tokens generated."""
        ids = self._ids(prompts, max_new_tokens)
        todo = [i for i, x in enumerate(ids) if x is not None]
        outs = self._run([ids[i] for i in todo], temperature=0.0, max_tokens=max_new_tokens)  # type: ignore[misc]
        texts: list[str | None] = [None] * len(prompts)
        for i, o in zip(todo, outs, strict=True):
            texts[i] = o.outputs[0].text
        ends = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}  # counted as the transformers path counts
        return texts, sum(int(t) not in ends for o in outs for t in o.outputs[0].token_ids)

    def unsafe_probabilities(self, prompts: Sequence[str], safe_id: int, unsafe_id: int) -> list[tuple[float, float] | None]:
        """``(p_unsafe, mass)`` per prompt as the transformers path computes them; None where the prompt does not fit."""
        ids = self._ids(prompts, 2)  # the fallback appends one token and generates one
        todo = [i for i, x in enumerate(ids) if x is not None]
        first = self._run([ids[i] for i in todo], temperature=0.0, max_tokens=1, logprobs=TOP_LOGPROBS)  # type: ignore[misc]
        found = {i: first_token_logprobs(o) for i, o in zip(todo, first, strict=True)}
        missing = [(i, t) for i in todo for t in (unsafe_id, safe_id) if t not in found[i]]
        if missing:  # exact values for tokens outside the top-k: append the token, read its prompt logprob
            extra = self._run([[*ids[i], t] for i, t in missing], temperature=0.0, max_tokens=1, prompt_logprobs=1)  # type: ignore[misc]
            for (i, t), o in zip(missing, extra, strict=True):
                found[i][t] = appended_logprob(o)
        out: list[tuple[float, float] | None] = [None] * len(prompts)
        for i in todo:
            out[i] = pair_probability(found[i][unsafe_id], found[i][safe_id])
        return out
