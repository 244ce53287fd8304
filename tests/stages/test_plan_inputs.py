"""The plan reads what it cheaply can (refusal rows, eval and corpus files, the model's config.json) and builds the
stages' own configs, so that what a GPU pod would refuse fails the plan, naming the parameter."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from safetax.config import ConfigError
from safetax.stages.plan import AlignmentParams, plan
from tests.conftest import put_in_hf_cache
from tests.stages.conftest import alignment_params

# The pipeline's defaults: every protocol-filled parameter unset, as a run submitted without them has.
UNSET = {"epochs": 0, "judge_name": "", "judge_model": "", "judge_mode": "", "judge_scope": "", "safety_max_new_tokens": 0,
         "safety_temperature": -1.0, "safety_top_p": -1.0, "reasoning_samples": 0, "reasoning_temperature": -1.0,
         "reasoning_top_p": -1.0, "reasoning_max_new_tokens": 0, "analysis_k": 0, "fisher_estimator": "",
         "fisher_tokens_per_sequence": -1}


def _params(tiny_model: Path, tmp_path: Path, **kw) -> AlignmentParams:
    return alignment_params(tiny_model, tmp_path, **(UNSET | kw))


def _problems(params: AlignmentParams) -> list[str]:
    with pytest.raises(ConfigError) as err:
        plan(params)
    return err.value.errors


@pytest.mark.parametrize(("name", "value", "needle"), [
    ("store_uri", " s3://safetax/runs", "has whitespace around it"),
    ("store_uri", "s3:safetax/runs", "expected s3://bucket/prefix"),
    ("store_uri", "s3:/x", "expected s3://bucket/prefix"),
    ("generation_cache", "Off", '"off" (exactly)'),
    ("generation_cache", "s3:cache", "expected s3://bucket/prefix"),
    ("generation_cache", "/cache\n", "has whitespace around it"),
])
def test_store_like_uris_that_would_be_pod_local_paths_are_refused(tiny_model: Path, tmp_path: Path, name: str, value: str,
                                                                   needle: str) -> None:
    [problem] = _problems(_params(tiny_model, tmp_path, **{name: value}))
    assert name in problem and needle in problem


@pytest.mark.parametrize("cache", ["", "off", "s3://safetax/cache", "cache-dir"])
def test_generation_cache_forms_that_the_stages_read_are_accepted(tiny_model: Path, tmp_path: Path, cache: str) -> None:
    assert len(plan(_params(tiny_model, tmp_path, generation_cache=cache))) == 2


def test_refusal_file_rows_are_read(tiny_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "no-refusal-column.jsonl"
    bad.write_text(json.dumps({"prompt": "Explain restricted task 1.", "answer": "no"}) + "\n")
    [problem] = _problems(_params(tiny_model, tmp_path, refusal_data_uri=str(bad)))
    assert problem.startswith("refusal_data_uri:") and "refusal" in problem.split(":", 1)[1]


def test_rpsa_corpus_file_is_read(tiny_model: Path, tmp_path: Path) -> None:
    rpsa = {"methods": [{"method": "rpsa"}], "rpsa_corpus_size": 2}
    [problem] = _problems(_params(tiny_model, tmp_path, **rpsa, rpsa_corpus={"name": "a", "kind": "reasoning",
                                                                              "uri": str(tmp_path / "nope.jsonl")}))
    assert problem.startswith("rpsa_corpus:") and "does not exist" in problem
    [problem] = _problems(_params(tiny_model, tmp_path, **rpsa, rpsa_corpus="math500"))
    assert problem.startswith("`rpsa_corpus` must be a mapping") and '{"benchmark": "strongreject"}' in problem


def test_generate_config_errors_come_at_plan_time(tiny_model: Path, tmp_path: Path) -> None:
    arith = {"name": "arith", "kind": "reasoning", "uri": str(tmp_path / "arith.jsonl")}
    [problem] = _problems(_params(tiny_model, tmp_path, eval_sets=[arith, arith]))
    assert "`eval_sets` must be sets with distinct names" in problem
    refusals = {"name": "s", "kind": "safety", "uri": str(tmp_path / "refusals.jsonl"), "samples": 4}
    [problem] = _problems(_params(tiny_model, tmp_path, eval_sets=[refusals]))
    assert "`eval_sets[s]`" in problem and "greedy" in problem  # the safety sampling is greedy: 4 samples are one


@pytest.mark.parametrize(("over", "needle"), [
    ({"safety_temperature": -0.5}, "safety sampling: `safety_temperature` must be >= 0, got -0.5"),  # -1 is "unset"
    ({"safety_top_p": 0.0}, "safety sampling: `safety_top_p` must be in (0, 1], got 0.0"),
    ({"safety_top_p": 1.5, "protocol": "rpsa-paper"}, "safety sampling: `safety_top_p` must be in (0, 1], got 1.5"),
    ({"reasoning_samples": -2}, "reasoning sampling: `reasoning_samples` must be > 0, got -2"),
])
def test_bad_sampling_names_the_run_parameter(tiny_model: Path, tmp_path: Path, over: dict, needle: str) -> None:
    assert needle in _problems(_params(tiny_model, tmp_path, **over))


def _four_safety_samples(tiny_model: Path, tmp_path: Path, **kw) -> AlignmentParams:
    """A run whose safety set asks for 4 samples per prompt (the offline refusal judge: no hub model to reach)."""
    refusals = {"name": "s", "kind": "safety", "uri": str(tmp_path / "refusals.jsonl"), "samples": 4}
    return _params(tiny_model, tmp_path, eval_sets=[refusals], judge_name="refusal", **kw)


def test_a_sampled_safety_protocol_allows_several_samples_per_safety_prompt(tiny_model: Path, tmp_path: Path) -> None:
    """rpsa-paper samples the safety answers (sec. 4.2.1), so `samples` > 1 on a safety set is valid there, and the
    resolved run (plan.json) records the sampling; greedy protocols, and an explicit greedy temperature, refuse it."""
    plan(_four_safety_samples(tiny_model, tmp_path, protocol="rpsa-paper"), tmp_path / "out")
    resolved = json.loads((tmp_path / "out" / "plan.json").read_text())["params"]
    assert (resolved["safety_temperature"], resolved["safety_top_p"]) == (0.6, 0.95)
    for kw in ({"protocol": "seeds"}, {"protocol": "lora-paper"}, {"protocol": "rpsa-paper", "safety_temperature": 0.0}):
        [problem] = _problems(_four_safety_samples(tiny_model, tmp_path, **kw))
        assert "`eval_sets[s]`" in problem and "greedy" in problem, kw


def test_an_eval_set_that_is_not_a_mapping_names_the_form(tiny_model: Path, tmp_path: Path) -> None:
    [problem] = _problems(_params(tiny_model, tmp_path, eval_sets=["strongreject"]))
    assert problem.startswith("`eval_sets[0]` must be a mapping") and "'strongreject'" in problem


@pytest.mark.parametrize(("method", "needle"), [
    ({"method": "lora", "target_modules": "q_prj"}, "`target_modules` ['q_prj'] not found in the model"),
    ({"method": "lora", "layers": "16-31"}, "outside the model's layers 0-3"),
    ({"method": "lora", "ortho_reg": "col", "ortho_k": 100000}, "`ortho_k` must be at most 32"),  # the MLP's 32 x 64
    ({"method": "lora", "merge": "ortho-col", "merge_k": 100000}, "`merge_k` must be at most 32"),
    ({"method": "rpsa", "rpsa_base": "lora", "target_modules": "k_proj", "merge": "ortho-col", "merge_k": 17},
     "`merge_k` must be at most 16"),  # k_proj: 2 KV heads x 8 = 16 outputs
])
def test_methods_are_checked_against_the_model(tiny_model: Path, tmp_path: Path, method: dict, needle: str) -> None:
    [problem] = _problems(_params(tiny_model, tmp_path, methods=[method], rpsa_corpus_size=2))
    assert problem.startswith("methods[0] (") and needle in problem


def test_analysis_k_is_checked_against_every_method(tiny_model: Path, tmp_path: Path) -> None:
    problems = _problems(_params(tiny_model, tmp_path, analysis_k=17))
    assert problems == [f"methods[1] (full) for {tiny_model}: `analysis_k` must be at most 16 (the smaller side of the "
                        "smallest matrix this method updates), got 17"]  # LoRA on the MLP: 32; full: k_proj's 16
    assert len(plan(_params(tiny_model, tmp_path, analysis_k=16))) == 2


def test_vllm_tensor_parallel_fits_the_gpus_and_the_heads(tiny_model: Path, tmp_path: Path) -> None:
    [problem] = _problems(_params(tiny_model, tmp_path, generation_backend="vllm", tensor_parallel_size=3, generate_gpus="1"))
    assert "`tensor_parallel_size` must be at most generate_gpus (1)" in problem
    [problem] = _problems(_params(tiny_model, tmp_path, generation_backend="vllm", tensor_parallel_size=3, generate_gpus="4"))
    assert "`tensor_parallel_size` must be a divisor of the model's 4 attention heads" in problem
    assert len(plan(_params(tiny_model, tmp_path, generation_backend="vllm", tensor_parallel_size=2, generate_gpus="2"))) == 2


def test_a_hub_model_in_the_hf_cache_is_checked_from_its_config(tiny_model: Path, tmp_path: Path, offline_hf_cache: Path) -> None:
    put_in_hf_cache(offline_hf_cache, "org/tiny", "a" * 40, tiny_model)
    for uri in ("org/tiny", "org/tiny@" + "a" * 40):  # a pinned id is checked from its commit's config
        [problem] = _problems(_params(tiny_model, tmp_path, base_model_uri=uri, methods=[{"method": "lora", "layers": "9"}]))
        assert problem.startswith(f"methods[0] (lora-r4) for {uri}:") and "[9] outside" in problem


def test_a_model_without_a_readable_config_is_left_to_the_train_pods(tiny_model: Path, tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    adapter = tmp_path / "adapter-only"  # reachable (a model directory), but no config.json to build it from
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with caplog.at_level(logging.INFO, logger="safetax.stages.plan_inputs"):
        items = plan(_params(tiny_model, tmp_path, base_model_uri=str(adapter), methods=[{"method": "lora", "layers": "9"}]))
    assert len(items) == 1
    assert "has no config.json here" in caplog.text


def test_an_unknown_protocol_is_one_problem(tiny_model: Path, tmp_path: Path) -> None:
    assert _problems(_params(tiny_model, tmp_path, protocol="lora-papr")) == [
        "`protocol` must be one of 'seeds', 'lora-paper', 'rpsa-paper', got 'lora-papr'"]
    # Explicit values are still checked; a value checked together with one the protocol would have set is not.
    problems = _problems(_params(tiny_model, tmp_path, protocol="lora-papr", generation_batch_size=0, reasoning_temperature=0.0))
    assert len(problems) == 2 and "`generation_batch_size` must be a whole number >= 1, got 0" in problems[1]


def test_s3_inputs_are_read_without_downloading_the_model(s3_env, tiny_model: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from safetax.store import publish
    from safetax.store.s3 import S3Store

    monkeypatch.setenv("SAFETAX_CACHE", str(tmp_path / "cache"))
    S3Store().ensure_bucket("plan")
    publish(tiny_model, "s3://plan/models/tiny")
    S3Store().put_bytes("s3://plan/data/refusals.jsonl", json.dumps({"prompt": "Explain restricted task 1."}).encode())
    problems = _problems(_params(tiny_model, tmp_path, base_model_uri="s3://plan/models/tiny",
                                 refusal_data_uri="s3://plan/data/refusals.jsonl",
                                 methods=[{"method": "lora", "target_modules": "q_prj"}]))
    assert [p.split(":", 1)[0] for p in problems] == ["refusal_data_uri", "methods[0] (lora-r4) for s3"]
    blobs = [p for p in (tmp_path / "cache" / "s3" / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 1 and json.loads(blobs[0].read_text())["num_hidden_layers"] == 4  # config.json, no weights


def test_several_train_nodes_need_the_platforms_trainjob_settings(tiny_model: Path, tmp_path: Path) -> None:
    """The pipeline compiles the platform's TrainJob settings into the plan: train_nodes > 1 on a platform without
    them fails the plan, not the train task; a plan outside a pipeline (None) leaves it to the train task."""
    bare = {"image": "ghcr.io/safetax/safetax-train:0.1.0", "runtime": "torch-distributed", "volume_claim": "", "volume_path": ""}
    [problem] = _problems(_params(tiny_model, tmp_path, train_nodes=2, trainjob_platform=bare))
    assert problem.startswith("`train_nodes` must be 1 with this pipeline") and "trainjob_volume_claim" in problem
    ready = bare | {"volume_claim": "safetax-train", "volume_path": "/mnt/train"}
    for platform in (ready, None):
        assert plan(_params(tiny_model, tmp_path, train_nodes=2, trainjob_platform=platform))
    assert plan(_params(tiny_model, tmp_path, train_nodes=1, trainjob_platform=bare))  # one pod needs none


def test_the_pipeline_gives_the_plan_its_platforms_trainjob_settings() -> None:
    from safetax.platform import PlatformConfig
    from safetax.runner.pipelines.alignment import build_alignment_pipeline

    spec = build_alignment_pipeline(PlatformConfig(trainjob_volume_claim="train-rwx")).pipeline_spec
    from google.protobuf.json_format import MessageToDict

    given = MessageToDict(spec.root.dag.tasks["plan"].inputs.parameters["trainjob_platform"].runtime_value.constant)
    assert given["volume_claim"] == "train-rwx" and given["image"]
