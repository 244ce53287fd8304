"""Fixtures of the deployment tests: the Helm chart rendered by real Helm (helm_python, no cluster),
the kustomize base rendered by ``kubectl kustomize``, and one validator for every object they produce.

Core kinds are checked by kubernetes-validate in strict mode (unknown fields are errors) against
Kubernetes ``KUBE_VERSION``; custom resources against the JSON schemas in ``tests/deploy/schemas``
(``<kind>-<group>-<version>.json``). A kind that neither knows is a failure, never a skip.
"""

from __future__ import annotations

import copy
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
# What `helm install` looks up from the EndpointSlice default/kubernetes (the API server's endpoints); a render without a
# cluster (these tests, `helm template`, Argo CD) must be given it, or the chart fails closed naming the value.
API_SERVER = {"networkPolicy": {"kubeAPIServer": {"cidrs": ["10.0.0.2/32"]}}}


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


def with_api_server(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the API server's CIDRs of :data:`API_SERVER` where they set none (what ``lookup`` would find)."""
    api = values.get("networkPolicy", {}).get("kubeAPIServer", {})
    if "cidrs" in api:
        return values
    network = values.get("networkPolicy", {})
    return {**values, "networkPolicy": {**network, "kubeAPIServer": {**api, **API_SERVER["networkPolicy"]["kubeAPIServer"]}}}


@pytest.fixture(scope="session")
def render(chart: Any) -> Callable[..., Rendered]:
    """``render(values, namespace=..., cluster=True)``: the chart as ``helm install`` into a cluster would render it
    (schema checked first). ``cluster=True`` stands in for the one ``lookup`` (the API server's endpoints, where the
    values give none: :data:`API_SERVER`); ``cluster=False`` renders like ``helm template`` or Argo CD."""

    def _render(values: dict[str, Any] | None = None, namespace: str = "kubeflow", cluster: bool = True) -> Rendered:
        values = with_api_server(values or {}) if cluster else (values or {})
        manifests = chart.render(values, name=RELEASE, namespace=namespace, is_install=True)
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
    """A ci values file; for "defaults", only the API server's CIDRs (what a render without a cluster needs)."""
    return load_values(values_file) if values_file else copy.deepcopy(API_SERVER)


def kustomize(path: Path) -> list[dict[str, Any]]:
    """The objects of ``kubectl kustomize <path>``."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed (.ci/run installs Debian's kubernetes-client)")
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubectl kustomize {path.relative_to(REPO)} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="session")
def kustomized() -> list[dict[str, Any]]:
    """The objects of ``kubectl kustomize k8s/``."""
    return kustomize(K8S)


@pytest.fixture(scope="session")
def kustomized_example() -> list[dict[str, Any]]:
    """The objects of ``kubectl kustomize k8s/overlays/example/``."""
    return kustomize(K8S / "overlays" / "example")


@dataclass(frozen=True)
class Destination:
    """Where a connection goes: a pod (its namespace's and its own labels) or an address outside the pod network."""

    port: int
    protocol: str = "TCP"
    namespace: str = ""
    pod_labels: dict[str, str] | None = None  # None: not a pod (an address, e.g. the API server or the internet)
    ip: str = ""

    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}  # set on every namespace since Kubernetes 1.22


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector's verdict on ``labels`` (an empty selector selects everything)."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for e in selector.get("matchExpressions", []):
        present, value = e["key"] in labels, labels.get(e["key"])
        ok = {"In": present and value in e.get("values", []), "NotIn": not present or value not in e.get("values", []),
              "Exists": present, "DoesNotExist": not present}[e["operator"]]
        if not ok:
            return False
    return True


def _peer_matches(peer: dict[str, Any], policy_namespace: str, to: Destination) -> bool:
    if "ipBlock" in peer:
        if not to.ip:
            return False
        import ipaddress

        address = ipaddress.ip_address(to.ip)
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(c) for c in block.get("except", []))
    if to.pod_labels is None:
        return False  # pod and namespace selectors select pods only
    if "namespaceSelector" in peer:
        namespace_ok = _selects(peer["namespaceSelector"], to.namespace_labels())
    else:
        namespace_ok = to.namespace == policy_namespace  # a podSelector alone: the policy's own namespace
    return namespace_ok and _selects(peer.get("podSelector", {}), to.pod_labels)


def egress_allows(policy: dict[str, Any], to: Destination) -> bool:
    """Whether ``policy`` (a NetworkPolicy with Egress in its policyTypes) lets its pods open a connection to ``to``,
    by the NetworkPolicy rules: a connection is allowed when one rule matches both a peer (no `to`: any) and a port
    (no `ports`: any). Named ports and endPort ranges are not used by safetax's policies and are not evaluated."""
    assert "Egress" in policy["spec"]["policyTypes"]
    namespace = policy["metadata"].get("namespace", "")
    for rule in policy["spec"].get("egress") or []:
        peers, ports = rule.get("to"), rule.get("ports")
        peer_ok = not peers or any(_peer_matches(p, namespace, to) for p in peers)
        port_ok = not ports or any(p.get("port") in (None, to.port) and p.get("protocol", "TCP") == to.protocol for p in ports)
        if peer_ok and port_ok:
            return True
    return False


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        pytest.skip("promtool not installed (.ci/run installs Debian's prometheus)")
    return path



@pytest.fixture()
def helm_error(render: Any) -> Callable[[dict[str, Any]], str]:
    """The error message of an install (a render) with ``values`` that must fail."""
    def error(values: dict[str, Any], cluster: bool = True) -> str:
        helm = pytest.importorskip("helm_python")
        with pytest.raises(helm.HelmError) as info:
            render(values, cluster=cluster)
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


@pytest.fixture(scope="session")
def reaches() -> Callable[..., bool]:
    """``reaches(policy, port, protocol="TCP", namespace=..., pod_labels=..., ip=...)``: :func:`egress_allows` on a
    :class:`Destination` (test modules cannot import from conftest under --import-mode=importlib)."""
    def check(policy: dict[str, Any], port: int, **where: Any) -> bool:
        return egress_allows(policy, Destination(port, **where))

    return check
