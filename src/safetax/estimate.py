"""What a run will cost before it starts: generated tokens and GPU-hours of its evaluation.

:func:`estimate` is pure: per eval set, prompts x samples x token budget x the mean share of the budget a response
uses, for every evaluated checkpoint, at a throughput in tokens/s per model replica. :func:`set_loads` counts the
prompts of each eval set in its data file (the only I/O) and applies the run's and each set's sampling.

Throughput: vLLM serves about 5-10k output tokens/s for a 7-8B model on one H100/H200 at long outputs (issue 15's
figure); a platform file's ``tokens_per_second`` (per model replica on that platform's GPU) replaces the default.
Budget use: a reasoning model stops well before a 32k budget on most prompts (R1-distilled models average a few
thousand tokens on MATH-500, far more on AIME), hence a mean share rather than the budget itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from safetax.config import Checks
from safetax.data.eval_sets import EvalSet, load_eval_set
from safetax.generation.base import SamplingConfig
from safetax.shards import check_count

TOKENS_PER_SECOND = 5000.0  # per model replica: the low end of vLLM on one H100/H200 for a 7-8B model
# Mean share of max_new_tokens a response uses: issue 15's ~20M tokens per checkpoint under the seeds' protocol
# (10,328 reasoning samples at 32,768 tokens) is ~2k tokens per response, 6 % of the budget.
BUDGET_FRACTION = 0.06


@dataclass(frozen=True)
class SetLoad:
    """One eval set's generation work for one checkpoint."""

    name: str
    kind: str
    prompts: int
    samples: int  # responses per prompt
    max_new_tokens: int

    def tokens(self, budget_fraction: float) -> float:
        return self.prompts * self.samples * self.max_new_tokens * budget_fraction


@dataclass(frozen=True)
class RunEstimate:
    sets: tuple[SetLoad, ...]
    checkpoints: int  # models evaluated: base + every epoch evaluated + every merge candidate
    budget_fraction: float
    tokens_per_second: float  # per model replica
    gpus_per_model: int  # tensor-parallel GPUs of one replica
    shards: int = 1  # eval_shards: chains per model (safetax.shards)

    @property
    def chain_hours(self) -> float:
        """Generation wall time of one chain (a model's 1/shards of the prompts), with a GPU free for each chain."""
        return self.tokens_per_checkpoint / self.shards / self.tokens_per_second / 3600

    @property
    def tokens_per_checkpoint(self) -> float:
        return sum(s.tokens(self.budget_fraction) for s in self.sets)

    @property
    def tokens(self) -> float:
        return self.tokens_per_checkpoint * self.checkpoints

    @property
    def gpu_hours(self) -> float:
        return self.tokens / self.tokens_per_second * self.gpus_per_model / 3600

    def table(self, audit: bool = False) -> str:
        """A plain-text table: one row per eval set (per checkpoint), then the run's totals (``audit``: those of one
        audited checkpoint)."""
        lines = [f"{'eval set':<16} {'kind':<12} {'prompts':>8} {'samples':>8} {'budget':>8} {'tokens/ckpt':>12}"]
        for s in self.sets:
            lines.append(f"{s.name:<16} {s.kind:<12} {s.prompts:>8} {s.samples:>8} {s.max_new_tokens:>8} "
                         f"{s.tokens(self.budget_fraction):>12,.0f}")
        what = ("per audited checkpoint (the baseline model's first audit adds one more): " if audit else
                f"{self.checkpoints} checkpoint(s) x {self.tokens_per_checkpoint:,.0f} tokens = ")
        lines.append(f"{what}{self.tokens:,.0f} generated "
                     f"tokens (at {self.budget_fraction:.0%} of the budgets); at {self.tokens_per_second:,.0f} tokens/s x "
                     f"{self.gpus_per_model} GPU(s) per model: {self.gpu_hours:,.2f} GPU-hours")
        lines.append(f"wall time of one chain ({'a model' if self.shards == 1 else f'1/{self.shards} of a model: eval_shards'}), "
                     f"when every chain has its GPUs: {self.chain_hours:,.2f} h")
        return "\n".join(lines)


def estimate(sets: Sequence[SetLoad], checkpoints: int, budget_fraction: float = BUDGET_FRACTION,
             tokens_per_second: float = TOKENS_PER_SECOND, gpus_per_model: int = 1, shards: int = 1) -> RunEstimate:
    """The expected generated tokens and GPU-hours of evaluating ``checkpoints`` models on ``sets``.

    >>> e = estimate([SetLoad("aime24", "reasoning", 30, 8, 32768)], checkpoints=16, budget_fraction=0.5)
    >>> round(e.tokens), round(e.gpu_hours, 2)
    (62914560, 3.5)
    """
    c = Checks("estimate")
    c.positive("checkpoints", checkpoints)
    if not 0 < budget_fraction <= 1:
        c.fail("budget_fraction", budget_fraction, "in (0, 1]")
    c.positive("tokens_per_second", tokens_per_second)
    c.positive("gpus_per_model", gpus_per_model)
    try:
        check_count(shards)
    except ValueError as e:
        c.errors.append(str(e))
    c.raise_if_any()
    return RunEstimate(tuple(sets), checkpoints, budget_fraction, tokens_per_second, gpus_per_model, shards)


def set_loads(eval_sets: Sequence[EvalSet], safety: SamplingConfig, reasoning: SamplingConfig) -> list[SetLoad]:
    """Each set's prompts (counted in its data file, after ``limit`` / ``sample``), samples and budget, with the
    set's own ``samples`` / ``max_new_tokens`` over the run's sampling for its kind (as the generate stage does)."""
    out = []
    for es in eval_sets:
        base = reasoning if es.kind == "reasoning" else safety
        items, _ = load_eval_set(es)
        out.append(SetLoad(es.name, es.kind, len(items), es.samples or base.n, es.max_new_tokens or base.max_new_tokens))
    return out


def evaluated_checkpoints(methods: Sequence[dict[str, Any]], run_epochs: int = 0) -> int:
    """Models an alignment run evaluates: the base, every epoch of every method and every merge candidate.

    >>> evaluated_checkpoints([{"method": "lora"}, {"method": "full", "epochs": 2},
    ...                        {"method": "lora", "name": "m", "merge": "ortho-col", "merge_lambdas": [1, 1.2]}])
    25
    """
    from safetax.stages.merge import MergeConfig
    from safetax.stages.train import TrainConfig

    n = 1
    for m in methods:
        cfg = TrainConfig.from_dict(({"epochs": run_epochs} if run_epochs else {}) | dict(m))
        merge = MergeConfig.from_method(dict(m))
        epochs = cfg.num_epochs
        n += epochs
        if merge.mode != "none":
            n += len(merge.lambdas) * (epochs if merge.epochs == "all" else 1)
    return n


def estimate_run(params: dict[str, Any], tokens_per_second: float = TOKENS_PER_SECOND,
                 budget_fraction: float = BUDGET_FRACTION) -> RunEstimate:
    """The estimate of an alignment run's parameters (the protocol's values filled in, as the pipeline does)."""
    from safetax.protocols import resolve_protocol

    # Safety sampling left out of ``params`` is the protocol's, as the pipeline's -1 defaults are.
    unset = {"safety_temperature": -1.0, "safety_top_p": -1.0}
    p = resolve_protocol(str(params.get("protocol") or "seeds"), unset | dict(params))
    safety = SamplingConfig(temperature=float(p["safety_temperature"]), top_p=float(p["safety_top_p"]),
                            max_new_tokens=int(p["safety_max_new_tokens"]))
    reasoning = SamplingConfig(temperature=float(p["reasoning_temperature"]), top_p=float(p["reasoning_top_p"]),
                               n=int(p["reasoning_samples"]), max_new_tokens=int(p["reasoning_max_new_tokens"]))
    loads = set_loads([EvalSet.from_dict(dict(e)) for e in p["eval_sets"]], safety, reasoning)
    return estimate(loads, evaluated_checkpoints(p["methods"], int(p.get("epochs") or 0)), budget_fraction, tokens_per_second,
                    int(p.get("tensor_parallel_size") or 1), int(p.get("eval_shards") or 1))


def estimate_audit(params: dict[str, Any], tokens_per_second: float = TOKENS_PER_SECOND,
                   budget_fraction: float = BUDGET_FRACTION) -> RunEstimate:
    """The estimate of one audited checkpoint under an audit's parameters (its profile's eval sets and sampling): an
    audit run costs this once per new checkpoint it finds, plus once for the baseline model the first time."""
    from safetax.audit.profiles import resolve_profile

    custom = params.get("custom_profile") or None
    prof = resolve_profile(str(params.get("profile") or "nightly"), dict(custom) if custom else None)
    safety = SamplingConfig(max_new_tokens=prof.safety_max_new_tokens)
    reasoning = SamplingConfig(temperature=prof.reasoning_temperature, top_p=prof.reasoning_top_p, n=prof.reasoning_samples,
                               max_new_tokens=prof.reasoning_max_new_tokens)
    return estimate(set_loads(prof.eval_sets, safety, reasoning), 1, budget_fraction, tokens_per_second,
                    int(params.get("tensor_parallel_size") or 1), int(params.get("eval_shards") or 1))
