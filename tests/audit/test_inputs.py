"""audit-plan checks the run's other inputs as the alignment plan does, before any claim or GPU task: the judge
settings, the profile's eval data (a missing benchmark directory) and that the judge and baseline models can be
reached. Errors name the parameter and its value. The KFP component passes the pipeline's judge parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safetax.audit.inputs import AuditJudge, check_inputs
from safetax.audit.profiles import resolve_profile
from safetax.config import ConfigError
from safetax.store import publish


def model(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (root / "model.safetensors").write_text("w")
    return root


def eval_files(tmp_path: Path) -> dict:
    (tmp_path / "harmful.jsonl").write_text("".join(json.dumps({"prompt": f"p{i}"}) + "\n" for i in range(3)))
    (tmp_path / "arith.jsonl").write_text("".join(json.dumps({"problem": f"{i}+1", "answer": str(i + 1)}) + "\n" for i in range(3)))
    return {"eval_sets": [{"name": "demo-harmful", "kind": "safety", "uri": str(tmp_path / "harmful.jsonl")},
                          {"name": "demo-arith", "kind": "reasoning", "uri": str(tmp_path / "arith.jsonl")}]}


def test_missing_benchmark_data_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFETAX_DATA_DIR", str(tmp_path / "no-data"))
    with pytest.raises(ConfigError) as e:
        check_inputs(resolve_profile("nightly"), "", AuditJudge(judge_name="refusal"))
    errors = e.value.errors
    assert len(errors) == 6  # every set of the profile, at once
    assert errors[0].startswith("profile 'nightly': eval_sets[0]: strongreject-small: ")
    assert f"{tmp_path / 'no-data'}/strongreject/strongreject_small_dataset.csv does not exist" in errors[0]


def test_the_shipped_profiles_pass_with_the_benchmark_data(data_dir: Path) -> None:
    for name in ("nightly", "weekly"):
        check_inputs(resolve_profile(name), "", AuditJudge(judge_name="refusal"))


def test_unreachable_models_and_bad_judge_settings_are_named(tmp_path: Path) -> None:
    profile = resolve_profile("custom", eval_files(tmp_path))
    judge = AuditJudge(judge_name="llama-guard", judge_model=str(tmp_path / "guard"), judge_mode="sample",
                       equivalence_model=str(tmp_path / "equiv"))
    with pytest.raises(ConfigError) as e:
        check_inputs(profile, str(tmp_path / "base"), judge)
    text = str(e.value)
    assert "`judge_mode` must be one of" in text and "got 'sample'" in text
    for name, path in (("judge_model", "guard"), ("equivalence_model", "equiv"), ("baseline_model", "base")):
        assert f"cannot be reached: {name}: {str(tmp_path / path)!r} does not exist" in text
    with pytest.raises(ConfigError, match="`judge_name` must be one of"):
        check_inputs(profile, "", AuditJudge(judge_name="gpt-judge"))
    check_inputs(profile, str(model(tmp_path / "base")), AuditJudge("llama-guard", str(model(tmp_path / "guard"))))


def test_an_unreachable_s3_judge_is_named(tmp_path: Path, s3_env) -> None:
    profile = resolve_profile("custom", eval_files(tmp_path))
    publish(model(tmp_path / "guard"), "s3://audit-inputs/models/guard")
    check_inputs(profile, "", AuditJudge("llama-guard", "s3://audit-inputs/models/guard"))
    with pytest.raises(ConfigError, match=r"judge_model.*s3://audit-inputs/models/no-guard"):
        check_inputs(profile, "", AuditJudge("llama-guard", "s3://audit-inputs/models/no-guard"))


def run_component(tmp_path: Path, **kw: object) -> int:
    """The audit-plan component's Python body, with its output artifact in a run's folder."""
    from kfp import dsl

    from safetax.runner.components.audit import audit_plan

    params = {"audit_name": "nightly", "store_uri": str(tmp_path / "store"), "checkpoint_prefix": str(tmp_path / "ckpts"),
              "checkpoints": [], "profile": "custom", "custom_profile": eval_files(tmp_path), "thresholds": {},
              "baseline": "", "baseline_model": "", "audit_schedule": "", "promote": False, "max_attempts": 3,
              "judge_name": "refusal", "judge_model": "meta-llama/Llama-Guard-3-8B", "judge_mode": "logit",
              "judge_scope": "answer", "equivalence_model": ""} | kw
    out = tmp_path / "runs" / "local-run" / "audit-plan" / "plan"
    return audit_plan.python_func(**params, plan=dsl.Dataset(name="plan", uri=str(out)))


def test_the_component_checks_the_inputs_before_any_claim(tmp_path: Path) -> None:
    publish(model(tmp_path / "src" / "ckpt-a"), str(tmp_path / "ckpts" / "ckpt-a"))
    with pytest.raises(ConfigError, match=rf"cannot be reached: judge_model: '{tmp_path / 'guard'}' does not exist"):
        run_component(tmp_path, judge_name="llama-guard", judge_model=str(tmp_path / "guard"))
    assert not (tmp_path / "store").exists()  # no claim taken
    with pytest.raises(ConfigError, match="`max_attempts` must be a whole number of failed runs >= 1"):
        run_component(tmp_path, max_attempts=0)
    assert run_component(tmp_path) == 1
    [claim] = (tmp_path / "store" / "audits" / "nightly" / "claims").glob("*.json")
    assert json.loads(claim.read_text())["checkpoint"] == "ckpt-a"


def test_engine_typos_fail_the_plan_before_any_claim(tmp_path: Path) -> None:
    """A typo in the evaluation parameters would fail every GPU pod after the claims, and count a failed attempt of
    every new checkpoint each night until they are given up: the plan rejects it, naming each parameter."""
    publish(model(tmp_path / "src" / "ckpt-a"), str(tmp_path / "ckpts" / "ckpt-a"))
    bad = {"generation_backend": "vlm", "generate_gpus": "two", "eval_shards": 0, "generation_batch_size": 0,
           "generation_cache": "Off", "tensor_parallel_size": 4, "seed": -1}
    with pytest.raises(ConfigError) as e:
        run_component(tmp_path, **bad)
    named = {m.split("`")[1] if m.startswith("`") else m.split(":")[0] for m in e.value.errors}
    assert named == set(bad) - {"tensor_parallel_size"}  # tp is checked against the GPUs on vllm only
    assert not (tmp_path / "store").exists()  # no claim taken, no attempt counted
    with pytest.raises(ConfigError, match=r"`tensor_parallel_size` must be at most generate_gpus \(2\)"):
        run_component(tmp_path, generation_backend="vllm", generate_gpus="2", tensor_parallel_size=4)
    assert run_component(tmp_path, generation_backend="vllm", generate_gpus="2", tensor_parallel_size=2, eval_shards=2) == 1


def test_the_pipeline_passes_its_judge_parameters_to_audit_plan() -> None:
    from safetax.platform import PlatformConfig
    from safetax.runner.pipelines.audit import build_audit_pipeline

    spec = build_audit_pipeline(PlatformConfig()).pipeline_spec
    assert spec.root.input_definitions.parameters["max_attempts"].default_value.number_value == 3
    tasks = {k: v for k, v in spec.root.dag.tasks.items()}
    [exit_dag] = [spec.components[t.component_ref.name] for t in tasks.values() if t.component_ref.name.startswith("comp-exit-handler")]
    plan = exit_dag.dag.tasks["audit-plan"].inputs.parameters
    for name in ("judge_name", "judge_model", "judge_mode", "judge_scope", "equivalence_model", "max_attempts",
                 "generation_backend", "generation_batch_size", "tensor_parallel_size", "generate_gpus", "judge_gpus",
                 "eval_shards", "generation_cache", "seed"):
        assert plan[name].component_input_parameter == f"pipelinechannel--{name}", name
