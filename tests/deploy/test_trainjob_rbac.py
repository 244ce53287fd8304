"""The chart's RBAC for multi-node training (templates/trainjob-rbac.yaml), rendered by real Helm.

The chart's values and their schema name the `trainJobs` values the template reads; until they are in
values.yaml / values.schema.json the test renders a copy of the chart with exactly that addition
(:data:`VALUES_ADDITION`, :data:`SCHEMA_ADDITION`). Once they are merged, the copy adds nothing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "safetax"
RELEASE = "safetax"

VALUES_ADDITION = """
trainJobs:
  # -- Let pipeline pods run multi-node training (`train_nodes` > 1) as Kubeflow Trainer TrainJobs (written against
  # Trainer v2.3.0): a Role and RoleBinding in each namespace of `namespaces` to create/get/list/watch/delete TrainJobs
  # and get/list pods and their logs
  rbac: false
  # -- Namespaces where pipeline pods run (the KFP namespace, profile namespaces); empty = `kfp.namespace`
  namespaces: []
  # -- ServiceAccounts of the pipeline pods in those namespaces (`pipeline-runner` in standalone KFP, `default-editor`
  # in multi-user Kubeflow)
  serviceAccounts: [pipeline-runner]
"""
SCHEMA_ADDITION = {"type": "object", "additionalProperties": False, "properties": {
    "rbac": {"type": "boolean"},
    "namespaces": {"type": "array", "items": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}},
    "serviceAccounts": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}}}


@pytest.fixture(scope="module")
def chart_with_trainjobs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk (the [test] extra) renders the chart")
    copy = tmp_path_factory.mktemp("chart") / "safetax"
    shutil.copytree(CHART, copy)
    values = yaml.safe_load((copy / "values.yaml").read_text())
    if "trainJobs" not in values:
        (copy / "values.yaml").write_text((copy / "values.yaml").read_text() + VALUES_ADDITION)
    schema = json.loads((copy / "values.schema.json").read_text())
    schema["properties"].setdefault("trainJobs", SCHEMA_ADDITION)
    (copy / "values.schema.json").write_text(json.dumps(schema))
    with helm.Chart.load(str(copy)) as loaded:
        yield loaded


def _render(chart: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
    # No NetworkPolicy: it needs the API server's address, which an offline render cannot look up (and RBAC does not).
    manifests = chart.render({**values, "networkPolicy": {"enabled": False}}, name=RELEASE, namespace="kubeflow", is_install=True)
    text = manifests.get("safetax/templates/trainjob-rbac.yaml", "")
    return [d for d in yaml.safe_load_all(text) if d]


def test_trainjob_rbac_is_off_by_default(chart_with_trainjobs: Any) -> None:
    assert _render(chart_with_trainjobs, {}) == []


def test_trainjob_rbac_grants_exactly_what_the_train_stage_calls(chart_with_trainjobs: Any, validate: Any) -> None:
    docs = _render(chart_with_trainjobs, {"trainJobs": {"rbac": True, "namespaces": ["team-a", "team-b"],
                                                        "serviceAccounts": ["default-editor"]}})
    for doc in docs:
        validate(doc)
    roles = [d for d in docs if d["kind"] == "Role"]
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert [r["metadata"]["namespace"] for r in roles] == ["team-a", "team-b"] == [b["metadata"]["namespace"] for b in bindings]
    assert roles[0]["rules"] == [
        {"apiGroups": ["trainer.kubeflow.org"], "resources": ["trainjobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    ]
    assert bindings[1]["subjects"] == [{"kind": "ServiceAccount", "name": "default-editor", "namespace": "team-b"}]
    assert bindings[1]["roleRef"]["name"] == roles[1]["metadata"]["name"]


def test_trainjob_rbac_defaults_to_the_kfp_namespace_and_its_runner(chart_with_trainjobs: Any) -> None:
    docs = _render(chart_with_trainjobs, {"trainJobs": {"rbac": True}})
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "kubeflow"}]
