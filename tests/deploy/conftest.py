"""Fixtures of the deployment tests: the Helm chart rendered by real Helm (helm_python, no cluster),
the kustomize base rendered by ``kubectl kustomize``, and one validator for every object they produce.

Core kinds are checked by kubernetes-validate in strict mode (unknown fields are errors) against
Kubernetes ``KUBE_VERSION``; custom resources against the JSON schemas in ``tests/deploy/schemas``
(``<kind>-<group>-<version>.json``). A kind that neither knows is a failure, never a skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "safetax"
K8S = REPO / "k8s"
SCHEMAS = Path(__file__).parent / "schemas"
KUBE_VERSION = "1.30"  # the oldest Kubernetes the deployment is checked against (Chart.yaml: >=1.27)
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "safetax"


def load_values(path: Path) -> dict[str, Any]:
    """A values file as a dict (an empty file or `{}` is no override)."""
    return yaml.safe_load(path.read_text()) or {}


@dataclass
class Rendered:
    """The objects a chart rendered (NOTES.txt apart), each with the template it came from."""

    objects: list[tuple[str, dict[str, Any]]]
    notes: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for _, doc in self.objects if doc["kind"] == kind]

    def one(self, kind: str, component: str | None = None) -> dict[str, Any]:
        """The single object of ``kind`` (with ``app.kubernetes.io/component: component`` if given)."""
        docs = [d for d in self.of_kind(kind)
                if component is None or d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component]
        assert len(docs) == 1, f"expected one {kind} (component {component}), got {len(docs)}: {[d['metadata']['name'] for d in docs]}"
        return docs[0]

    def kinds(self) -> set[str]:
        return {doc["kind"] for _, doc in self.objects}


@pytest.fixture(scope="session")
def chart() -> Iterator[Any]:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk (the [test] extra) renders the chart")
    with helm.Chart.load(str(CHART)) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: Any) -> Callable[..., Rendered]:
    """``render(values, namespace=...)``: the chart as ``helm install`` would render it (schema checked first)."""

    def _render(values: dict[str, Any] | None = None, namespace: str = "kubeflow") -> Rendered:
        manifests = chart.render(values or {}, name=RELEASE, namespace=namespace, is_install=True)
        objects, notes = [], ""
        for template, text in sorted(manifests.items()):
            if template.endswith("NOTES.txt"):
                notes = text
                continue
            objects += [(template, doc) for doc in yaml.safe_load_all(text) if doc]
        return Rendered(objects, notes)

    return _render


def _custom_schema(doc: dict[str, Any]) -> Path | None:
    group, _, version = doc["apiVersion"].rpartition("/")
    path = SCHEMAS / f"{doc['kind'].lower()}-{group}-{version}.json"
    return path if group and path.is_file() else None


def validate_object(doc: dict[str, Any]) -> None:
    """Raise AssertionError naming the object when it does not validate (or its kind is unknown)."""
    where = f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}"
    schema_path = _custom_schema(doc)
    try:
        if schema_path:
            schema = json.loads(schema_path.read_text())
            jsonschema.Draft202012Validator(schema).validate(doc)
        else:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError as e:
        raise AssertionError(f"{where}: no schema for {doc['apiVersion']} {doc['kind']} ({e.message}); "
                             f"add one to {SCHEMAS.relative_to(REPO)}") from None
    except jsonschema.ValidationError as e:
        path = "/".join(str(p) for p in e.absolute_path)
        raise AssertionError(f"{where}: invalid at /{path}: {e.message}") from None


@pytest.fixture(scope="session")
def validate() -> Callable[[dict[str, Any]], None]:
    return validate_object


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes ``values_file`` runs once for the chart's defaults and once per ``ci/*-values.yaml``."""
    if "values_file" in metafunc.fixturenames:
        metafunc.parametrize("values_file", [None, *CI_VALUES], ids=["defaults", *(p.stem for p in CI_VALUES)])


@pytest.fixture()
def values(values_file: Path | None) -> dict[str, Any]:
    return load_values(values_file) if values_file else {}


@pytest.fixture(scope="session")
def kustomized() -> list[dict[str, Any]]:
    """The objects of ``kubectl kustomize k8s/``."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed (.ci/run installs Debian's kubernetes-client)")
    out = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubectl kustomize k8s/ failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        pytest.skip("promtool not installed (.ci/run installs Debian's prometheus)")
    return path



@pytest.fixture()
def helm_error(render: Any) -> Callable[[dict[str, Any]], str]:
    """The error message of an install (a render) with ``values`` that must fail."""
    def error(values: dict[str, Any]) -> str:
        helm = pytest.importorskip("helm_python")
        with pytest.raises(helm.HelmError) as info:
            render(values)
        return str(info.value)

    return error


@pytest.fixture()
def assert_rejected(chart: Any, helm_error: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any], list[str]], None]:
    """Check that the values schema rejects ``values`` naming every text of ``expected``, and an install fails the same way."""
    def check(values: dict[str, Any], expected: list[str]) -> None:
        helm = pytest.importorskip("helm_python")
        with pytest.raises(helm.HelmValuesError) as info:
            chart.validate_schema(values)
        for text in expected:
            assert text in str(info.value), str(info.value)
        assert all(text in helm_error(values) for text in expected)

    return check
