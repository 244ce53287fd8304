"""What an audit run reads besides its checkpoints, checked on a CPU before any claim or GPU task.

The judge settings, the evaluation engine's parameters (:mod:`safetax.stages.engine_params`: a typo there would
otherwise fail every GPU pod after the checkpoints were claimed, and count a failed attempt of each), the profile's
eval data (every data file read and parsed: a missing benchmark
directory is found here) and the reachability of the judge, equivalence and baseline models, with
the alignment plan's own checks (:func:`safetax.stages.plan.eval_set_prompts`,
:func:`~safetax.stages.plan.check_reachable_inputs`). All problems are reported at once, each naming
the parameter and its value.
"""

from __future__ import annotations

from dataclasses import dataclass

from safetax.audit.profiles import AuditProfile
from safetax.config import Checks, ConfigError
from safetax.stages.engine_params import EngineParams, check_engine


@dataclass(frozen=True)
class AuditJudge:
    """The audit pipeline's judge parameters, as its plan step receives them."""

    judge_name: str = "llama-guard"
    judge_model: str = "meta-llama/Llama-Guard-3-8B"
    judge_mode: str = "logit"
    judge_scope: str = "answer"
    equivalence_model: str = ""


def check_inputs(profile: AuditProfile, baseline_model: str, judge: AuditJudge, engine: EngineParams | None = None) -> None:
    """Raise a ConfigError listing every problem: the judge settings, the engine parameters, the profile's eval data,
    and the judge, equivalence and baseline models that cannot be reached from here (nothing is downloaded)."""
    from safetax.stages.judge import JudgeConfig
    from safetax.stages.plan import check_reachable_inputs, eval_set_prompts, judge_inputs

    c = Checks("audit inputs")
    try:
        JudgeConfig(judge=judge.judge_name, judge_model=judge.judge_model, mode=judge.judge_mode, judge_scope=judge.judge_scope)
    except ConfigError as e:  # JudgeConfig's keys, as the pipeline names them
        renamed = {"`judge`": "`judge_name`", "`mode`": "`judge_mode`"}
        c.errors += [_rename(m, renamed) for m in e.errors]
    prompts = eval_set_prompts(profile.to_dict()["eval_sets"], c, where=f"profile {profile.name!r}: eval_sets")
    check_engine(engine or EngineParams(), c, prompts)
    uris = judge_inputs(judge.judge_name, judge.judge_model, judge.equivalence_model)
    if baseline_model:
        uris.append(("baseline_model", baseline_model, "model"))
    check_reachable_inputs(uris, c)
    c.raise_if_any()


def _rename(message: str, names: dict[str, str]) -> str:
    for old, new in names.items():
        if message.startswith(old):
            return new + message[len(old):]
    return message
