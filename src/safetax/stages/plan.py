"""The alignment run's first step: validate everything, resolve defaults once, and list the methods.

A cluster run costs GPU-hours, so every mistake a run can have is found here, on a CPU, before any
model loads: each method config (a typo in one of five methods is named with its index), the eval
sets and their data files and the generate stage's config of them, the engine parameters and the
generation cache, the judge, the sampling settings, RPSA's corpus file, the gate's thresholds, and
that every model and data URI can be reached (a gated hub model without ``HF_TOKEN`` fails here,
not after training). Then what can be read cheaply is read (:mod:`safetax.stages.plan_inputs`):
the refusal rows, and the base model's config.json, against which every method's targets, layers
and SVD ranks are checked. All problems are reported at once; an unknown ``protocol`` is one
problem, not one per value it would have filled in.

The output is one item per method: its fully resolved training config (defaults of the run filled
in), its merge config, and, for RPSA methods, the corpus and Fisher settings. The pipeline fans out
over these items; each stage of a method reads only its item, so defaults are resolved in one place.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from safetax.config import Checks, ConfigError
from safetax.stages.plan_evaluation import REASONING_SAMPLING, check_evaluation, read_eval_set
from safetax.stages.plan_evaluation import eval_set_prompts  # noqa: F401 - the audit's plan imports it from here

log = logging.getLogger(__name__)
PLAN = "plan.json"
# Method names become path components (<store>/<run>/<stage>/<name>) and metric labels.
LABEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class AlignmentParams:
    """The alignment pipeline's parameters, as the plan step receives them (see the pipeline's docstring)."""

    base_model_uri: str
    refusal_data_uri: str
    eval_sets: list[dict[str, Any]]
    methods: list[dict[str, Any]]
    epochs: int = 0
    seed: int = 42
    max_length: int = 1024
    judge_name: str = "refusal"
    judge_model: str = "meta-llama/Llama-Guard-3-8B"
    judge_mode: str = "logit"
    judge_scope: str = "answer"
    equivalence_model: str = ""
    safety_max_new_tokens: int = 1024
    # -1 = the protocol's (seeds and lora-paper: greedy 0 / 1; rpsa-paper: 0.6 / 0.95), so a caller that does not pass
    # them gets the protocol's sampling rather than greedy answers under a protocol that samples.
    safety_temperature: float = -1.0
    safety_top_p: float = -1.0
    reasoning_samples: int = 8
    reasoning_temperature: float = 0.6
    reasoning_top_p: float = 0.95
    reasoning_max_new_tokens: int = 32768
    generation_batch_size: int = 32
    generation_backend: str = "hf"
    tensor_parallel_size: int = 1
    store_uri: str = ""
    analysis_k: int = 16
    rpsa_corpus: dict[str, Any] = field(default_factory=lambda: {"benchmark": "math500"})
    rpsa_corpus_size: int = 0
    rpsa_keep: str = "all"
    rpsa_validate: bool = False
    fisher_estimator: str = "sequence"
    fisher_tokens_per_sequence: int = 32
    train_gpus: int | str = 1  # strings in the pipeline (KFP resolves accelerator counts from strings)
    generate_gpus: int | str = 1
    judge_gpus: int | str = 1
    gate_thresholds: dict[str, Any] = field(default_factory=dict)
    protocol: str = "seeds"  # fills in every parameter left unset (safetax.protocols.UNSET); explicit values win
    train_nodes: int = 1  # > 1: a Kubeflow Trainer TrainJob on train_nodes x train_gpus GPUs
    eval_shards: int = 1  # > 1: every model's prompts split over that many evaluation chains (safetax.shards)
    generation_cache: str = ""  # "" = <store_uri>/cache, "off" = none, else a root URI (safetax.gencache)
    # The platform's TrainJob settings, compiled into the pipeline (PlatformConfig.trainjob): train_nodes > 1 needs
    # them; None (a plan outside a compiled pipeline) leaves that to the train task.
    trainjob_platform: dict[str, Any] | None = None


def _errors_of(e: Exception) -> list[str]:
    return list(e.errors) if isinstance(e, ConfigError) else [str(e)]


def method_items(p: AlignmentParams, c: Checks, unset: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """One resolved item per method; problems go to ``c`` under ``methods[i]``.

    An item: ``label`` (the method's name), ``method`` (full | lora | rpsa), ``config`` (the method config with the
    run's seed and epochs filled in), ``merges`` (a merge stage has work), ``is_rpsa`` and ``rpsa`` (corpus and
    Fisher settings of an RPSA method, else empty)."""
    from safetax.stages.merge import MergeConfig
    from safetax.stages.train import TrainConfig, check_data_parallel

    if not isinstance(p.methods, list) or not p.methods:
        c.fail("methods", p.methods, "a non-empty list of method configs, e.g. [{\"method\": \"lora\", \"name\": \"lora-r4\"}]")
        return []
    items: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(p.methods):
        where = f"methods[{i}]"
        if not isinstance(raw, dict):
            c.fail(where, raw, "a mapping such as {\"method\": \"lora\", \"name\": \"lora-r4\"}")
            continue
        defaults: dict[str, Any] = {"seed": p.seed} | ({"epochs": p.epochs} if p.epochs else {})
        resolved = defaults | dict(raw)
        try:
            cfg = TrainConfig.from_dict(resolved)
            merge = MergeConfig.from_method(dict(raw))
            check_data_parallel(cfg, max(1, int(p.train_gpus)))  # 0 = a CPU train stage: one process
        except (ConfigError, TypeError, ValueError) as e:
            c.errors += [f"{where} ({raw.get('name') or raw.get('method', '?')}): {m}" for m in _errors_of(e)]
            continue
        label = cfg.label
        if not LABEL.match(label):
            c.fail(f"{where}.name", label, "a label of lowercase letters, digits, '.', '_' and '-' (<= 63 chars, no '/'): "
                                           "it names the method's folders and metrics")
        if label in seen:
            c.fail(f"{where}.name", label, f"unique: methods[{seen[label]}] has the same name")
        seen[label] = i
        rpsa = _rpsa_settings(p, c, f"{where} ({label})", unset) if cfg.method == "rpsa" else {}
        # `config` is what TrainConfig.from_dict and MergeConfig.from_method read in the method's stages.
        items.append({"label": label, "method": cfg.method, "config": resolved, "merges": merge.mode != "none",
                      "is_rpsa": cfg.method == "rpsa", "rpsa": rpsa})
    return items


def _rpsa_settings(p: AlignmentParams, c: Checks, where: str, unset: frozenset[str]) -> dict[str, Any]:
    """An RPSA method's Fisher and corpus settings (the Fisher's checked unless the protocol should have set them)."""
    from safetax.stages.fisher import FisherConfig

    if not unset.intersection(("fisher_estimator", "fisher_tokens_per_sequence")):
        try:
            FisherConfig(keep=p.rpsa_keep, validate=p.rpsa_validate, estimator=p.fisher_estimator,
                         tokens_per_sequence=p.fisher_tokens_per_sequence)
        except ConfigError as e:
            c.errors += [f"{where}: {m}" for m in e.errors]
    corpus = dict(p.rpsa_corpus) if isinstance(p.rpsa_corpus, dict) else p.rpsa_corpus  # not a mapping: _check_rpsa says so
    return {"keep": p.rpsa_keep, "validate": p.rpsa_validate, "estimator": p.fisher_estimator,
            "tokens_per_sequence": p.fisher_tokens_per_sequence, "corpus": {
                "eval_set": corpus, "n": p.rpsa_corpus_size, "seed": p.seed, "batch_size": p.generation_batch_size,
                "temperature": p.reasoning_temperature, "top_p": p.reasoning_top_p, "max_new_tokens": p.reasoning_max_new_tokens}}


def _check_rpsa(p: AlignmentParams, items: list[dict[str, Any]], c: Checks, unset: frozenset[str] = frozenset()) -> None:
    """RPSA's corpus: its size, its spec and data file (read), and the corpus stage's config."""
    from safetax.generation.base import SamplingConfig
    from safetax.stages.corpus import CorpusConfig

    rpsa = [it["label"] for it in items if it["is_rpsa"]]
    if not rpsa:
        return
    if not p.rpsa_corpus_size and "rpsa_corpus_size" not in unset:
        c.fail("rpsa_corpus_size", p.rpsa_corpus_size,
               f"> 0 for RPSA methods ({', '.join(rpsa)}): their Fisher is computed on the base model's own answers to that many "
               "problems (paper: 100)")
    es, _ = read_eval_set(p.rpsa_corpus, c, "rpsa_corpus")
    if es is None or unset.intersection(REASONING_SAMPLING):
        return
    try:
        CorpusConfig(eval_set=es, n=p.rpsa_corpus_size, seed=p.seed,
                     sampling=SamplingConfig(temperature=p.reasoning_temperature, top_p=p.reasoning_top_p,
                                             max_new_tokens=p.reasoning_max_new_tokens, seed=p.seed))
    except (ConfigError, TypeError, ValueError) as e:
        c.errors += [f"rpsa_corpus: {m}" for m in _errors_of(e)]


def _check_store_uri(uri: str, c: Checks) -> None:
    from safetax.store import StoreError
    from safetax.store.uri import parse_store_uri

    try:
        parse_store_uri(uri, "store_uri")  # the store's own parser: what it accepts, the run can write to
    except StoreError as e:
        c.errors.append(str(e))


def judge_inputs(judge_name: str, judge_model: str, equivalence_model: str = "") -> list[tuple[str, str, str]]:
    """The (parameter, URI, kind) of the models a judge setting reads: the guard model (llama-guard only) and the
    optional math-equivalence model. Shared with the audit's plan."""
    uris = [("judge_model", judge_model, "model")] if judge_name == "llama-guard" else []
    return uris + ([("equivalence_model", equivalence_model, "model")] if equivalence_model else [])


def check_reachable_inputs(uris: list[tuple[str, str, str]], c: Checks) -> None:
    """Check that each (parameter, URI, kind: model | dataset) can be read from here, nothing downloaded
    (:func:`safetax.store.check_reachable`); each problem goes to ``c``, naming the parameter and the URI. Shared with
    the audit's plan."""
    from safetax.store import check_reachable

    for name, uri, kind in uris:
        if not uri:
            c.fail(name, uri, "a directory, s3:// URI or hub id")
            continue
        try:
            check_reachable(uri, name, repo_type=kind)
        except Exception as e:  # noqa: BLE001 - every failure is the user's to read; the message names the parameter and URI
            c.errors.append(f"cannot be reached: {e}")


def _check_reachable(p: AlignmentParams, c: Checks) -> None:
    check_reachable_inputs([("base_model_uri", p.base_model_uri, "model"), ("refusal_data_uri", p.refusal_data_uri, "dataset"),
                            *judge_inputs(p.judge_name, p.judge_model, p.equivalence_model)], c)


def _resolve(p: AlignmentParams, c: Checks) -> tuple[AlignmentParams, frozenset[str]]:
    """The run with the protocol's values for what the user left unset, and the names the protocol should have set
    but could not (an unknown protocol: reported once; those names hold the seeds' values only as placeholders, and
    the checks that read them are skipped, so a typo is not followed by errors about values nobody set)."""
    from dataclasses import replace

    from safetax.protocols import DEFAULT_PROTOCOL, UNSET, resolve_protocol

    try:
        return replace(p, **resolve_protocol(p.protocol, {k: v for k, v in asdict(p).items() if k != "protocol"})), frozenset()
    except ConfigError as e:
        c.errors += _errors_of(e)
    unset = {k: getattr(p, k) for k, sentinel in UNSET.items() if getattr(p, k) == sentinel}
    return replace(p, **resolve_protocol(DEFAULT_PROTOCOL, unset)), frozenset(unset)


def _check_inputs(p: AlignmentParams, items: list[dict[str, Any]], c: Checks, unset: frozenset[str]) -> None:
    """Reachability of every input, then what can be read cheaply: the refusal rows, the model's architecture."""
    from safetax.stages.plan_inputs import check_against_model, check_refusal_data

    _check_reachable(p, c)
    if c.errors:
        return
    check_refusal_data(p.refusal_data_uri, c)
    check_against_model(p.base_model_uri, items, c, analysis_k=None if "analysis_k" in unset else p.analysis_k,
                        vllm_tensor_parallel=p.tensor_parallel_size if p.generation_backend == "vllm" else None)


def plan(p: AlignmentParams, out_dir: Path | None = None) -> list[dict[str, Any]]:
    """Validate the run (all problems at once, as a :class:`ConfigError`) and return the method items."""
    from dataclasses import replace

    from safetax.stages import gate
    from safetax.stages.engine_params import gpu_count

    c = Checks("alignment run parameters")
    p, unset = _resolve(p, c)  # then every check on the resolved run
    p = replace(p, train_gpus=gpu_count(c, "train_gpus", p.train_gpus))
    items = method_items(p, c, unset)
    check_evaluation(p, c, unset)  # also generate_gpus and judge_gpus
    p = replace(p, **{name: gpu_count(Checks(name), name, getattr(p, name)) for name in ("generate_gpus", "judge_gpus")})
    _check_rpsa(p, items, c, unset)
    try:
        gate.check(p.gate_thresholds, p.store_uri)
    except (ConfigError, TypeError, ValueError) as e:
        c.errors += [f"gate_thresholds: {m}" for m in _errors_of(e)]
    if p.store_uri:
        _check_store_uri(p.store_uri, c)
    if not c.errors:  # network checks and reads of the inputs last, and only for a run that is otherwise valid
        _check_inputs(p, items, c, unset)
    c.raise_if_any()
    if out_dir is not None:
        from safetax.store import atomic_dir, write_json

        with atomic_dir(out_dir) as tmp:
            write_json(tmp / PLAN, {"params": asdict(p), "methods": items})
    log.info("plan: %d method(s) (%s), %d eval set(s)", len(items), ", ".join(it["label"] for it in items), len(p.eval_sets))
    return items
