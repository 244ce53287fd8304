"""The kustomize deployment k8s/ (base/ and the pipelines) and its example overlay: they render, every object validates,
and they ship what the chart ships by default. The egress policy: test_networkpolicy.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from safetax.platform import CODE_EXECUTION_LABEL, load_platform
from safetax.runner import compile_manifests

K8S = Path(__file__).resolve().parents[2] / "k8s"
EXAMPLE = K8S / "overlays" / "example"
EXPECTED_KINDS = {"Deployment", "Service", "ServiceMonitor", "PrometheusRule", "NetworkPolicy",
                  "ServiceAccount", "Role", "RoleBinding", "Pipeline", "PipelineVersion"}


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def test_every_object_validates(kustomized: list[dict[str, Any]], validate: Any) -> None:
    assert {d["kind"] for d in kustomized} == EXPECTED_KINDS
    for doc in kustomized:
        validate(doc)
        assert doc["metadata"]["namespace"] == "kubeflow", f"{doc['kind']} {doc['metadata']['name']}"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "safetax"


def test_registrar_rbac(kustomized: list[dict[str, Any]]) -> None:
    account, role, binding = (one(kustomized, k) for k in ("ServiceAccount", "Role", "RoleBinding"))
    assert role["rules"] == [{"apiGroups": ["pipelines.kubeflow.org"], "resources": ["pipelines", "pipelineversions"],
                              "verbs": ["get", "list", "create"]},
                             {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["ml-pipeline"], "verbs": ["get"]}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "kubeflow"}]


@pytest.mark.parametrize("name", ["alignment", "audit"])
def test_pipeline_custom_resources(kustomized: list[dict[str, Any]], name: str) -> None:
    [pipeline] = [d for d in kustomized if d["kind"] == "Pipeline" and d["metadata"]["name"] == f"safetax-{name}"]
    [version] = [d for d in kustomized if d["kind"] == "PipelineVersion" and d["spec"]["pipelineName"] == f"safetax-{name}"]
    name = pipeline["metadata"]["name"]
    assert re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{10}}", version["metadata"]["name"])  # named by the spec digest
    # kustomize adds only the namespace and labels: the specs are the compiled file's.
    compiled = {d["kind"]: d for d in yaml.safe_load_all((K8S / "pipelines" / f"{name.removeprefix('safetax-')}.yaml").read_text())}
    assert pipeline["spec"] == compiled["Pipeline"]["spec"] and version["spec"] == compiled["PipelineVersion"]["spec"]
    executors = version["spec"]["platformSpec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    code = [e for name, e in executors.items() if name.startswith("exec-execute-code")]
    assert code and all(e["podMetadata"]["labels"][CODE_EXECUTION_LABEL[0]] == CODE_EXECUTION_LABEL[1] for e in code)
    assert all(CODE_EXECUTION_LABEL[0] not in e.get("podMetadata", {}).get("labels", {})
               for name, e in executors.items() if not name.startswith("exec-execute-code"))


def test_same_pushgateway_and_alerts_as_the_chart(kustomized: list[dict[str, Any]], render: Any) -> None:
    chart = render({"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}})
    deployment = one(kustomized, "Deployment")
    ours = deployment["spec"]["template"]["spec"]["containers"][0]
    theirs = chart.one("Deployment", "pushgateway")["spec"]["template"]["spec"]["containers"][0]
    for key in ("image", "ports", "livenessProbe", "readinessProbe", "securityContext", "resources"):
        assert ours[key] == theirs[key], key
    service, monitor = one(kustomized, "Service"), one(kustomized, "ServiceMonitor")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert one(kustomized, "PrometheusRule")["spec"] == chart.one("PrometheusRule")["spec"]


def test_kustomizations_list_every_manifest() -> None:
    """Every YAML file under k8s/ is a resource, a patch or a platform file of exactly one kustomization."""
    used: list[str] = []
    for kustomization in K8S.rglob("kustomization.yaml"):
        here = kustomization.parent
        doc = yaml.safe_load(kustomization.read_text())
        for entry in [*doc.get("resources", []), *(p["path"] for p in doc.get("patches", []) if "path" in p)]:
            if (here / entry).is_file():
                used.append((here / entry).resolve().relative_to(K8S).as_posix())
            else:
                assert (here / entry / "kustomization.yaml").is_file(), f"{kustomization}: {entry} is neither a file nor a kustomization"
        if (here / "platform.yaml").is_file():
            used.append((here / "platform.yaml").relative_to(K8S).as_posix())
    on_disk = {p.relative_to(K8S).as_posix() for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert sorted(used) == sorted(on_disk)


def test_example_overlay(kustomized_example: list[dict[str, Any]], kustomized: list[dict[str, Any]], validate: Any) -> None:
    """k8s/overlays/example: the base's objects as they are (the NetworkPolicy apart), and the pipelines compiled
    with its platform file: S3 endpoint, Secret and Pushgateway in the stages' environment, scratch volumes, vLLM."""
    assert {d["kind"] for d in kustomized_example} == EXPECTED_KINDS
    for doc in kustomized_example:
        validate(doc)
        assert doc["metadata"]["namespace"] == "kubeflow" and doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "safetax"
    infra = {(d["kind"], d["metadata"]["name"]): d for d in kustomized if d["kind"] not in ("Pipeline", "PipelineVersion")}
    overlay = {(d["kind"], d["metadata"]["name"]): d for d in kustomized_example if d["kind"] not in ("Pipeline", "PipelineVersion")}
    assert overlay.keys() == infra.keys()
    assert [k for k in infra if infra[k] != overlay[k]] == [("NetworkPolicy", "safetax-code-execution")]
    platform = load_platform(str(EXAMPLE / "platform.yaml"))
    assert platform.generation_backend == "vllm" and platform.settings("train").scratch_size == "200Gi"
    versions = {d["spec"]["pipelineName"]: d for d in kustomized_example if d["kind"] == "PipelineVersion"}
    assert set(versions) == {"safetax-alignment", "safetax-audit"}
    for version in versions.values():
        executors = version["spec"]["pipelineSpec"]["deploymentSpec"]["executors"]
        placement = version["spec"]["platformSpec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        for name, executor in executors.items():
            env = {e["name"]: e.get("value") for e in executor.get("container", {}).get("env", [])}
            if name.startswith("exec-execute-code"):  # model-written code: no store endpoint, no Secret
                assert not env and "secretAsEnv" not in placement[name], name
                continue
            assert env["SAFETAX_S3_ENDPOINT"] == platform.env["SAFETAX_S3_ENDPOINT"], name
            assert env["SAFETAX_PUSHGATEWAY"] == "safetax-pushgateway.kubeflow:9091", name
            assert placement[name]["secretAsEnv"][0]["secretName"] == "mlpipeline-minio-artifact", name
    train = versions["safetax-alignment"]["spec"]["platformSpec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert "200Gi" in str(train)  # the scratch volume


def test_example_overlay_pipelines_are_compiled_from_its_platform(tmp_path: Path) -> None:
    """The overlay's compiled files are golden: stale ones fail, naming the command that recompiles them."""
    fresh = compile_manifests(tmp_path, str(EXAMPLE / "platform.yaml"))
    assert sorted(p.name for p in fresh) == sorted(p.name for p in (EXAMPLE / "pipelines").glob("*.yaml"))
    for path in fresh:
        stored = list(yaml.safe_load_all((EXAMPLE / "pipelines" / path.name).read_text()))
        assert list(yaml.safe_load_all(path.read_text())) == stored, (
            f"k8s/overlays/example/pipelines/{path.name} is stale: run `safetax compile --k8s-manifests --platform "
            "k8s/overlays/example/platform.yaml --out k8s/overlays/example/pipelines` (or `make compile`)")
