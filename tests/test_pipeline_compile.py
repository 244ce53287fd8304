"""The compiled pipeline is a golden file; GPU settings sit on GPU executors only."""

from __future__ import annotations

from pathlib import Path

import yaml

from safetax.platform import PlatformConfig
from safetax.runner import REPO_ROOT, compile_pipelines

GOLDEN = REPO_ROOT / "pipelines" / "compiled"
GPU_STAGES = {"train", "generate", "judge"}


def _stage(executor: str) -> str:
    return executor.removeprefix("exec-").rsplit("-", 1)[0] if executor[-1].isdigit() else executor.removeprefix("exec-")


def test_compiled_pipeline_matches_golden(tmp_path: Path) -> None:
    for path in compile_pipelines(tmp_path):
        golden = GOLDEN / path.name
        # Compared as parsed YAML: KFP's header comment prints dict defaults in hash order.
        fresh, stored = list(yaml.safe_load_all(path.read_text())), list(yaml.safe_load_all(golden.read_text()))
        assert fresh == stored, f"{golden} is stale: run `safetax compile --out pipelines/compiled`"


def test_gpu_settings_only_on_gpu_stages() -> None:
    spec, platform = yaml.safe_load_all((GOLDEN / "alignment.yaml").read_text())
    executors = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert {_stage(e) for e in executors} == {"prepare", "train", "generate", "judge", "score", "analytics"}
    for name, ex in executors.items():
        resources = ex["container"].get("resources", {})
        if _stage(name) in GPU_STAGES:
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
            assert resources["accelerator"]["resourceCount"] == "1"
            assert k8s[name]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
            assert k8s[name]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        else:
            assert "accelerator" not in resources
            assert name not in k8s
        assert ":latest" not in ex["container"]["image"] and ex["container"]["image"].endswith(":0.1.0")


def test_pipeline_parameters_are_documented() -> None:
    spec = yaml.safe_load_all((GOLDEN / "alignment.yaml").read_text()).__next__()
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {"base_model_uri", "refusal_data_uri", "eval_sets", "methods", "epochs", "seed"} <= params.keys()
    assert all(p.get("description") for p in params.values())
    assert not params["base_model_uri"].get("isOptional")  # required in the UI
    assert params["methods"]["defaultValue"][0]["method"] == "lora"


def test_platform_config_from_dict_and_errors() -> None:
    import pytest

    from safetax.config import ConfigError

    cfg = PlatformConfig.from_dict({"gpu_stages": ["train"], "gpu": {"accelerator_count": 2, "node_selector": {"pool": "a100"},
                                                                     "tolerations": [{"key": "gpu", "effect": "NoExecute"}]}})
    assert cfg.placement("train") is not None and cfg.placement("train").accelerator_count == 2  # type: ignore[union-attr]
    assert cfg.placement("generate") is None
    with pytest.raises(ConfigError, match=r"`gpu_stages\[\]` must be one of 'prepare'"):
        PlatformConfig.from_dict({"gpu_stages": ["training"]})
