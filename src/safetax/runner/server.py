"""The Kubeflow Pipelines backend that safetax's pipelines need, and a check of a cluster's backend against it.

The pipelines are compiled with kfp 2.17.0 and kfp-kubernetes 2.17.0 (pyproject.toml). What they
need from the backend, each with the first backend release that has it (kubeflow/pipelines'
CHANGELOG.md, the pull requests, and the backend source at each release tag):

- **GPU counts from run parameters** (``set_accelerator_limit`` with ``train_gpus`` /
  ``generate_gpus`` / ``judge_gpus``): the driver resolves ``resourceCount`` placeholders since
  2.4.0 (kubeflow/pipelines#11501, which fixes #11500). It resolves them with
  ``GetStringValue()`` (``backend/src/v2/driver``, up to 2.17.0), so only a *string* parameter
  yields a count; an integer one resolves to "" and the pod gets no GPU limit at all.
- **Artifact fan-in**: ``dsl.Collected`` over artifacts produced inside a ``ParallelFor``
  (analytics' scores and analyses, the gate's checkpoints): 2.14.0 (#11725, "enable
  dsl.Collected for parameters & artifacts"; the backend went from 2.5.0 to 2.14.0).
- **The ``optional`` field of ``SecretAsEnv``**, which kfp-kubernetes 2.17 writes into every
  ``use_secret_as_env`` (the S3 Secret of a platform file): 2.15.0 (#12216). 2.14.x parses a
  task's Kubernetes config strictly when it compiles the run (``protojson.Unmarshal`` in
  ``argocompiler``, since #12049) and rejects the unknown field; issue #12495 shows the same
  error from an older driver.

``check_backend`` reads a backend's version from its healthz endpoint (``tag_name``, set from
the api-server image's ``TAG_NAME``); ``check_backend_cr`` reads the tag of the ``ml-pipeline``
Deployment's image, for the Kubernetes-native API mode. An older backend is a ``RuntimeError``
that names its version, the minimum and what it lacks; a version that is no release
(``unknown``, ``master-...``) is logged as a warning and the check passes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetax.runner.schedules import DEFAULT_TOKEN_PATH, TOKEN_PATH_ENV

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendFeature:
    """Something the pipelines need from the backend, and the first backend release that has it."""

    version: str
    feature: str
    source: str


FEATURES: tuple[BackendFeature, ...] = (
    BackendFeature("2.4.0", "GPU counts from run parameters (set_accelerator_limit with a pipeline parameter)",
                   "kubeflow/pipelines#11501 (fixes #11500), CHANGELOG 2.4.0"),
    BackendFeature("2.14.0", "dsl.Collected over artifacts produced inside a ParallelFor",
                   "kubeflow/pipelines#11725, CHANGELOG 2.14.0"),
    BackendFeature("2.15.0", "the `optional` field that kfp-kubernetes 2.17 writes for use_secret_as_env",
                   "kubeflow/pipelines#12216, CHANGELOG 2.15.0; 2.14's strict parsing: #12049, issue #12495"),
)
# The newest of FEATURES: the oldest KFP backend that runs the compiled pipelines (sources above).
MIN_KFP_BACKEND = "2.15.0"
# kfp.Client's in-cluster address of the API server (kfp.Client._IN_CLUSTER_DNS_NAME), over plain HTTP.
IN_CLUSTER_HOST = "http://ml-pipeline.{namespace}.svc.cluster.local:8888"
HEALTHZ_PATHS = ("/apis/v2beta1/healthz", "/apis/v1beta1/healthz")  # v1beta1: backends before 2.0
API_SERVER_CONTAINER = "ml-pipeline-api-server"  # in the `ml-pipeline` Deployment of KFP's manifests
_RELEASE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(?:[-+.][0-9A-Za-z.+-]*)?")


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``(major, minor, patch)`` of a KFP release tag; None for anything else (a dev build's ``unknown``, ``master-55ec846``).

    A pre-release counts as its release (``2.15.0-rc.1`` as 2.15.0): a release candidate is cut with the release's features.

    >>> parse_version("2.15.0"), parse_version("v2.4.1"), parse_version("2.15.0-rc.1")
    ((2, 15, 0), (2, 4, 1), (2, 15, 0))
    >>> parse_version("unknown"), parse_version("master-55ec846"), parse_version("")
    (None, None, None)
    """
    match = _RELEASE.fullmatch(text.strip())
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def missing_features(version: tuple[int, int, int]) -> list[BackendFeature]:
    """The features that a backend of ``version`` lacks (empty: it runs the pipelines).

    >>> [f.version for f in missing_features((2, 5, 0))]
    ['2.14.0', '2.15.0']
    """
    return [f for f in FEATURES if version < _release(f.version)]


def _release(text: str) -> tuple[int, int, int]:
    version = parse_version(text)
    assert version is not None, text
    return version


def require(tag: str, where: str) -> str:
    """Check a backend version ``tag`` (found at ``where``) against MIN_KFP_BACKEND; return the tag.

    Raises:
        RuntimeError: the backend is a release older than MIN_KFP_BACKEND; the message names
            its version, the minimum and every feature it lacks.
    """
    version = parse_version(tag)
    if version is None:
        log.warning("the KFP backend at %s reports version %r, not a release: cannot check it against %s "
                    "(the oldest that runs safetax's pipelines); proceeding", where, tag, MIN_KFP_BACKEND)
        return tag
    lacking = missing_features(version)
    if lacking:
        needs = "; ".join(f"{f.feature} (from {f.version}, {f.source})" for f in lacking)
        raise RuntimeError(f"the Kubeflow Pipelines backend at {where} is {tag}, older than {MIN_KFP_BACKEND}, "
                           f"the oldest that runs safetax's pipelines. It lacks: {needs}. "
                           f"Upgrade KFP to {MIN_KFP_BACKEND} or later.")
    return tag


def read_token(token_path: str | os.PathLike[str] | None = None) -> str | None:
    """The service-account token kfp.Client would send: ``token_path``, else ``$KF_PIPELINES_SA_TOKEN_PATH``,
    else KFP's projected-token path; None when that file does not exist (standalone KFP needs none)."""
    path = Path(token_path or os.environ.get(TOKEN_PATH_ENV) or DEFAULT_TOKEN_PATH)
    if not path.is_file():
        return None
    return path.read_text().strip() or None


def base_url(host: str | None, namespace: str = "kubeflow") -> str:
    """The API server's address as kfp.Client forms it: ``host`` (``https://`` when it names no scheme,
    no trailing ``/``), or the in-cluster Service of ``namespace``.

    >>> base_url("kfp.example.com/"), base_url("http://localhost:8888"), base_url(None, "ml")
    ('https://kfp.example.com', 'http://localhost:8888', 'http://ml-pipeline.ml.svc.cluster.local:8888')
    """
    if not host:
        return IN_CLUSTER_HOST.format(namespace=namespace)
    return (host if host.startswith(("http://", "https://")) else f"https://{host}").rstrip("/")


def healthz(url: str, token: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
    """The healthz answer of the API server at ``url``: ``tag_name``, ``commit_sha``, ``multi_user``
    (and ``pipeline_store`` from 2.5); ``/apis/v2beta1/healthz``, else the v1beta1 one (a 1.x backend).

    Raises:
        RuntimeError: the server cannot be reached, refuses the request, or answers no JSON object.
    """
    headers = {"Accept": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    for path in HEALTHZ_PATHS:
        request = urllib.request.Request(url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body, kind = response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            if e.code == 404 and path != HEALTHZ_PATHS[-1]:
                continue
            hint = " (is the service-account token, $KF_PIPELINES_SA_TOKEN_PATH, mounted?)" if e.code in (401, 403) else ""
            raise RuntimeError(f"the KFP API server at {url + path} answered {e.code} {e.reason}{hint}") from None
        except (urllib.error.URLError, OSError) as e:
            raise RuntimeError(f"cannot reach the KFP API server at {url + path}: {getattr(e, 'reason', e)}") from None
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise RuntimeError(f"the KFP API server at {url + path} answered no JSON object (Content-Type {kind!r}): "
                               f"a login page in front of KFP? {body[:80]!r}")
        return answer
    raise AssertionError("unreachable")  # the loop returns or raises


def check_backend(host: str | None, token_path: str | os.PathLike[str] | None = None, *,
                  namespace: str = "kubeflow", timeout: float = 10.0) -> str:
    """Check the KFP backend at ``host`` (None: the in-cluster Service of ``namespace``); return its version tag.

    Authenticates as kfp.Client does with a service-account token file (``read_token``).
    Unlike kfp.Client, ``host=None`` outside a cluster (no ``$KUBERNETES_SERVICE_HOST``) does not
    go through the kubeconfig's API-server proxy: the version is unknown (a warning, the check
    passes); pass the host to check it.

    Raises:
        RuntimeError: the backend is older than MIN_KFP_BACKEND, or its healthz cannot be read.
    """
    if not host and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        log.warning("no KFP host and not inside a cluster: cannot check the backend against %s; proceeding", MIN_KFP_BACKEND)
        return "unknown"
    url = base_url(host, namespace)
    answer = healthz(url, read_token(token_path), timeout)
    return require(str(answer.get("tag_name") or "unknown"), url)


def image_tag(image: str) -> str:
    """The tag of an image reference ("" when it has none: a digest only, or implicitly ``latest``).

    >>> image_tag("ghcr.io/kubeflow/kfp-api-server:2.15.0"), image_tag("localhost:5000/api-server@sha256:ab")
    ('2.15.0', '')
    """
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return name.partition(":")[2]


def check_backend_cr(namespace: str = "kubeflow", deployment: str = "ml-pipeline", apps: Any = None) -> str:
    """Check the KFP backend of ``namespace`` by the tag of its API server's image, for the Kubernetes-native
    API mode (no KFP host); return the tag.

    Reads the ``deployment`` through the Kubernetes API (``apps``: an ``AppsV1Api``; default: in-cluster
    service account, else kubeconfig), which needs ``get`` on ``deployments`` (group ``apps``) in
    ``namespace``. Without that permission, or with an image pinned by digest only, the version is
    unknown: a warning, and the check passes. ``check_backend(None, namespace=...)`` asks the server
    itself instead (no RBAC, but the Service must be reachable).

    Raises:
        RuntimeError: the image's tag is a release older than MIN_KFP_BACKEND, or the API call failed otherwise.
    """
    from kubernetes.client.exceptions import ApiException

    if apps is None:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        apps = client.AppsV1Api()
    where = f"Deployment {namespace}/{deployment}"
    try:
        found = apps.read_namespaced_deployment(deployment, namespace)
    except ApiException as e:
        if e.status in (403, 404):
            log.warning("cannot read %s (%s %s) to check the KFP version: the check needs `get` on deployments.apps; "
                        "proceeding", where, e.status, e.reason)
            return "unknown"
        raise RuntimeError(f"reading {where} failed: {e.status} {e.reason}") from None
    containers = found.spec.template.spec.containers
    chosen = next((c for c in containers if c.name == API_SERVER_CONTAINER), None)
    chosen = chosen or next((c for c in containers if "api-server" in (c.image or "")), containers[0])
    return require(image_tag(chosen.image or "") or "unknown", f"{where} (image {chosen.image})")
