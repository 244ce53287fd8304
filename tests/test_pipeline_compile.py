"""The compiled pipeline is a golden file; GPU settings sit on GPU executors only."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from safetax.platform import PlatformConfig
from safetax.runner import REPO_ROOT, compile_pipelines

GOLDEN = REPO_ROOT / "pipelines" / "compiled"
GPU_STAGES = {"corpus", "fisher", "train", "generate", "judge"}


def _stage(executor: str) -> str:
    return executor.removeprefix("exec-").rsplit("-", 1)[0] if executor[-1].isdigit() else executor.removeprefix("exec-")


def test_compiled_pipeline_matches_golden(tmp_path: Path) -> None:
    for path in compile_pipelines(tmp_path):
        golden = GOLDEN / path.name
        # Compared as parsed YAML: KFP's header comment prints dict defaults in hash order.
        fresh, stored = list(yaml.safe_load_all(path.read_text())), list(yaml.safe_load_all(golden.read_text()))
        assert fresh == stored, f"{golden} is stale: run `safetax compile --out pipelines/compiled`"


def test_kubernetes_settings_per_stage() -> None:
    spec, platform = yaml.safe_load_all((GOLDEN / "alignment.yaml").read_text())
    executors = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert {_stage(e) for e in executors} == {"prepare", "corpus", "fisher", "train", "merge", "analyze", "generate", "judge", "score", "analytics",
                                             "gate"}
    for name, ex in executors.items():
        resources = ex["container"]["resources"]
        assert {"cpuRequest", "cpuLimit", "memoryRequest", "memoryLimit"} <= resources.keys()
        if _stage(name) in GPU_STAGES:
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
            # Per-run GPU counts: a pipeline parameter per GPU stage, defaulting to the platform's count.
            param = f"{_stage(name)}_gpus"
            if _stage(name) in {"train", "generate", "judge"}:
                assert resources["accelerator"]["resourceCount"] == f"{{{{$.inputs.parameters['pipelinechannel--{param}']}}}}"
                assert spec["root"]["inputDefinitions"]["parameters"][param]["defaultValue"] == 1
            else:  # corpus and fisher: the platform file's count, fixed at compile time
                assert resources["accelerator"]["resourceCount"] == "1"
            assert k8s[name]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
            assert k8s[name]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
            assert k8s[name]["emptyDirMounts"] == [{"volumeName": "dshm", "mountPath": "/dev/shm", "medium": "Memory", "sizeLimit": "16Gi"}]
        else:
            assert "accelerator" not in resources
            assert "nodeSelector" not in k8s.get(name, {}) and "emptyDirMounts" not in k8s.get(name, {})
        labels = k8s.get(name, {}).get("podMetadata", {}).get("labels", {})
        assert (labels.get("safetax.io/code-execution") == "true") == (_stage(name) == "score")
        assert ":latest" not in ex["container"]["image"] and ex["container"]["image"].endswith(":0.1.0")


def test_platform_file_reaches_every_task(tmp_path: Path) -> None:
    platform_file = tmp_path / "platform.yaml"
    platform_file.write_text(yaml.safe_dump({
        "defaults": {"image_pull_secrets": ["regcred"], "pod_labels": {"team": "safety"}, "s3_secret": "mlpipeline-minio-artifact",
                     "env": {"SAFETAX_S3_ENDPOINT": "http://minio-service.kubeflow:9000"}, "pipeline_root": "minio://mlpipeline/v2/artifacts"},
        "stages": {"train": {"accelerator_count": 4, "node_selector": {"pool": "h100"}, "memory_limit": "512Gi"},
                   "judge": {"accelerator_count": 0}},
    }))
    paths = {p.stem: p for p in compile_pipelines(tmp_path / "out", platform=str(platform_file))}
    assert set(paths) == {"alignment", "audit"}
    spec, platform = yaml.safe_load_all(paths["alignment"].read_text())
    assert spec["defaultPipelineRoot"] == "minio://mlpipeline/v2/artifacts"
    executors = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    train = next(e for e in executors if _stage(e) == "train")
    judge = next(e for e in executors if _stage(e) == "judge")
    assert spec["root"]["inputDefinitions"]["parameters"]["train_gpus"]["defaultValue"] == 4
    assert executors[train]["container"]["resources"]["memoryLimit"] == 512 * 2**30 / 1e9 or \
        executors[train]["container"]["resources"]["resourceMemoryLimit"] == "512Gi"
    assert k8s[train]["nodeSelector"]["labels"] == {"pool": "h100"}
    assert "accelerator" not in executors[judge]["container"]["resources"] and "nodeSelector" not in k8s[judge]
    for name, ex in executors.items():
        assert {"name": "SAFETAX_S3_ENDPOINT", "value": "http://minio-service.kubeflow:9000"} in ex["container"]["env"]
        assert [p["secretName"] for p in k8s[name]["imagePullSecret"]] == ["regcred"]
        assert k8s[name]["podMetadata"]["labels"]["team"] == "safety"
        secret = k8s[name]["secretAsEnv"][0]
        assert secret["secretName"] == "mlpipeline-minio-artifact"
        assert {m["envVar"] for m in secret["keyToEnv"]} == {"SAFETAX_S3_ACCESS_KEY", "SAFETAX_S3_SECRET_KEY"}
    audit, audit_platform = yaml.safe_load_all(paths["audit"].read_text())  # the audit's tasks are placed the same way
    for name, ex in audit["deploymentSpec"]["executors"].items():
        assert {"name": "SAFETAX_S3_ENDPOINT", "value": "http://minio-service.kubeflow:9000"} in ex["container"]["env"]
        assert audit_platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][name]["podMetadata"]["labels"]["team"] == "safety"


def test_manifests_are_versioned_by_spec_digest(tmp_path: Path) -> None:
    from safetax.runner import compile_manifests

    def version(out: Path, platform: str | None = None) -> dict:
        paths = {p.stem: p for p in compile_manifests(out, platform, namespace="kubeflow")}
        assert set(paths) == {"alignment", "audit"}
        pipeline, version = yaml.safe_load_all(paths["alignment"].read_text())
        assert (pipeline["kind"], version["kind"]) == ("Pipeline", "PipelineVersion")
        assert version["spec"]["pipelineName"] == pipeline["metadata"]["name"] == "safetax-alignment"
        return version

    a, b = version(tmp_path / "a"), version(tmp_path / "b")
    assert a["metadata"]["name"] == b["metadata"]["name"] and a["metadata"]["name"].startswith("safetax-alignment-")
    other = tmp_path / "platform.yaml"
    other.write_text("stages: {train: {accelerator_count: 2}}\n")
    assert version(tmp_path / "c", str(other))["metadata"]["name"] != a["metadata"]["name"]  # KFP rejects spec updates
    stored = yaml.safe_load_all((REPO_ROOT / "k8s" / "pipelines" / "alignment.yaml").read_text())
    assert list(stored)[1]["metadata"]["name"].removeprefix("safetax-alignment-") == a["metadata"]["name"].removeprefix("safetax-alignment-"), \
        "k8s/pipelines/alignment.yaml is stale: run `make compile`"


def test_pipeline_parameters_are_documented() -> None:
    audit = next(yaml.safe_load_all((GOLDEN / "audit.yaml").read_text()))["root"]["inputDefinitions"]["parameters"]
    assert {"audit_name", "store_uri", "checkpoint_prefix", "checkpoints", "profile", "thresholds", "baseline", "promote"} <= audit.keys()
    assert all(p.get("description") for p in audit.values())
    spec = yaml.safe_load_all((GOLDEN / "alignment.yaml").read_text()).__next__()
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {"base_model_uri", "refusal_data_uri", "eval_sets", "methods", "epochs", "seed"} <= params.keys()
    assert all(p.get("description") for p in params.values())
    assert not params["base_model_uri"].get("isOptional")  # required in the UI
    assert params["methods"]["defaultValue"][0]["method"] == "lora"


def test_platform_config_from_dict_and_errors() -> None:
    import pytest

    from safetax.config import ConfigError

    cfg = PlatformConfig.from_dict({"stages": {"train": {"accelerator_count": 2, "node_selector": {"pool": "a100"},
                                                         "tolerations": [{"key": "gpu", "effect": "NoExecute"}]},
                                               "score": {"accelerator_count": 1, "pod_labels": {"team": "x"}}}})
    assert cfg.settings("train").accelerator_count == 2 and cfg.settings("train").shm_size == "16Gi"
    assert cfg.settings("score").gpu and cfg.settings("score").pod_labels == {"safetax.io/code-execution": "true", "team": "x"}
    assert not cfg.settings("prepare").gpu
    with pytest.raises(ConfigError) as err:
        PlatformConfig.from_dict({"stages": {"training": {}, "train": {"accelerator_count": "two", "memory_limit": "lots", "gpus": 1}},
                                  "defaults": {"env": {"SAFETAX_S3_SECRET_KEY": "x"}}})
    msg = str(err.value)
    assert "`stages key` must be one of 'prepare'" in msg and "stages.train.gpus" in msg
    assert "`stages.train.accelerator_count` must be an integer >= 0, got 'two'" in msg
    assert "stages.train.memory_limit" in msg and "defaults.env.SAFETAX_S3_SECRET_KEY" in msg


@pytest.mark.parametrize("pipeline", ["alignment", "audit"])
def test_every_dag_input_a_task_reads_is_wired(pipeline: str) -> None:
    """KFP wires a ParallelFor's inputs from task arguments only: a per-run setting used just in a
    resource setter would reach the loop unresolved (on a cluster as in the local runner)."""
    spec = next(yaml.safe_load_all((GOLDEN / f"{pipeline}.yaml").read_text()))
    dags = {"root": spec["root"], **{k: v for k, v in spec["components"].items() if "dag" in v}}
    for name, comp in dags.items():
        defined = set(comp.get("inputDefinitions", {}).get("parameters", {}))
        for task_name, task in comp["dag"]["tasks"].items():
            for param in task.get("inputs", {}).get("parameters", {}).values():
                ref = param.get("componentInputParameter")
                assert ref is None or ref in defined, f"{name}/{task_name} reads {ref}, which {name} does not define"
