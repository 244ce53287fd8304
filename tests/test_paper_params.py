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


def test_ablation_and_constant_k_use_existing_method_keys() -> None:
    ablation = {m["name"]: m for m in load(PARAMS / "rpsa-paper-random-mask-r1-llama-8b.yaml")["methods"]}
    random = TrainConfig.from_dict(ablation["fft-random-k0.6"])
    assert (random.random_mask, random.dynamic_ratio, random.frozen_ratio, random.rpsa_base) == (True, False, 0.6, "full")
    constant = [TrainConfig.from_dict(m) for m in load(PARAMS / "rpsa-paper-constant-k-r1-llama-8b.yaml")["methods"]]
    assert {c.lora_rank for c in constant} == {1, 2, 4, 8, 16, 32} and not any(c.dynamic_ratio for c in constant)
