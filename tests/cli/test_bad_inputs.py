"""A table of bad inputs, each answered by one message that names the file, key or value (and what is allowed), exit
status 2 and no traceback, before anything expensive runs: `safetax plan` (the pipeline's plan step, run here),
`safetax compile --platform`, `safetax plan --pipeline audit`, parameter files and command lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from safetax.cli import main

OK_METHOD = {"method": "lora", "name": "lora-r4"}

# (case id, override of a valid alignment parameter file, what the message must say)
ALIGNMENT: list[tuple[str, dict[str, Any], list[str]]] = [
    ("method-unknown", {"methods": [{"method": "lroa"}]}, ["methods[0]", "'lroa'", "'full', 'lora', 'rpsa'"]),
    ("methods-empty", {"methods": []}, ["`methods`", "non-empty list"]),
    ("methods-not-list", {"methods": "lora"}, ["`methods`"]),
    ("method-not-mapping", {"methods": ["lora"]}, ["methods[0]", "mapping"]),
    ("duplicate-names", {"methods": [OK_METHOD, OK_METHOD]}, ["methods[1].name", "unique"]),
    ("name-with-slash", {"methods": [{"method": "full", "name": "../../victim"}]}, ["methods[0].name", "no '/'"]),
    ("name-uppercase", {"methods": [{"method": "full", "name": "Full"}]}, ["methods[0].name", "lowercase"]),
    ("name-too-long", {"methods": [{"method": "full", "name": "x" * 80}]}, ["methods[0].name", "63"]),
    ("lora-rank-zero", {"methods": [{"method": "lora", "lora_rank": 0}]}, ["methods[0]", "lora_rank"]),
    ("lora-rank-text", {"methods": [{"method": "lora", "lora_rank": "four"}]}, ["methods[0]", "lora_rank"]),
    ("target-modules", {"methods": [{"method": "lora", "target_modules": "mpl"}]}, ["methods[0]", "target_modules"]),
    ("epochs-negative", {"methods": [{"method": "full", "epochs": -1}]}, ["methods[0]", "epochs"]),
    ("epochs-fraction", {"methods": [{"method": "full", "epochs": 1.5}]}, ["methods[0]", "epochs"]),
    ("batch-size-zero", {"methods": [{"method": "full", "batch_size": 0}]}, ["methods[0]", "batch_size"]),
    ("learning-rate-negative", {"methods": [{"method": "full", "learning_rate": -1}]}, ["methods[0]", "learning_rate"]),
    ("ortho-reg", {"methods": [{"method": "lora", "ortho_reg": "rows"}]}, ["methods[0]", "ortho_reg"]),
    ("merge-mode", {"methods": [{"method": "lora", "merge": "ortho"}]}, ["methods[0]", "merge"]),
    ("merge-lambdas", {"methods": [{"method": "lora", "merge": "ortho-both", "merge_lambdas": [0]}]}, ["methods[0]", "merge_lambdas"]),
    ("merge-lambdas-plain", {"methods": [{"method": "lora", "merge": "plain", "merge_lambdas": [1.2]}]}, ["merge_lambdas"]),
    ("merge-epochs", {"methods": [{"method": "lora", "merge": "plain", "merge_epochs": "first"}]}, ["merge_epochs"]),
    ("merge-k", {"methods": [{"method": "lora", "merge": "ortho-col", "merge_k": 0}]}, ["merge_k"]),
    ("rpsa-base", {"methods": [{"method": "rpsa", "rpsa_base": "qlora"}], "rpsa_corpus_size": 2}, ["rpsa_base"]),
    ("rpsa-without-corpus", {"methods": [{"method": "rpsa"}]}, ["rpsa_corpus_size", "RPSA methods"]),
    ("rpsa-keep", {"methods": [{"method": "rpsa"}], "rpsa_corpus_size": 2, "rpsa_keep": "best"}, ["rpsa_keep"]),
    ("rpsa-corpus-gpqa", {"methods": [{"method": "rpsa"}], "rpsa_corpus_size": 2, "rpsa_corpus": {"benchmark": "gpqa"}}, ["gpqa"]),
    ("rpsa-corpus-negative", {"methods": [{"method": "rpsa"}], "rpsa_corpus_size": -3}, ["rpsa_corpus_size"]),
    ("eval-sets-empty", {"eval_sets": []}, ["`eval_sets`", "non-empty"]),
    ("eval-set-benchmark", {"eval_sets": [{"benchmark": "aime25"}]}, ["eval_sets[0]", "aime25", "known: aime24"]),
    ("eval-set-kind", {"eval_sets": [{"name": "x", "kind": "reasonin", "uri": "x.jsonl"}]}, ["eval_sets[0]", "kind"]),
    ("eval-set-missing-file", {"eval_sets": [{"name": "x", "kind": "safety", "uri": "/nonexistent/x.jsonl"}]},
     ["eval_sets[0]", "/nonexistent/x.jsonl"]),
    ("eval-set-limit", {"eval_sets": [{"name": "x", "kind": "safety", "uri": "SAFETY", "limit": -1}]}, ["eval_sets[0]", "limit"]),
    ("eval-set-not-mapping", {"eval_sets": ["aime24"]}, ["eval_sets[0]"]),
    ("backend", {"generation_backend": "tgi"}, ["generation_backend", "'hf', 'vllm'"]),
    ("safety-temperature", {"safety_temperature": -0.5}, ["safety sampling", "safety_temperature"]),
    ("safety-top-p", {"safety_top_p": 0.0}, ["safety_top_p", "(0, 1]"]),
    ("generation-batch-zero", {"generation_batch_size": 0}, ["generation_batch_size", "a whole number >= 1"]),
    ("tensor-parallel-zero", {"tensor_parallel_size": 0}, ["tensor_parallel_size"]),
    ("max-length-zero", {"max_length": 0}, ["max_length"]),
    ("analysis-k-negative", {"analysis_k": -4}, ["analysis_k"]),  # 0 = the protocol's
    ("judge-name", {"judge_name": "guard"}, ["judge", "'guard'"]),
    ("judge-mode", {"judge_mode": "vote"}, ["mode", "'vote'"]),
    ("judge-scope", {"judge_scope": "trace"}, ["judge_scope", "'trace'"]),
    ("fisher-estimator", {"methods": [{"method": "rpsa"}], "rpsa_corpus_size": 2, "fisher_estimator": "tokens"}, ["estimator"]),
    ("temperature-negative", {"reasoning_temperature": -0.1}, ["reasoning sampling", "temperature"]),
    ("top-p", {"reasoning_top_p": 1.5}, ["top_p", "(0, 1]"]),
    ("greedy-with-samples", {"reasoning_temperature": 0.0, "reasoning_samples": 4}, ["n", "greedy"]),
    ("samples-negative", {"reasoning_samples": -2}, ["reasoning sampling", "n"]),
    ("reasoning-tokens-negative", {"reasoning_max_new_tokens": -8}, ["max_new_tokens"]),
    ("safety-tokens-negative", {"safety_max_new_tokens": -8}, ["safety sampling", "max_new_tokens"]),
    ("protocol-unknown", {"protocol": "lora"}, ["protocol", "lora-paper", "rpsa-paper"]),
    ("train-gpus-text", {"train_gpus": "two"}, ["train_gpus", "whole number"]),
    ("train-nodes-zero", {"train_nodes": 0}, ["train_nodes", "whole number of nodes >= 1"]),
    ("train-nodes-fraction", {"train_nodes": 1.5}, ["train_nodes", "whole number of nodes >= 1"]),
    ("generate-gpus-negative", {"generate_gpus": "-1"}, ["generate_gpus"]),
    ("judge-gpus-fraction", {"judge_gpus": "0.5"}, ["judge_gpus"]),
    ("store-ftp", {"store_uri": "ftp://host/x"}, ["store_uri", "ftp://host/x", "s3://"]),
    ("store-empty-bucket", {"store_uri": "s3://"}, ["store_uri", "bucket"]),
    ("gate-without-store", {"gate_thresholds": {"min_safety_score": 0.9}}, ["gate_thresholds", "store_uri"]),
    ("gate-out-of-range", {"gate_thresholds": {"min_safety_score": 2}, "store_uri": "/tmp/x"}, ["gate_thresholds", "min_safety_score"]),
    ("gate-unknown-key", {"gate_thresholds": {"min_safety": 0.9}, "store_uri": "/tmp/x"}, ["gate_thresholds", "min_safety"]),
    ("base-model-missing", {"base_model_uri": "/nonexistent/model"}, ["base_model_uri", "/nonexistent/model"]),
    ("refusal-data-missing", {"refusal_data_uri": "/nonexistent/refusals.jsonl"}, ["refusal_data_uri", "/nonexistent/refusals.jsonl"]),
    ("equivalence-model-missing", {"equivalence_model": "/nonexistent/judge"}, ["equivalence_model", "/nonexistent/judge"]),
    ("judge-model-missing", {"judge_name": "llama-guard", "judge_model": "/nonexistent/guard"}, ["judge_model", "/nonexistent/guard"]),
    ("unknown-parameter", {"epoch": 3}, ["unknown parameter 'epoch'", "the alignment pipeline's parameters"]),
    ("unknown-parameter-typo", {"judge": "refusal"}, ["unknown parameter 'judge'"]),
]

# (case id, platform file content, what the message must say)
PLATFORM: list[tuple[str, Any, list[str]]] = [
    ("unknown-top-key", {"default": {}}, ["default", "unknown key"]),
    ("unknown-defaults-key", {"defaults": {"pull_secrets": []}}, ["defaults.pull_secrets"]),
    ("unknown-stage", {"stages": {"training": {}}}, ["stages key", "'training'", "'plan'"]),
    ("folded-stage", {"stages": {"corpus": {}}}, ["stages.corpus", "train"]),
    ("folded-merge", {"stages": {"merge": {"cpu_limit": "8"}}}, ["stages.merge", "analyze"]),
    ("unknown-stage-key", {"stages": {"train": {"gpus": 2}}}, ["stages.train.gpus"]),
    ("gpu-count-text", {"stages": {"train": {"accelerator_count": "two"}}}, ["stages.train.accelerator_count", "'two'"]),
    ("gpu-count-negative", {"stages": {"train": {"accelerator_count": -1}}}, ["stages.train.accelerator_count"]),
    ("memory-quantity", {"stages": {"train": {"memory_limit": "lots"}}}, ["stages.train.memory_limit", "quantity"]),
    ("cpu-quantity", {"stages": {"score": {"cpu_request": "2 cores"}}}, ["stages.score.cpu_request"]),
    ("shm-quantity", {"stages": {"train": {"shm_size": "big"}}}, ["stages.train.shm_size"]),
    ("scratch-quantity", {"stages": {"train": {"scratch_size": "200 GB"}}}, ["stages.train.scratch_size"]),
    ("retries-negative", {"stages": {"train": {"retries": -1}}}, ["stages.train.retries"]),
    ("retries-text", {"stages": {"train": {"retries": "two"}}}, ["stages.train.retries"]),
    ("retry-backoff", {"stages": {"train": {"retry_backoff": "soon"}}}, ["stages.train.retry_backoff", "30s"]),
    ("timeout-negative", {"stages": {"generate": {"timeout": -5}}}, ["stages.generate.timeout"]),
    ("toleration-operator", {"stages": {"train": {"tolerations": [{"key": "gpu", "operator": "In"}]}}}, ["operator", "'Exists'"]),
    ("toleration-shape", {"stages": {"train": {"tolerations": ["gpu"]}}}, ["stages.train.tolerations"]),
    ("node-selector-key", {"stages": {"train": {"node_selector": {"bad key!": "x"}}}}, ["label/selector", "bad key!"]),
    ("pod-label-value", {"defaults": {}, "stages": {"train": {"pod_labels": {"team": "x" * 70}}}}, ["label/selector", "63"]),
    ("pipeline-root", {"defaults": {"pipeline_root": "/tmp/root"}}, ["defaults.pipeline_root", "minio://"]),
    ("s3-secret-keys", {"defaults": {"s3_secret_keys": {"access": "a"}}}, ["defaults.s3_secret_keys"]),
    ("secret-in-env", {"defaults": {"env": {"SAFETAX_S3_SECRET_KEY": "hunter2"}}}, ["defaults.env.SAFETAX_S3_SECRET_KEY", "<hidden>"]),
    ("hf-token-in-env", {"defaults": {"env": {"HF_TOKEN": "hf_abc"}}}, ["defaults.env.HF_TOKEN", "hf_token_secret"]),
    ("hf-secret-name", {"defaults": {"hf_token_secret": "HF Token"}}, ["defaults.hf_token_secret"]),
    ("backend", {"defaults": {"generation_backend": "tgi"}}, ["defaults.generation_backend", "'vllm'"]),
    ("parallelism", {"defaults": {"max_parallel_methods": -2}}, ["defaults.max_parallel_methods"]),
    ("code-execution-label-off", {"stages": {"code": {"pod_labels": {"safetax.io/code-execution": "false"}}}},
     ["stages.code.pod_labels.safetax.io/code-execution", "always carry it"]),
    ("code-execution-label-elsewhere", {"stages": {"train": {"pod_labels": {"safetax.io/code-execution": "true"}}}},
     ["stages.train.pod_labels.safetax.io/code-execution"]),
    ("security-context-key", {"defaults": {"security_context": {"privileged": True}}}, ["defaults.security_context.privileged"]),
    ("security-context-root", {"defaults": {"security_context": {"run_as_user": 0, "run_as_non_root": True}}},
     ["defaults.security_context.run_as_user", "non-zero"]),
]

# (case id, audit parameters, what the message must say)
AUDIT: list[tuple[str, dict[str, Any], list[str]]] = [
    ("name", {"audit_name": "Nightly R1", "store_uri": "/tmp/s"}, ["audit_name"]),
    ("profile", {"audit_name": "a", "store_uri": "/tmp/s", "checkpoints": ["/m"], "profile": "hourly"}, ["profile", "'nightly'"]),
    ("nothing-to-audit", {"audit_name": "a", "store_uri": "/tmp/s"}, ["checkpoint"]),
    ("thresholds-range", {"audit_name": "a", "store_uri": "/tmp/s", "checkpoints": ["/m"], "thresholds": {"min_safety_score": 1.5}},
     ["min_safety_score"]),
    ("thresholds-key", {"audit_name": "a", "store_uri": "/tmp/s", "checkpoints": ["/m"], "thresholds": {"max_asr": 0.1}},
     ["max_asr"]),
    ("drop-without-baseline", {"audit_name": "a", "store_uri": "/tmp/s", "checkpoints": ["/m"],
                               "thresholds": {"max_reasoning_drop": 0.05}}, ["baseline"]),
    ("cron", {"audit_name": "a", "store_uri": "/tmp/s", "checkpoints": ["/m"], "audit_schedule": "every night"}, ["audit_schedule"]),
    ("promote-text", {"audit_name": "a", "store_uri": "/tmp/s", "checkpoints": ["/m"], "promote": "false"},
     ["`promote` must be true or false", "'false'"]),
    ("custom-ignored", {"audit_name": "a", "store_uri": "/tmp/s", "checkpoints": ["/m"],
                        "custom_profile": {"eval_sets": [{"benchmark": "xstest"}]}}, ["`custom_profile` is set", "'custom'"]),
    ("custom-without-sets", {"audit_name": "a", "store_uri": "/tmp/s", "checkpoints": ["/m"], "profile": "custom"}, ["custom_profile"]),
    ("unknown-parameter", {"audit_name": "a", "store_uri": "/tmp/s", "checkpoint": "/m"}, ["unknown parameter 'checkpoint'"]),
    ("missing-required", {"store_uri": "/tmp/s", "checkpoints": ["/m"]}, ["missing required parameter 'audit_name'"]),
    # the run's other parameters: a typo here would fail every GPU pod after the checkpoints were claimed
    ("judge-name", {"audit_name": "a", "store_uri": "/tmp/s", "checkpoints": ["/m"], "judge_name": "llamaguard"},
     ["`judge_name`", "'llama-guard'"]),
    ("engine", {"audit_name": "a", "store_uri": "/tmp/s", "checkpoints": ["/m"], "generation_backend": "vlm",
                "generate_gpus": "two", "eval_shards": 0, "generation_batch_size": 0},
     ["`generation_backend`", "'vllm'", "`generate_gpus`", "eval_shards", "`generation_batch_size`"]),
]


def _expect_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str], expected: list[str]) -> str:
    with pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    assert done.value.code == 2, (out, err)
    assert "Traceback" not in err and "Traceback" not in out
    for text in expected:
        assert text in err, f"{text!r} not in {err!r}"
    return err


@pytest.fixture()
def valid(tiny_model: Path, tmp_path: Path) -> dict[str, Any]:
    safety = tmp_path / "safety.jsonl"
    safety.write_text(json.dumps({"prompt": "Explain restricted task 1."}) + "\n")
    arith = tmp_path / "arith.jsonl"
    arith.write_text("".join(json.dumps({"problem": f"{i}+{i}?", "answer": str(2 * i)}) + "\n" for i in range(3)))
    refusals = tmp_path / "refusals.jsonl"
    refusals.write_text(json.dumps({"prompt": "Explain restricted task 1.", "refusal": "I can't help with that."}) + "\n")
    return {"base_model_uri": str(tiny_model), "refusal_data_uri": str(refusals), "methods": [OK_METHOD],
            "eval_sets": [{"name": "s", "kind": "safety", "uri": str(safety)}, {"name": "a", "kind": "reasoning", "uri": str(arith)}],
            "rpsa_corpus": {"name": "a", "kind": "reasoning", "uri": str(arith)}}


def test_the_valid_run_passes(valid: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(valid))
    main(["plan", "--params", str(tmp_path / "ok.yaml")])
    assert "lora-r4: lora" in capsys.readouterr().out


@pytest.mark.parametrize("override,expected", [c[1:] for c in ALIGNMENT], ids=[c[0] for c in ALIGNMENT])
def test_bad_alignment_parameters(override: dict[str, Any], expected: list[str], valid: dict[str, Any], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    params = valid | override
    for e in params.get("eval_sets", []):
        if isinstance(e, dict) and e.get("uri") == "SAFETY":
            e["uri"] = valid["eval_sets"][0]["uri"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    _expect_exit_2(["plan", "--params", str(tmp_path / "params.yaml")], capsys, expected)


@pytest.mark.parametrize("content,expected", [c[1:] for c in PLATFORM], ids=[c[0] for c in PLATFORM])
def test_bad_platform_files(content: Any, expected: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(content))
    err = _expect_exit_2(["compile", "--platform", str(tmp_path / "platform.yaml"), "--out", str(tmp_path / "out")], capsys,
                         expected + [str(tmp_path / "platform.yaml")])
    assert not (tmp_path / "out").exists()  # nothing written
    assert "hunter2" not in err and "hf_abc" not in err


@pytest.mark.parametrize("params,expected", [c[1:] for c in AUDIT], ids=[c[0] for c in AUDIT])
def test_bad_audit_parameters(params: dict[str, Any], expected: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "audit.yaml").write_text(yaml.safe_dump(params))
    _expect_exit_2(["plan", "--pipeline", "audit", "--params", str(tmp_path / "audit.yaml")], capsys, expected)


FILES: list[tuple[str, str | None, list[str]]] = [
    ("missing-file", None, ["does not exist"]),
    ("bad-yaml", "methods: [\n", ["not valid YAML"]),
    ("list-not-mapping", "- 1\n- 2\n", ["must be a mapping", "list"]),
    ("scalar", "42\n", ["must be a mapping", "int"]),
    ("empty", "", ["must be a mapping", "NoneType"]),
    ("binary", "\udcff\udcfe", ["params.yaml"]),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in FILES], ids=[c[0] for c in FILES])
@pytest.mark.parametrize("command", ["plan", "run"])
def test_bad_parameter_files(command: str, text: str | None, expected: list[str], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "params.yaml"
    if text is not None:
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
    _expect_exit_2([command, "--params", str(path), *(["--out", str(tmp_path / "runs")] if command == "run" else [])], capsys,
                   expected + [str(path)])
    assert not (tmp_path / "runs").exists()


ARGV: list[tuple[str, list[str], list[str]]] = [
    ("no-command", [], ["required"]),
    ("unknown-command", ["train"], ["invalid choice", "'train'"]),
    ("register-mode", ["register", "--mode", "rest"], ["--mode", "'rest'"]),
    ("run-pipeline", ["run", "--pipeline", "eval", "--params", "p.yaml"], ["--pipeline", "'eval'"]),
    ("run-without-params", ["run"], ["--params"]),
    ("compile-without-out", ["compile"], ["--out"]),
    ("demo-epochs-text", ["demo", "--epochs", "two"], ["--epochs", "'two'"]),
    ("schedule-without-action", ["schedule"], ["required"]),
    ("data-upload-without-target", ["data", "upload", "dir"], ["required"]),
    ("run-compiled-missing", ["run", "--compiled", "/nonexistent/alignment.yaml", "--params", "PARAMS"],
     ["/nonexistent/alignment.yaml", "does not exist"]),
]


@pytest.mark.parametrize("argv,expected", [c[1:] for c in ARGV], ids=[c[0] for c in ARGV])
def test_bad_command_lines(argv: list[str], expected: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.yaml").write_text("base_model_uri: x\nrefusal_data_uri: y\n")
    argv = [str(tmp_path / "p.yaml") if a == "PARAMS" else a for a in argv]
    _expect_exit_2(argv, capsys, expected)


def test_the_table_has_at_least_100_bad_inputs() -> None:
    assert len(ALIGNMENT) + len(PLATFORM) + len(AUDIT) + 2 * len(FILES) + len(ARGV) >= 100
