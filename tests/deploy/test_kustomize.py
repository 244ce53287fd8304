"""The kustomize base k8s/: it renders, every object validates, and it ships what the chart ships by default."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from safetax.platform import CODE_EXECUTION_LABEL

K8S = Path(__file__).resolve().parents[2] / "k8s"
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


def test_networkpolicy_denies_all_egress_of_code_execution_pods(kustomized: list[dict[str, Any]]) -> None:
    policy = one(kustomized, "NetworkPolicy")
    # The part-of label must not leak into the selector: it would stop matching the pipeline's pods.
    assert policy["spec"]["podSelector"] == {"matchLabels": dict([CODE_EXECUTION_LABEL])}
    assert policy["spec"]["policyTypes"] == ["Egress"] and policy["spec"]["egress"] == []


def test_registrar_rbac(kustomized: list[dict[str, Any]]) -> None:
    account, role, binding = (one(kustomized, k) for k in ("ServiceAccount", "Role", "RoleBinding"))
    assert role["rules"] == [{"apiGroups": ["pipelines.kubeflow.org"], "resources": ["pipelines", "pipelineversions"],
                              "verbs": ["get", "list", "create"]}]
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
    score = [e for name, e in executors.items() if name.startswith("exec-score")]
    assert score and all(e["podMetadata"]["labels"][CODE_EXECUTION_LABEL[0]] == CODE_EXECUTION_LABEL[1] for e in score)


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


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.relative_to(K8S).as_posix() for p in K8S.rglob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
