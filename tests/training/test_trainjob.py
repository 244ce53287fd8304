"""Multi-node training through a Kubeflow Trainer TrainJob, against a local fake of the Kubernetes API
(:mod:`safetax.testing.fake_kube`) driven through the real ``kubernetes`` client.

The fake's controller runs each node as a local torchrun process with the ``PET_*`` variables the torch
runtime sets, so the success case is real 2-node training (gloo, one process per node), compared with
one process; the failure case is a real worker failure on node 1. The TrainJob the stage sends is
validated against the Trainer's CRD schema (tests/training/data, trimmed; unknown fields rejected).
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
import yaml
from safetensors.torch import load_file

from safetax.artifacts import CHECKPOINTS
from safetax.config import ConfigError
from safetax.records import read_jsonl, write_jsonl
from safetax.stages import prepare, train
from safetax.stages.prepare import SFT_FILE
from safetax.store import atomic_dir, is_complete
from safetax.testing.fake_kube import FakeKube
from safetax.training.multinode import TrainJobSettings, trainjob_settings
from safetax.training.trainjob import SharedVolume, TrainJobError, TrainJobSpec, trainjob_manifest

CRD = Path(__file__).parent / "data" / "trainer.kubeflow.org_trainjobs-v2.3.0.yaml"
FAST = {"batch_size": 4, "learning_rate": 3e-3, "epochs": 2, "seed": 3, "lora_dropout": 0.0}


def _strict(schema: Any) -> Any:
    """The schema with unknown fields rejected wherever it lists properties (the API server prunes them silently)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes")}
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    return [_strict(v) for v in schema] if isinstance(schema, list) else schema


def _validate(body: dict[str, Any]) -> None:
    crd = yaml.safe_load(CRD.read_text())
    schema = copy.deepcopy(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}  # metadata is ObjectMeta, not part of the CRD schema
    jsonschema.validate(body, _strict(schema))


def _spec(**kw: Any) -> TrainJobSpec:
    base = {"name": "safetax-lora-r4-0a1b2c3d", "namespace": "team-a", "image": "ghcr.io/example/safetax-train:1.2.3",
            "nodes": 2, "gpus_per_node": 8, "job_file": "/shared/run-1/lora-r4/job.json",
            "volumes": (SharedVolume("safetax-shared", "/shared"),),
            "env": ({"name": "SAFETAX_S3_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "access"}}},),
            "node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, "service_account": "safetax-train",
            "tolerations": ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},)}
    return TrainJobSpec(**base | kw)


def test_the_trainjob_matches_the_crd_schema_and_asks_for_what_the_run_needs() -> None:
    body = trainjob_manifest(_spec())
    _validate(body)
    spec = body["spec"]
    assert spec["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime", "name": "torch-distributed"}
    trainer = spec["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 8)
    assert trainer["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": "8"}
    assert trainer["command"] == ["python", "-m", "torch.distributed.run", "-m", "safetax.training.worker", "/shared/run-1/lora-r4/job.json"]
    assert {"name": "SAFETAX_S3_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "access"}}} in trainer["env"]
    pod = spec["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "shared-0", "persistentVolumeClaim": {"claimName": "safetax-shared"}}]
    assert pod["containers"] == [{"name": "node", "volumeMounts": [{"name": "shared-0", "mountPath": "/shared"}]}]
    assert pod["serviceAccountName"] == "safetax-train" and pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    # The check is not vacuous: a misspelt field (which the API server would drop) fails it.
    body["spec"]["trainer"]["numNode"] = 2
    with pytest.raises(jsonschema.ValidationError, match="numNode"):
        _validate(body)
    plain = _spec(volumes=(), node_selector={}, service_account="", tolerations=(), job_file="/j.json")
    assert "runtimePatches" not in trainjob_manifest(plain)["spec"]


def test_bad_trainjob_settings_are_reported_together() -> None:
    with pytest.raises(ConfigError) as e:
        _spec(name="Safetax_Job", nodes=0, job_file="/elsewhere/job.json")
    msg = str(e.value)
    assert "3 problem(s)" in msg and "`name` must be a DNS label" in msg and "`train_nodes` must be an integer >= 1, got 0" in msg
    assert "`job_file` must be a path on one of the shared volumes /shared" in msg


@pytest.fixture()
def sft20(tiny_model: Path, refusal_file: Path, tmp_path: Path) -> Path:
    prepare.run(prepare.PrepareConfig(str(refusal_file), str(tiny_model), max_length=128), tmp_path / "sft")
    return tmp_path / "sft"


def _settings(fake: FakeKube, shared: Path) -> TrainJobSettings:
    return TrainJobSettings(namespace="team-a", image="safetax-train:test", volume=SharedVolume("shared-pvc", str(shared)),
                            workdir=str(shared / "run-1" / "lora"), poll_seconds=0.05, api_client=fake.client(),
                            env=({"name": "SAFETAX_PROGRESS", "value": "0"},))


def test_two_nodes_train_like_one_process_and_relay_progress(tiny_model: Path, sft20: Path, tmp_path: Path) -> None:
    cfg = train.TrainConfig(method="lora", **FAST)
    one = train.run(cfg, str(tiny_model), sft20, tmp_path / "one")
    steps: list[tuple[float, ...]] = []
    with FakeKube(tmp_path) as fake:
        res = train.run(cfg, str(tiny_model), sft20, tmp_path / "two", on_step=lambda *a: steps.append(a), gpus=1, nodes=2,
                        trainjob=_settings(fake, tmp_path / "shared"))
        (body,) = fake.created
        assert fake.deleted == [] and fake.running() == []  # a completed TrainJob is left for inspection
    _validate(body)
    assert body["spec"]["trainer"]["numNodes"] == 2 and body["metadata"]["name"].startswith("safetax-lora-r4-")
    assert res.losses == pytest.approx(one.losses, rel=1e-6)
    assert [s[0] for s in steps] and len(steps) == 2 * 5 and steps[-1][2] == pytest.approx(2.0)  # node 0's progress lines
    for epoch in ("epoch-1", "epoch-2"):
        w1, w2 = (load_file(d / epoch / "adapter_model.safetensors") for d in (tmp_path / "one", tmp_path / "two"))
        assert all(torch.allclose(w2[k], w1[k], rtol=0, atol=1e-5) for k in w1)
    assert is_complete(tmp_path / "two") and json.loads((tmp_path / "two" / CHECKPOINTS).read_text())["checkpoints"]


def test_a_failed_node_fails_the_stage_naming_its_pod_and_deletes_the_trainjob(tiny_model: Path, sft20: Path, tmp_path: Path) -> None:
    # A token id outside the vocabulary in the example rank 1 (node 1) trains on first: its embedding raises.
    rows = read_jsonl(sft20 / SFT_FILE)
    first_batch = torch.randperm(len(rows), generator=torch.Generator().manual_seed(FAST["seed"])).tolist()[:4]
    rows[first_batch[1]]["input_ids"][0] = 10**6
    with atomic_dir(tmp_path / "bad-sft") as tmp:
        write_jsonl(tmp / SFT_FILE, rows)
    with FakeKube(tmp_path) as fake, pytest.raises(TrainJobError) as e:
        train.run(train.TrainConfig(method="lora", **FAST), str(tiny_model), tmp_path / "bad-sft", tmp_path / "out", gpus=1,
                  nodes=2, trainjob=_settings(fake, tmp_path / "shared"))
    name = fake.created[0]["metadata"]["name"]
    assert fake.deleted == [name] and fake.running() == []
    msg = str(e.value)
    assert f"TrainJob team-a/{name} failed (FailedJobs" in msg
    assert f"pod {name}-node-0-1 (node 1) exited with code 1 (IndexError: index out of range in self)" in msg
    assert "F.embedding(" in msg.split("Last log lines:")[1]  # the failed node's traceback
    assert not (tmp_path / "out").exists()


CANCEL_CHILD = """
import sys
from safetax.testing.fake_kube import FakeKube
from kubernetes import client
from safetax.training.trainjob import SharedVolume, TrainJobSpec, run_trainjob
cfg = client.Configuration(); cfg.host = sys.argv[1]
spec = TrainJobSpec(name="safetax-cancel-1", namespace="team-a", image="img:1", nodes=2, gpus_per_node=8,
                    job_file="/shared/job.json", volumes=(SharedVolume("pvc", "/shared"),))
run_trainjob(spec, api_client=client.ApiClient(cfg), poll_seconds=0.05)
"""


def test_cancelling_the_stage_deletes_its_trainjob(tmp_path: Path) -> None:
    # No free GPUs: the pods stay Pending until KFP cancels the task (SIGTERM to the stage's process).
    with FakeKube(tmp_path, start_pods=False) as fake:
        proc = subprocess.Popen([sys.executable, "-c", CANCEL_CHILD, fake.url], stderr=subprocess.PIPE, env=os.environ.copy())
        deadline = time.monotonic() + 60
        while not fake.created or len([r for r in fake.requests if r[0] == "GET"]) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()  # type: ignore[union-attr]
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) != 0
        assert fake.deleted == ["safetax-cancel-1"] and not fake.jobs
    assert "TrainJobCancelled: the train task was cancelled (SIGTERM)" in proc.stderr.read().decode()  # type: ignore[union-attr]


def test_train_nodes_need_the_trainjob_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"`train_nodes` must be 1, or > 1 with the TrainJob settings .* got 2"):
        train.run(train.TrainConfig(), "/nonexistent/model", tmp_path / "sft", tmp_path / "out", nodes=2)
    with pytest.raises(ConfigError, match=r"`workdir` must be a directory under the shared volume's mount path /shared/"):
        TrainJobSettings(namespace="a", image="i", volume=SharedVolume("pvc", "/shared"), workdir="/tmp/x")


def test_trainjob_settings_from_the_platform_pass_secrets_by_reference() -> None:
    platform = {"image": "ghcr.io/safetax/safetax-train:0.1.0", "volume_claim": "safetax-shared", "volume_path": "/shared/",
                "namespace": "team-a", "env": {"SAFETAX_S3_ENDPOINT": "http://minio:9000"}, "s3_secret": "minio-creds",
                "s3_secret_keys": {"access_key": "ak", "secret_key": "sk"}, "hf_token_secret": "hf",
                "node_selector": {"pool": "h100"}, "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}
    s = trainjob_settings(platform, "run-7", "full")
    assert (s.namespace, s.workdir, s.runtime, s.volume) == ("team-a", "/shared/run-7/full", "torch-distributed",
                                                             SharedVolume("safetax-shared", "/shared"))
    assert s.env == ({"name": "SAFETAX_S3_ENDPOINT", "value": "http://minio:9000"},
                     {"name": "SAFETAX_S3_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "minio-creds", "key": "ak"}}},
                     {"name": "SAFETAX_S3_SECRET_KEY", "valueFrom": {"secretKeyRef": {"name": "minio-creds", "key": "sk"}}},
                     {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}})
    spec = TrainJobSpec(name="safetax-full-1", namespace=s.namespace, image=s.image, nodes=2, gpus_per_node=8,
                        job_file=f"{s.workdir}/job.json", volumes=(s.volume,), env=s.env, node_selector=s.node_selector,
                        tolerations=s.tolerations)
    _validate(trainjob_manifest(spec))
    with pytest.raises(ConfigError, match=r"`volume_claim` must be set for train_nodes > 1"):
        trainjob_settings({"image": "i", "volume_path": "/shared"}, "run-7", "full")
