"""The plan's checks of the evaluation: the eval sets (each spec parsed and its data file read), the engine
parameters (:mod:`safetax.stages.engine_params`), the sampling and judge settings, and the generate stage's own
config of them (distinct set names, each set's samples valid for its sampling), so that what the generate and
judge pods would refuse fails the run's first CPU task instead."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from safetax.config import Checks, ConfigError

if TYPE_CHECKING:
    from safetax.stages.plan import AlignmentParams


def _errors_of(e: Exception) -> list[str]:
    return list(e.errors) if isinstance(e, ConfigError) else [str(e)]


# What one entry of `eval_sets` (or `rpsa_corpus`) looks like, for errors about one that is not a mapping.
EVAL_SET_FORM = ('a mapping: a registered benchmark {"benchmark": "strongreject"} or a plain file {"name": "mine", '
                 '"kind": "safety"|"overrefusal"|"reasoning", "uri": "data.jsonl"}')
# The parameters each sampling config is built from (a protocol fills them in).
REASONING_SAMPLING = ("reasoning_samples", "reasoning_temperature", "reasoning_top_p", "reasoning_max_new_tokens")
SAFETY_SAMPLING = ("safety_temperature", "safety_top_p", "safety_max_new_tokens")
SAMPLING_INPUTS = {"safety sampling": SAFETY_SAMPLING, "reasoning sampling": REASONING_SAMPLING}
# The run parameter behind each SamplingConfig field, so an error names what the user set.
_PARAMETER_OF = {"safety sampling": {"temperature": "safety_temperature", "top_p": "safety_top_p",
                                     "max_new_tokens": "safety_max_new_tokens"},
                 "reasoning sampling": {"temperature": "reasoning_temperature", "top_p": "reasoning_top_p",
                                        "n": "reasoning_samples", "max_new_tokens": "reasoning_max_new_tokens"}}


def read_eval_set(raw: Any, c: Checks, where: str) -> tuple[Any, int]:
    """(EvalSet or None, its prompt count): the spec parsed and its data file read and every row checked (a missing
    file or benchmark directory, a missing column, is found here on a CPU); problems go to ``c`` under ``where``."""
    from safetax.data.eval_sets import EvalSet, load_eval_set

    if not isinstance(raw, dict):
        c.fail(where, raw, EVAL_SET_FORM)
        return None, 0
    try:
        es = EvalSet.from_dict(dict(raw))
    except (ConfigError, TypeError, ValueError) as e:
        c.errors += [f"{where}: {m}" for m in _errors_of(e)]
        return None, 0
    try:
        return es, len(load_eval_set(es)[0])
    except (ConfigError, TypeError, ValueError, OSError, KeyError) as e:
        c.errors += [f"{where}: {m}" for m in _errors_of(e)]
        return es, 0


def eval_set_prompts(eval_sets: list[dict[str, Any]], c: Checks, where: str = "eval_sets") -> int:
    """How many prompts the eval sets hold, each set's data file read and parsed (:func:`read_eval_set`); the
    problems go to ``c`` as ``<where>[i]: ...``. Shared with the audit's plan."""
    return sum(read_eval_set(raw, c, f"{where}[{i}]")[1] for i, raw in enumerate(eval_sets))


def samplings(p: AlignmentParams, c: Checks, unset: frozenset[str]) -> dict[str, Any]:
    """The run's safety and reasoning SamplingConfig (each checked; one the protocol should have filled is skipped)."""
    from safetax.generation.base import SamplingConfig

    build = {"safety sampling": lambda: SamplingConfig(temperature=p.safety_temperature, top_p=p.safety_top_p,
                                                       max_new_tokens=p.safety_max_new_tokens, seed=p.seed),
             "reasoning sampling": lambda: SamplingConfig(temperature=p.reasoning_temperature, top_p=p.reasoning_top_p,
                                                          n=p.reasoning_samples, max_new_tokens=p.reasoning_max_new_tokens,
                                                          seed=p.seed)}
    out = {}
    for name, make in build.items():
        if unset.intersection(SAMPLING_INPUTS[name]):
            continue
        try:
            out[name] = make()
        except (ConfigError, TypeError, ValueError) as e:
            c.errors += [f"{name}: {_as_parameter(m, _PARAMETER_OF[name])}" for m in _errors_of(e)]
    return out


def _as_parameter(message: str, names: dict[str, str]) -> str:
    """A SamplingConfig message ("`top_p` must be ...") with the field named as the run parameter it came from.

    >>> _as_parameter("`top_p` must be in (0, 1], got 0.0", {"top_p": "safety_top_p"})
    '`safety_top_p` must be in (0, 1], got 0.0'
    """
    for field_name, param in names.items():
        if message.startswith(f"`{field_name}` "):
            return f"`{param}`{message[len(field_name) + 2:]}"
    return message


def check_evaluation(p: AlignmentParams, c: Checks, unset: frozenset[str] = frozenset()) -> None:
    """Eval sets (read), engine parameters, sampling, judge, and the generate stage's own config of them."""
    from safetax.stages.engine_params import EngineParams, check_engine
    from safetax.stages.generate import GenerateConfig
    from safetax.stages.judge import JudgeConfig

    sets: list[Any] = []
    prompts = 0
    if not isinstance(p.eval_sets, list) or not p.eval_sets:
        c.fail("eval_sets", p.eval_sets, 'a non-empty list, e.g. [{"benchmark": "strongreject"}, {"benchmark": "math500"}]')
    else:
        read = [read_eval_set(raw, c, f"eval_sets[{i}]") for i, raw in enumerate(p.eval_sets)]
        sets, prompts = [es for es, _ in read], sum(n for _, n in read)
    check_engine(EngineParams(p.generation_backend, p.generation_batch_size, p.tensor_parallel_size, p.generate_gpus,
                              p.judge_gpus, p.eval_shards, p.generation_cache, p.seed), c, prompts)
    sampling = samplings(p, c, unset)
    if len(sampling) == 2 and sets and None not in sets:  # the generate pods' own check: distinct names, per-set sampling
        try:  # backend, batch size and tensor parallelism are check_engine's
            GenerateConfig(model_uri=p.base_model_uri, eval_sets=tuple(sets), safety_sampling=sampling["safety sampling"],
                           reasoning_sampling=sampling["reasoning sampling"])
        except ConfigError as e:
            c.errors += e.errors
    if not unset.intersection(("judge_name", "judge_model", "judge_mode", "judge_scope")):
        try:
            JudgeConfig(judge=p.judge_name, judge_model=p.judge_model, mode=p.judge_mode, judge_scope=p.judge_scope)
        except (ConfigError, TypeError, ValueError) as e:
            c.errors += [f"judge: {m}" for m in _errors_of(e)]
    c.positive("max_length", p.max_length)
    if "analysis_k" not in unset:
        c.positive("analysis_k", p.analysis_k)
    n = p.train_nodes  # KFP hands whole numbers over as floats (1.0)
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not float(n).is_integer() or n < 1:
        c.fail("train_nodes", n, "a whole number of nodes >= 1 (1 = one pod)")
    elif n > 1 and p.trainjob_platform is not None:
        from safetax.training.multinode import REQUIRED

        missing = [k for k in REQUIRED if not p.trainjob_platform.get(k)]
        if missing:
            c.fail("train_nodes", n, "1 with this pipeline: it was compiled for a platform without TrainJob settings "
                                     f"({', '.join('trainjob_' + k if k != 'image' else k for k in missing)} unset); set "
                                     "trainjob_volume_claim and trainjob_volume_path in the platform file and compile "
                                     "with it (safetax compile --platform FILE, or the chart's registrar)")
