"""The papers' ready-to-run parameter files: valid specs, and exactly their protocol's values written out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from safetax.data.eval_sets import EvalSet
from safetax.protocols import UNSET, resolve_eval_set, resolve_method, resolve_protocol
from safetax.stages.merge import MergeConfig
from safetax.stages.train import TrainConfig, check_data_parallel

PARAMS = Path(__file__).resolve().parents[1] / "pipelines" / "params"
FILES = sorted([*PARAMS.glob("lora-paper-*.yaml"), *PARAMS.glob("rpsa-paper-*.yaml")])


def protocol_of(path: Path) -> str:
    return "lora-paper" if path.name.startswith("lora-paper") else "rpsa-paper"


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def test_every_paper_has_its_files() -> None:
    names = {p.name for p in FILES}
    assert {"lora-paper-r1-qwen-7b.yaml", "lora-paper-r1-qwen-14b.yaml", "lora-paper-rank-module-sweep-r1-qwen-14b.yaml",
            "lora-paper-orthogonality-r1-qwen-7b.yaml", "rpsa-paper-table1-r1-qwen-7b.yaml", "rpsa-paper-table1-r1-llama-8b.yaml",
            "rpsa-paper-random-mask-r1-llama-8b.yaml", "rpsa-paper-constant-k-r1-llama-8b.yaml"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_specs_build_their_configs(path: Path) -> None:
    params = load(path)
    for e in params["eval_sets"]:
        EvalSet.from_dict(e)
    names = []
    for m in params["methods"]:
        cfg = TrainConfig.from_dict(m)
        MergeConfig.from_method(m)
        check_data_parallel(cfg, int(params["train_gpus"]))
        names.append(cfg.label)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_files_write_out_their_protocol(path: Path) -> None:
    """Setting `protocol` on a file changes nothing: each value the protocol sets is written out with the same value."""
    params, protocol = load(path), protocol_of(path)
    unset = params | {k: v for k, v in UNSET.items()}
    resolved = resolve_protocol(protocol, unset)
    assert {k: params[k] for k in UNSET if k in params} == {k: resolved[k] for k in UNSET if k in params}
    assert all(resolve_eval_set(protocol, e) == e for e in params["eval_sets"])
    assert all(resolve_method(protocol, m, 0, params["base_model_uri"]) == m for m in params["methods"])


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_files_sample_safety_answers_as_their_paper(path: Path) -> None:
    """The safety answers of a file's run: greedy for the LoRA paper (A.2), sampled at 0.6 / 0.95 for RPSA (sec. 4.2.1),
    whether the file writes the values out or leaves them to its protocol."""
    params = load(path)
    resolved = resolve_protocol(params.get("protocol") or "seeds", dict(UNSET) | params)
    expected = (0.6, 0.95) if protocol_of(path) == "rpsa-paper" else (0.0, 1.0)
    assert (resolved["safety_temperature"], resolved["safety_top_p"]) == expected


def test_ablation_and_constant_k_use_existing_method_keys() -> None:
    ablation = {m["name"]: m for m in load(PARAMS / "rpsa-paper-random-mask-r1-llama-8b.yaml")["methods"]}
    random = TrainConfig.from_dict(ablation["fft-random-k0.6"])
    assert (random.random_mask, random.dynamic_ratio, random.frozen_ratio, random.rpsa_base) == (True, False, 0.6, "full")
    constant = [TrainConfig.from_dict(m) for m in load(PARAMS / "rpsa-paper-constant-k-r1-llama-8b.yaml")["methods"]]
    assert {c.lora_rank for c in constant} == {1, 2, 4, 8, 16, 32} and not any(c.dynamic_ratio for c in constant)


@pytest.mark.e2e
def test_the_rpsa_table1_file_runs_through_the_local_runner(tiny_model: Path, data_dir: Path, tmp_path: Path) -> None:
    """RPSA Table 1's parameter file as it ships, with small stand-ins for what a CPU cannot hold: the tiny model for
    R1-Distill-Qwen-7B and a tiny trained guard for Llama-Guard-3 (generate mode, the paper's), 3 rows per benchmark
    (the seeded `sample` of WildJailbreak kept as a sample), 1 epoch, 8-token budgets, 2 corpus problems, the
    transformers backend. GPQA is left out (its questions stay encrypted). Every method of the table trains, every
    checkpoint is evaluated in the rpsa-paper prompts, and the report has the judge-agreement section."""
    import importlib.util
    import json

    from safetax.runner import run_local

    spec = importlib.util.spec_from_file_location("guard_helpers", Path(__file__).parent / "judging" / "test_llama_guard.py")
    helpers = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(helpers)  # type: ignore[union-attr]
    guard = helpers.make_tiny_guard(tmp_path / "guard", helpers.guard_examples(8))
    refusals = tmp_path / "refusals.jsonl"
    refusals.write_text("".join(json.dumps({"prompt": f"Explain restricted task {i}.", "refusal": "I can't help with that."}) + "\n"
                                for i in range(8)))
    params = load(PARAMS / "rpsa-paper-table1-r1-qwen-7b.yaml")
    params |= {"base_model_uri": str(tiny_model), "refusal_data_uri": str(refusals), "store_uri": "", "judge_model": str(guard),
               "generation_backend": "hf", "generation_batch_size": 8, "safety_max_new_tokens": 8, "reasoning_max_new_tokens": 8,
               "rpsa_corpus_size": 2, "max_length": 64, "generation_cache": "off"}
    params["eval_sets"] = [e | ({"sample": 3} if "sample" in e else {"limit": 3}) for e in params["eval_sets"] if e["benchmark"] != "gpqa"]
    params["methods"] = [m | {"epochs": 1, "batch_size": 4, "warmup_steps": 0} for m in params["methods"]]
    results = run_local("alignment", params, tmp_path / "runs")
    rows = {r.split(",")[0] for r in (results / "results.csv").read_text().splitlines()[1:]}
    assert rows == {"base", "fft/epoch-1", "fft-rpsa/epoch-1", "lora/epoch-1", "lora-rpsa/epoch-1"}, rows
    [plan] = list((tmp_path / "runs").glob("safetax-alignment-*/plan/run_plan/plan.json"))
    resolved = json.loads(plan.read_text())["params"]
    assert resolved["judge_mode"] == "generate" and resolved["fisher_estimator"] == "token"
    report = (results / "report.md").read_text()
    assert "## Judge agreement" in report and "llama-guard-generate vs refusal" in report
