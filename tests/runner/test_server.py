"""The KFP backend check: a real HTTP server on 127.0.0.1 answers healthz like KFP's API server."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from safetax.runner import server
from safetax.runner.schedules import TOKEN_PATH_ENV


class FakeKfp:
    """What the fake API server answers: ``GET /apis/v2beta1/healthz`` as KFP's api server does (main.go's healthzResponse)."""

    def __init__(self) -> None:
        self.tag = server.MIN_KFP_BACKEND
        self.v2 = True  # False: a 1.x backend, v1beta1 healthz only
        self.status = 200
        self.body: bytes | None = None  # an answer other than KFP's JSON
        self.requests: list[tuple[str, str | None]] = []  # (path, Authorization header)

    def answer(self, path: str) -> tuple[int, bytes, str]:
        if path not in server.HEALTHZ_PATHS or (path == server.HEALTHZ_PATHS[0] and not self.v2):
            return 404, b'{"error": "Not Found"}', "application/json"
        if self.body is not None:
            return self.status, self.body, "text/html"
        body = {"commit_sha": "55ec8469d5", "tag_name": self.tag, "multi_user": False, "pipeline_store": "database"}
        return self.status, json.dumps(body).encode(), "application/json"


@pytest.fixture()
def kfp() -> Iterator[tuple[FakeKfp, str]]:
    """A fake KFP API server on a free loopback port, stopped at the end; yields it and its URL."""
    fake = FakeKfp()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            fake.requests.append((self.path, self.headers.get("Authorization")))
            status, body, kind = fake.answer(self.path)
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture(autouse=True)
def no_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No service-account token unless a test gives one (the default path may exist on a cluster node)."""
    monkeypatch.setenv(TOKEN_PATH_ENV, str(tmp_path / "no-token"))


def test_minimum_is_the_newest_feature_and_cites_sources() -> None:
    assert server.MIN_KFP_BACKEND == "2.15.0"
    assert max(server.parse_version(f.version) for f in server.FEATURES) == server.parse_version(server.MIN_KFP_BACKEND)
    assert [f.version for f in server.FEATURES] == ["2.4.0", "2.14.0", "2.15.0"]
    for feature in server.FEATURES:
        assert "kubeflow/pipelines#" in feature.source and feature.feature


@pytest.mark.parametrize("tag", ["2.15.0", "2.16.1", "2.17.0", "v2.15.0", "3.0.0"])
def test_minimum_and_newer_pass(kfp: tuple[FakeKfp, str], tag: str) -> None:
    fake, url = kfp
    fake.tag = tag
    assert server.check_backend(url) == tag
    assert fake.requests == [("/apis/v2beta1/healthz", None)]


@pytest.mark.parametrize(
    ("tag", "lacking"),
    [
        ("2.14.4", ["optional"]),  # artifact fan-in is there, the secret's `optional` field is not
        ("2.5.0", ["dsl.Collected", "optional"]),
        ("2.3.0", ["GPU counts", "dsl.Collected", "optional"]),
    ],
)
def test_older_backend_is_an_error_naming_version_minimum_and_what_needs_it(
    kfp: tuple[FakeKfp, str], tag: str, lacking: list[str]
) -> None:
    fake, url = kfp
    fake.tag = tag
    with pytest.raises(RuntimeError) as e:
        server.check_backend(url)
    message = str(e.value)
    assert f"is {tag}, older than {server.MIN_KFP_BACKEND}" in message and url in message
    for feature in server.FEATURES:
        assert (feature.feature in message) == any(word in feature.feature for word in lacking), feature
    assert "Upgrade KFP to 2.15.0 or later" in message


@pytest.mark.parametrize("tag", ["unknown", "master-55ec846", "dev", ""])
def test_dev_version_warns_and_proceeds(kfp: tuple[FakeKfp, str], caplog: pytest.LogCaptureFixture, tag: str) -> None:
    fake, url = kfp
    fake.tag = tag
    with caplog.at_level(logging.WARNING, logger="safetax.runner.server"):
        assert server.check_backend(url) == (tag or "unknown")
    assert "not a release" in caplog.text and server.MIN_KFP_BACKEND in caplog.text


def test_v1_backend_answers_v1beta1_healthz_and_is_too_old(kfp: tuple[FakeKfp, str]) -> None:
    fake, url = kfp
    fake.v2, fake.tag = False, "1.8.5"
    with pytest.raises(RuntimeError, match=r"is 1\.8\.5, older than 2\.15\.0"):
        server.check_backend(url)
    assert [path for path, _ in fake.requests] == list(server.HEALTHZ_PATHS)


def test_token_file_is_sent_as_bearer_like_kfp_client(
    kfp: tuple[FakeKfp, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = kfp
    token = tmp_path / "token"
    token.write_text("projected-token\n")
    server.check_backend(url, token_path=token)
    monkeypatch.setenv(TOKEN_PATH_ENV, str(token))  # kfp's variable, as in a pipeline pod
    server.check_backend(url)
    assert [auth for _, auth in fake.requests] == ["Bearer projected-token"] * 2


@pytest.mark.parametrize(("status", "expected"), [(403, "403.*token"), (500, "500")])
def test_refused_healthz_is_an_error(kfp: tuple[FakeKfp, str], status: int, expected: str) -> None:
    fake, url = kfp
    fake.status = status
    with pytest.raises(RuntimeError, match=expected):
        server.check_backend(url)


def test_login_page_instead_of_json_is_an_error(kfp: tuple[FakeKfp, str]) -> None:
    fake, url = kfp
    fake.body = b"<html>Log in</html>"
    with pytest.raises(RuntimeError, match="no JSON object.*login page"):
        server.check_backend(url)


def test_unreachable_server_is_an_error() -> None:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago, nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RuntimeError, match=f"cannot reach the KFP API server at http://127.0.0.1:{port}"):
        server.check_backend(f"http://127.0.0.1:{port}", timeout=5)


# --- Kubernetes-native API mode: the ml-pipeline Deployment's image ---------------------------


class FakeApps:
    """``AppsV1Api.read_namespaced_deployment`` answering one Deployment, or raising an ApiException."""

    def __init__(self, *images: str, status: int | None = None) -> None:
        self.images, self.status, self.calls = images, status, []

    def read_namespaced_deployment(self, name: str, namespace: str) -> client.V1Deployment:
        self.calls.append((name, namespace))
        if self.status is not None:
            raise ApiException(status=self.status, reason="Forbidden")
        names = ["sidecar", server.API_SERVER_CONTAINER][-len(self.images):]
        containers = [client.V1Container(name=n, image=i) for n, i in zip(names, self.images)]
        spec = client.V1PodTemplateSpec(spec=client.V1PodSpec(containers=containers))
        return client.V1Deployment(spec=client.V1DeploymentSpec(selector=client.V1LabelSelector(), template=spec))


def test_cr_mode_reads_the_api_server_image_tag() -> None:
    apps = FakeApps("istio/proxyv2:1.26.1", "ghcr.io/kubeflow/kfp-api-server:2.16.1")
    assert server.check_backend_cr("kubeflow", apps=apps) == "2.16.1"
    assert apps.calls == [("ml-pipeline", "kubeflow")]
    with pytest.raises(RuntimeError, match=r"ml-pipeline.*kfp-api-server:2\.14\.4.*is 2\.14\.4, older than 2\.15\.0"):
        server.check_backend_cr(apps=FakeApps("ghcr.io/kubeflow/kfp-api-server:2.14.4"))


@pytest.mark.parametrize(
    "apps", [FakeApps("ghcr.io/kubeflow/kfp-api-server@sha256:" + "a" * 64), FakeApps(status=403)], ids=["digest", "forbidden"]
)
def test_cr_mode_unknown_version_warns_and_proceeds(apps: FakeApps, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="safetax.runner.server"):
        assert server.check_backend_cr("kubeflow", apps=apps) == "unknown"
    assert "proceeding" in caplog.text


def test_no_host_outside_a_cluster_warns_and_proceeds(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with caplog.at_level(logging.WARNING, logger="safetax.runner.server"):
        assert server.check_backend(None) == "unknown"
    assert "not inside a cluster" in caplog.text
