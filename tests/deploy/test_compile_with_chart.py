"""End to end from values to the compiled pipeline: the registrar's platform ConfigMap and environment,
rendered from a ci values file, given to `safetax compile` as the hook Job gives them to `safetax register`:
KFP IR (what `--mode api` uploads) and the Pipeline/PipelineVersion custom resources (what `--mode cr` creates)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

import pytest

from safetax.platform import CODE_EXECUTION_LABEL

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "safetax"


@pytest.mark.parametrize("output", ["ir", "custom-resources"])
def test_values_reach_the_compiled_pipeline(render: Any, validate: Any, tmp_path: Path, output: str) -> None:
    values = yaml.safe_load((CHART / "ci" / "custom-node-pools-values.yaml").read_text())
    values["image"] = {"registry": "registry.example.com/mirror/safetax"}
    rendered = render(values)
    (tmp_path / "platform.yaml").write_text(rendered.one("ConfigMap", "platform")["data"]["platform.yaml"])
    container = rendered.one("Job", "registrar")["spec"]["template"]["spec"]["containers"][0]
    env = {**os.environ, **{e["name"]: e["value"] for e in container["env"] if e["name"] not in ("HOME", "KF_PIPELINES_SA_TOKEN_PATH")}}
    env.pop("SAFETAX_PLATFORM", None)
    env["SAFETAX_IMAGE_TAG"] = container["image"].rsplit(":", 1)[1]  # set in the registrar's image: the tag it was built with
    extra = ["--k8s-manifests", "--namespace", "kubeflow"] if output == "custom-resources" else []
    out = subprocess.run([sys.executable, "-m", "safetax", "compile", *extra, "--platform", "platform.yaml", "--out", "compiled"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    docs = list(yaml.safe_load_all((tmp_path / "compiled" / "alignment.yaml").read_text()))
    if output == "custom-resources":
        for doc in docs:
            validate(doc)
        version = next(d for d in docs if d["kind"] == "PipelineVersion")
        pipeline_spec, platform_spec = version["spec"]["pipelineSpec"], version["spec"]["platformSpec"]
    else:
        pipeline_spec, platform_spec = docs
    executors = pipeline_spec["deploymentSpec"]["executors"]
    placement = platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]

    train = executors["exec-train"]["container"]
    assert train["image"] == "registry.example.com/mirror/safetax/safetax-train:0.1.0"
    # The GPU count is a per-run pipeline parameter whose default is the chart's value.
    assert train["resources"]["accelerator"]["resourceCount"] == "{{$.inputs.parameters['pipelinechannel--train_gpus']}}"
    assert pipeline_spec["root"]["inputDefinitions"]["parameters"]["train_gpus"]["defaultValue"] == "4"
    assert train["resources"]["resourceMemoryLimit"] == "600Gi"
    train_env = {e["name"]: e["value"] for e in train["env"]}
    assert train_env["SAFETAX_PUSHGATEWAY"] == "safetax-pushgateway.kubeflow:9091"
    assert train_env["SAFETAX_S3_ENDPOINT"] == "http://minio-service.kubeflow:9000"
    assert train_env["HF_HUB_OFFLINE"] == "1"
    assert placement["exec-train"]["nodeSelector"]["labels"]["cloud.google.com/gke-nodepool"] == "h100-train"
    assert {"key": "dedicated", "operator": "Equal", "value": "training", "effect": "NoSchedule"} in placement["exec-train"]["tolerations"]
    assert placement["exec-train"]["emptyDirMounts"][0]["sizeLimit"] == "64Gi"
    assert placement["exec-train"]["secretAsEnv"][0]["secretName"] == "mlpipeline-minio-artifact"
    assert placement["exec-generate"]["nodeSelector"]["labels"] == {"cloud.google.com/gke-nodepool": "l4-inference"}
    code_labels = placement["exec-execute-code"]["podMetadata"]["labels"]
    assert code_labels[CODE_EXECUTION_LABEL[0]] == CODE_EXECUTION_LABEL[1] and code_labels["team"] == "safety"
    assert "secretAsEnv" not in placement["exec-execute-code"] and "secretAsEnv" in placement["exec-score"]
    assert executors["exec-score"]["container"]["image"] == "registry.example.com/mirror/safetax/safetax-cpu:0.1.0"
    # Scratch volume, retries, timeouts and the Hugging Face token Secret, from the same values.
    assert placement["exec-train"]["genericEphemeralVolume"] == [{
        "volumeName": "scratch", "mountPath": "/scratch", "size": "200Gi", "storageClassName": "premium-rwo",
        "accessModes": ["ReadWriteOnce"]}]
    assert placement["exec-train"]["activeDeadlineSeconds"] in ("172800", 172800)
    assert "activeDeadlineSeconds" not in placement.get("exec-judge", {})  # timeoutSeconds: 0
    retries = {name: task["retryPolicy"] for name, task in _tasks(pipeline_spec) if "retryPolicy" in task}
    assert retries["train"]["maxRetryCount"] == 3 and retries["train"]["backoffDuration"] == "300s"  # 5m
    assert "judge" not in retries  # retries: 0
    hf = {name for name, e in placement.items() if any(s["secretName"] == "hf-token" for s in e.get("secretAsEnv", []))}
    assert {"exec-train", "exec-generate"} <= hf and not {n for n in hf if n.startswith("exec-score")}  # never to model-written code
    token = next(s for s in placement["exec-train"]["secretAsEnv"] if s["secretName"] == "hf-token")
    assert token["keyToEnv"] == [{"secretKey": "hf_token", "envVar": "HF_TOKEN"}]


def _tasks(pipeline_spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every task of the pipeline: the root DAG's and those inside its components' DAGs (ParallelFor bodies)."""
    dags = [pipeline_spec["root"], *pipeline_spec["components"].values()]
    return [(name, task) for dag in dags for name, task in dag.get("dag", {}).get("tasks", {}).items()]
