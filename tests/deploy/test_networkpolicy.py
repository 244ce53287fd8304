"""The egress policy of the code-execution pods (the score stage), in the chart and in k8s/: exactly the peers KFP's
launcher and Argo's wait container in the pod need on a standard Kubeflow Pipelines install, and nothing else.
Each policy is checked twice: its rules against the expected list, and by evaluating connections under the
NetworkPolicy rules (conftest's ``egress_allows``) to what the pod needs and to what it must not reach."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from safetax.platform import CODE_EXECUTION_LABEL

CHART = Path(__file__).resolve().parents[2] / "helm" / "safetax"
KFP_POD = {"application-crd-id": "kubeflow-pipelines"}  # on every pod of a standard KFP install
DNS_POD = {"k8s-app": "kube-dns", "pod-template-hash": "5d78c9869d"}
# (what, port, protocol, where): the launcher's and the wait container's connections on a standard install in kubeflow.
NEEDED = [
    ("cluster DNS over UDP", 53, "UDP", {"namespace": "kube-system", "pod_labels": DNS_POD}),
    ("cluster DNS over TCP", 53, "TCP", {"namespace": "kube-system", "pod_labels": DNS_POD}),
    ("MinIO (KFP <= 2.14)", 9000, "TCP", {"namespace": "kubeflow", "pod_labels": {"app": "minio", **KFP_POD}}),
    ("SeaweedFS (KFP >= 2.15)", 8333, "TCP", {"namespace": "kubeflow", "pod_labels": {"app": "seaweedfs", **KFP_POD}}),
    ("ml-pipeline gRPC (cache)", 8887, "TCP", {"namespace": "kubeflow", "pod_labels": {"app": "ml-pipeline", **KFP_POD}}),
    ("ml-pipeline HTTP", 8888, "TCP", {"namespace": "kubeflow", "pod_labels": {"app": "ml-pipeline", **KFP_POD}}),
    ("ML Metadata", 8080, "TCP", {"namespace": "kubeflow", "pod_labels": {"component": "metadata-grpc-server", **KFP_POD}}),
]
FORBIDDEN = [
    ("the internet", 443, "TCP", {"ip": "140.82.112.3"}),
    ("an outside resolver", 53, "UDP", {"ip": "1.1.1.1"}),
    ("the cloud metadata server", 80, "TCP", {"ip": "169.254.169.254"}),
    ("KFP's database", 3306, "TCP", {"namespace": "kubeflow", "pod_labels": {"app": "mysql", **KFP_POD}}),
    ("ml-pipeline on another port", 22, "TCP", {"namespace": "kubeflow", "pod_labels": {"app": "ml-pipeline", **KFP_POD}}),
    ("a MinIO look-alike in another namespace", 9000, "TCP", {"namespace": "attacker", "pod_labels": {"app": "minio"}}),
    ("the DNS pods on another port", 80, "TCP", {"namespace": "kube-system", "pod_labels": DNS_POD}),
    ("another kube-system pod on port 53", 53, "UDP", {"namespace": "kube-system", "pod_labels": {"k8s-app": "metrics-server"}}),
    ("a pipeline pod beside it", 8080, "TCP", {"namespace": "kubeflow", "pod_labels": {"pipelines.kubeflow.org/v2_component": "true"}}),
    ("the KFP UI", 3000, "TCP", {"namespace": "kubeflow", "pod_labels": {"app": "ml-pipeline-ui", **KFP_POD}}),
]
PUSHGATEWAY = {"app.kubernetes.io/name": "safetax", "app.kubernetes.io/instance": "safetax", "app.kubernetes.io/component": "pushgateway"}


def peer(namespace: str, **labels: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}, "podSelector": {"matchLabels": labels}}


def tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"port": p, "protocol": "TCP"} for p in ports]


def kfp_rules(namespace: str = "kubeflow", minio: bool = True) -> list[dict[str, Any]]:
    """DNS and the KFP peers, in the chart's order (kfpPeers by name)."""
    return [
        {"to": [peer("kube-system", **{"k8s-app": "kube-dns"})], "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
        {"to": [peer(namespace, component="metadata-grpc-server")], "ports": tcp(8080)},
        *([{"to": [peer(namespace, app="minio")], "ports": tcp(9000)}] if minio else []),
        {"to": [peer(namespace, app="ml-pipeline")], "ports": tcp(8887, 8888)},
        {"to": [peer(namespace, app="seaweedfs")], "ports": tcp(8333)},
    ]


def pushgateway_rule(namespace: str = "kubeflow", labels: dict[str, str] = PUSHGATEWAY) -> dict[str, Any]:
    return {"to": [peer(namespace, **labels)], "ports": tcp(9091)}


def api_server_rule(*cidrs: str, ports: tuple[int, ...] = (443, 6443)) -> dict[str, Any]:
    return {"to": [{"ipBlock": {"cidr": c}} for c in cidrs], "ports": tcp(*ports)}


def check_reachability(policy: dict[str, Any], reaches: Any, extra_needed: list[tuple[str, int, str, dict[str, Any]]] = ()) -> None:
    """Everything the pod needs is allowed; nothing of FORBIDDEN is."""
    for what, port, protocol, where in [*NEEDED, *extra_needed]:
        assert reaches(policy, port, protocol=protocol, **where), f"{policy['metadata']['namespace']}: {what} is blocked"
    for what, port, protocol, where in FORBIDDEN:
        assert not reaches(policy, port, protocol=protocol, **where), f"{policy['metadata']['namespace']}: {what} is allowed"


def test_default_policy_lets_the_launcher_work_and_nothing_else(render: Any, validate: Any, reaches: Any) -> None:
    rendered = render({})  # the API server found at 10.0.0.2 (the render fixture's stand-in for `lookup`)
    policy = rendered.one("NetworkPolicy")
    validate(policy)
    assert policy["metadata"]["namespace"] == "kubeflow"
    assert policy["spec"]["podSelector"] == {"matchLabels": dict([CODE_EXECUTION_LABEL])}
    assert policy["spec"]["policyTypes"] == ["Egress"]
    assert policy["spec"]["egress"] == [*kfp_rules(), pushgateway_rule(), api_server_rule("10.0.0.2/32")]
    pushgateway = rendered.one("Deployment", "pushgateway")["spec"]["template"]["metadata"]["labels"]
    check_reachability(policy, reaches, [("the Pushgateway", 9091, "TCP", {"namespace": "kubeflow", "pod_labels": pushgateway})])
    assert reaches(policy, 443, ip="10.0.0.2") and not reaches(policy, 443, ip="10.0.0.1")
    assert "the Kubernetes API server (10.0.0.2/32)" in rendered.notes


def test_a_render_without_a_cluster_fails_closed_without_the_api_servers_cidrs(render: Any, helm_error: Any) -> None:
    """`helm template` and Argo CD cannot look up the API server: a policy without its rule would break every code
    pod's launcher, so the render fails naming the value to set and how to find it."""
    message = helm_error({}, cluster=False)
    assert "networkPolicy.kubeAPIServer.cidrs is empty" in message
    assert "kubectl get endpoints kubernetes -n default -o jsonpath=" in message and "Argo CD" in message
    given = render({"networkPolicy": {"kubeAPIServer": {"cidrs": ["10.0.0.7/32"]}}}, cluster=False).one("NetworkPolicy")
    assert given["spec"]["egress"][-1] == api_server_rule("10.0.0.7/32")
    # Without the policy, or without its API-server rule, nothing needs the address.
    assert not render({"networkPolicy": {"enabled": False}}, cluster=False).of_kind("NetworkPolicy")
    off = render({"networkPolicy": {"kubeAPIServer": {"enabled": False}}}, cluster=False).one("NetworkPolicy")
    assert not [r for r in off["spec"]["egress"] if "ipBlock" in r["to"][0]]


def test_api_server_endpoints_and_their_ports(render: Any, reaches: Any) -> None:
    rendered = render({"networkPolicy": {"kubeAPIServer": {"cidrs": ["10.0.0.5/32", "fd00::5/128"]}}})
    policy = rendered.one("NetworkPolicy")
    assert policy["spec"]["egress"][-1] == api_server_rule("10.0.0.5/32", "fd00::5/128")
    for port in (443, 6443):
        assert reaches(policy, port, ip="10.0.0.5") and reaches(policy, port, ip="fd00::5")
    assert not reaches(policy, 22, ip="10.0.0.5") and not reaches(policy, 443, ip="10.0.0.6")
    assert "the Kubernetes API server (10.0.0.5/32, fd00::5/128)" in rendered.notes and "WARNING" not in rendered.notes
    only = render({"networkPolicy": {"kubeAPIServer": {"cidrs": ["10.0.0.5/32"], "ports": [6443]}}}).one("NetworkPolicy")
    assert only["spec"]["egress"][-1] == api_server_rule("10.0.0.5/32", ports=(6443,))
    off = render({"networkPolicy": {"kubeAPIServer": {"enabled": False, "cidrs": ["10.0.0.5/32"]}}})
    assert not [r for r in off.one("NetworkPolicy")["spec"]["egress"] if "ipBlock" in r["to"][0]]
    assert "WARNING" not in off.notes


def test_every_namespace_running_pipelines_gets_the_policy(render: Any, validate: Any, reaches: Any) -> None:
    """ci/network-policy-values.yaml: the KFP namespace and a profile namespace (multi-user KFP), a KFP 2.16+ install
    without MinIO, the API server given, NodeLocal DNSCache and an external S3 endpoint allowed."""
    values = yaml.safe_load((CHART / "ci" / "network-policy-values.yaml").read_text())
    policies = render(values).of_kind("NetworkPolicy")
    assert [p["metadata"]["namespace"] for p in policies] == ["kubeflow", "team-safety"]
    for policy in policies:
        validate(policy)
        assert policy["spec"]["egress"] == [*kfp_rules(minio=False), pushgateway_rule(),
                                            api_server_rule("172.20.0.10/32", "172.20.0.11/32", ports=(443,)),
                                            *values["networkPolicy"]["allowedEgress"]]
        # From the profile namespace too, KFP's pods are the ones in kubeflow, never look-alikes in the namespace itself.
        assert reaches(policy, 8888, namespace="kubeflow", pod_labels={"app": "ml-pipeline"})
        assert not reaches(policy, 8888, namespace="team-safety", pod_labels={"app": "ml-pipeline"})
        assert not reaches(policy, 9000, namespace="kubeflow", pod_labels={"app": "minio"})  # removed: KFP >= 2.16
        assert reaches(policy, 53, protocol="UDP", ip="169.254.20.10") and reaches(policy, 443, ip="52.217.1.1")
        assert reaches(policy, 443, ip="172.20.0.11") and not reaches(policy, 6443, ip="172.20.0.11")


def test_kfp_and_pushgateway_peers_follow_the_values(render: Any, reaches: Any) -> None:
    policy = render({"kfp": {"namespace": "ml-pipelines"}, "pushgateway": {"enabled": False, "address": "pg.monitoring:9091"}},
                    namespace="safetax").one("NetworkPolicy")
    assert policy["metadata"]["namespace"] == "ml-pipelines"
    # An external Pushgateway goes into allowedEgress.
    assert policy["spec"]["egress"] == [*kfp_rules("ml-pipelines"), api_server_rule("10.0.0.2/32")]
    assert reaches(policy, 8080, namespace="ml-pipelines", pod_labels={"component": "metadata-grpc-server"})
    assert not reaches(policy, 8080, namespace="kubeflow", pod_labels={"component": "metadata-grpc-server"})
    # The bundled Pushgateway lives in the release's namespace, wherever the policy is.
    bundled = render({"networkPolicy": {"namespaces": ["team-a"]}}, namespace="safetax").one("NetworkPolicy")
    assert bundled["spec"]["egress"][-2] == pushgateway_rule("safetax")
    # OpenShift's DNS; Helm merges maps, so the default pod label is removed with null.
    custom = {"networkPolicy": {"dns": {"namespaceLabels": {"kubernetes.io/metadata.name": "openshift-dns"},
                                        "podLabels": {"k8s-app": None, "dns.operator.openshift.io/daemonset-dns": "default"}}}}
    dns = render(custom).one("NetworkPolicy")["spec"]["egress"][0]["to"][0]
    assert dns == peer("openshift-dns", **{"dns.operator.openshift.io/daemonset-dns": "default"})
    assert not render({"networkPolicy": {"enabled": False}}).of_kind("NetworkPolicy")


def test_no_chart_rule_allows_every_destination_or_port(render: Any) -> None:
    """A rule without `to` (or `ports`) would allow every destination (or port): the chart writes none."""
    values = {"networkPolicy": {"namespaces": ["a", "b"], "kubeAPIServer": {"cidrs": ["10.0.0.5/32"]}}}
    for policy in render(values).of_kind("NetworkPolicy"):
        for rule in policy["spec"]["egress"]:
            assert rule.get("to") and rule.get("ports"), rule
            assert all(p.get("podSelector", {}).get("matchLabels") or "ipBlock" in p for p in rule["to"]), rule
            assert "0.0.0.0/0" not in str(rule)


@pytest.mark.parametrize(("values", "expected"), [
    ({"networkPolicy": {"enabled": True, "kubeAPIServer": {"cidrs": ["10.0.0.5"]}}}, ["/networkPolicy/kubeAPIServer/cidrs/0"]),
    # A peer without pod labels would be every pod of the KFP namespace.
    ({"networkPolicy": {"enabled": True, "kfpPeers": {"s3-gateway": {"podLabels": {}, "ports": [7480]}}}},
     ["/networkPolicy/kfpPeers/s3-gateway"]),
    ({"networkPolicy": {"enabled": True, "kfpPeers": {"minio": {"podLabels": {"app": "minio"}, "ports": [0]}}}},
     ["/networkPolicy/kfpPeers/minio"]),
    ({"networkPolicy": {"enabled": True, "namespaces": ["Team_A"]}}, ["/networkPolicy/namespaces/0"]),
    ({"networkPolicy": {"enabled": True, "allowEgress": []}}, ["/networkPolicy", "allowEgress"]),
])
def test_bad_policy_values_are_rejected(assert_rejected: Any, values: dict[str, Any], expected: list[str]) -> None:
    assert_rejected(values, expected)


def test_kustomize_base_has_the_charts_rules(kustomized: list[dict[str, Any]], reaches: Any) -> None:
    (policy,) = [d for d in kustomized if d["kind"] == "NetworkPolicy"]
    # The part-of label must not leak into the selector: it would stop matching the pipeline's pods.
    assert policy["spec"]["podSelector"] == {"matchLabels": dict([CODE_EXECUTION_LABEL])}
    (pushgateway,) = [d for d in kustomized if d["kind"] == "Deployment"]
    labels = pushgateway["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["egress"] == [*kfp_rules(), pushgateway_rule(labels=labels)]
    check_reachability(policy, reaches, [("the Pushgateway", 9091, "TCP", {
        "namespace": "kubeflow", "pod_labels": pushgateway["spec"]["template"]["metadata"]["labels"]})])


def test_example_overlay_adds_the_api_server(kustomized_example: list[dict[str, Any]], reaches: Any) -> None:
    (policy,) = [d for d in kustomized_example if d["kind"] == "NetworkPolicy"]
    *base, api = policy["spec"]["egress"]
    assert base[:len(kfp_rules())] == kfp_rules()
    assert api == api_server_rule("192.0.2.10/32")
    assert reaches(policy, 6443, ip="192.0.2.10")
    check_reachability(policy, reaches)


SLICE = """
addressType: IPv4
endpoints:
  - addresses: [172.20.0.10]
    conditions: {ready: true}
  - addresses: [172.20.0.11]
  - addresses: [172.20.0.12]
    conditions: {ready: false}
ports:
  - {name: https, port: 6443, protocol: TCP}
"""


@pytest.mark.parametrize(("api", "slice_yaml", "expected"), [
    ({"enabled": True}, SLICE, {"cidrs": ["172.20.0.10/32", "172.20.0.11/32"], "ports": [6443]}),  # not the unready one
    ({"enabled": True}, "endpoints: [{addresses: ['fd00::1']}]\nports: [{port: 443}]", {"cidrs": ["fd00::1/128"], "ports": [443]}),
    ({"enabled": True, "ports": [443]}, SLICE, {"cidrs": ["172.20.0.10/32", "172.20.0.11/32"], "ports": [443]}),
    ({"enabled": True, "cidrs": ["10.1.0.0/28"]}, SLICE, {"cidrs": ["10.1.0.0/28"], "ports": [443, 6443]}),
    ({"enabled": True}, "{}", {"cidrs": [], "ports": [443, 6443]}),  # nothing looked up (helm template)
    ({"enabled": False}, SLICE, {"cidrs": [], "ports": [6443]}),
])
def test_api_server_endpoints_from_the_endpointslice(tmp_path: Path, api: dict[str, Any], slice_yaml: str,
                                                     expected: dict[str, Any]) -> None:
    """What `helm install` looks up (an EndpointSlice default/kubernetes), through the chart's own helper: an offline
    render cannot look up, so a copy of the chart renders the helper on a given slice."""
    import shutil

    helm = pytest.importorskip("helm_python")
    chart = tmp_path / "safetax"
    shutil.copytree(CHART, chart)
    literal = lambda value: json.dumps(json.dumps(value))  # noqa: E731 (a JSON document as a Go string literal)
    (chart / "templates" / "zz-endpoints-test.yaml").write_text(
        f"{{{{- $api := fromJson {literal(api)} }}}}\n"
        f"{{{{- $slice := fromJson {literal(yaml.safe_load(slice_yaml))} }}}}\n"
        'endpoints: {{ include "safetax.networkPolicy.endpoints" (dict "api" $api "slice" $slice) | toJson }}\n')
    with helm.Chart.load(str(chart)) as loaded:
        text = loaded.render({"networkPolicy": {"enabled": False}}, name="safetax", namespace="kubeflow",
                             is_install=True)["safetax/templates/zz-endpoints-test.yaml"]
    assert yaml.safe_load(yaml.safe_load(text)["endpoints"]) == expected
