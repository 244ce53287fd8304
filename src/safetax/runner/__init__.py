"""The one module that drives KFP: compile the pipelines and run them with the local runner."""

from __future__ import annotations

import builtins
import hashlib
import importlib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[3]  # src/safetax/runner/__init__.py -> repo root (pipelines/, components/)
PIPELINES = {"alignment": "alignment_pipeline", "audit": "audit_pipeline"}
_LOADED_WITH: dict[str, str | None] = {}  # pipeline -> the platform file its module was imported with


def pipeline_module(name: str, platform: str | None = None) -> ModuleType:
    """Import ``pipelines.<name>`` from the repository checkout; with ``platform`` (a platform YAML file),
    re-import it so its tasks are placed by that file instead of ``$SAFETAX_PLATFORM``."""
    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}; pipelines: {', '.join(PIPELINES)}")
    if not (REPO_ROOT / "pipelines").is_dir():
        raise RuntimeError(f"pipelines/ not found beside {REPO_ROOT / 'src'}: run safetax from a checkout of the repository")
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    wanted = platform or os.environ.get("SAFETAX_PLATFORM")
    if f"pipelines.{name}" not in sys.modules:
        _LOADED_WITH[name] = os.environ.get("SAFETAX_PLATFORM")  # what the first import reads
    module = importlib.import_module(f"pipelines.{name}")
    if _LOADED_WITH.setdefault(name, os.environ.get("SAFETAX_PLATFORM")) == wanted:
        return module
    from safetax.platform import load_platform

    if platform:
        load_platform(platform)  # validate first: a bad file fails here, naming the file
    previous = os.environ.get("SAFETAX_PLATFORM")
    os.environ.pop("SAFETAX_PLATFORM", None)
    if wanted:
        os.environ["SAFETAX_PLATFORM"] = wanted
    try:
        _LOADED_WITH[name] = wanted
        return importlib.reload(module)
    finally:
        if previous is None:
            os.environ.pop("SAFETAX_PLATFORM", None)
        else:
            os.environ["SAFETAX_PLATFORM"] = previous


def compile_pipelines(out_dir: Path, platform: str | None = None) -> list[Path]:
    """Write ``<name>.yaml`` (KFP IR) for every pipeline into ``out_dir``."""
    from kfp import compiler

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, func in PIPELINES.items():
        path = out_dir / f"{name}.yaml"
        compiler.Compiler().compile(getattr(pipeline_module(name, platform), func), str(path))
        paths.append(path)
    return paths


def spec_digest(ir_yaml: Path) -> str:
    """A digest of a compiled pipeline (pipeline and platform spec, not the header comment)."""
    import yaml

    docs = list(yaml.safe_load_all(ir_yaml.read_text()))
    return hashlib.sha256(json.dumps(docs, sort_keys=True).encode()).hexdigest()[:10]


def compile_manifests(out_dir: Path, platform: str | None = None, namespace: str | None = None) -> list[Path]:
    """Write every pipeline as Pipeline + PipelineVersion custom resources (KFP's Kubernetes-native API).

    KFP rejects a changed spec under an existing version name, so the version is named
    ``<pipeline>-<digest of the spec>``: a new spec is a new version, an unchanged one the same.
    """
    from kfp import compiler
    from kfp.compiler.compiler_utils import KubernetesManifestOptions

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with tempfile.TemporaryDirectory() as tmp:
        for ir in compile_pipelines(Path(tmp), platform):
            name = ir.stem
            func = getattr(pipeline_module(name, platform), PIPELINES[name])
            pipeline_name = func.pipeline_spec.pipeline_info.name
            options = KubernetesManifestOptions(
                pipeline_name=pipeline_name,
                pipeline_version_name=f"{pipeline_name}-{spec_digest(ir)}",
                namespace=namespace,
                include_pipeline_manifest=True,
            )
            path = out_dir / f"{name}.yaml"
            compiler.Compiler().compile(func, str(path), kubernetes_manifest_format=True, kubernetes_manifest_options=options)
            paths.append(path)
    return paths


def register(mode: str, platform: str | None = None, namespace: str = "kubeflow", host: str | None = None) -> list[str]:
    """Register every pipeline with a cluster's KFP; return the version names. Idempotent.

    ``cr``: create the Pipeline/PipelineVersion custom resources through the Kubernetes API
    (in-cluster service account, else kubeconfig); ``api``: upload through the KFP API at ``host``.
    An existing version of the same name has the same spec and is left alone.
    """
    import yaml

    if mode not in ("cr", "api"):
        raise ValueError(f"register mode must be 'cr' or 'api', got {mode!r}")
    versions = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in compile_manifests(Path(tmp), platform, namespace):
            pipeline_doc, version_doc = list(yaml.safe_load_all(path.read_text()))
            version = version_doc["metadata"]["name"]
            if mode == "cr":
                _apply_custom_resources([pipeline_doc, version_doc], namespace)
            else:
                _upload_version(path.stem, pipeline_doc["metadata"]["name"], version, host, platform)
            versions.append(version)
            log.info("registered %s (%s)", version, mode)
    return versions


def _apply_custom_resources(docs: list[dict[str, Any]], namespace: str) -> None:
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    api = client.CustomObjectsApi()
    for doc in docs:
        plural = {"Pipeline": "pipelines", "PipelineVersion": "pipelineversions"}[doc["kind"]]
        try:
            api.create_namespaced_custom_object("pipelines.kubeflow.org", "v2beta1", namespace, plural, doc)
        except ApiException as e:
            if e.status != 409:  # 409: exists (same name = same spec digest)
                raise RuntimeError(f"creating {doc['kind']} {doc['metadata']['name']} failed: {e.status} {e.reason}") from None


def _upload_version(name: str, pipeline_name: str, version: str, host: str | None, platform: str | None) -> None:
    import kfp

    kfp_client = kfp.Client(host=host)
    with tempfile.TemporaryDirectory() as tmp:
        (ir,) = [p for p in compile_pipelines(Path(tmp), platform) if p.stem == name]
        pipeline_id = kfp_client.get_pipeline_id(pipeline_name)
        if pipeline_id is None:
            kfp_client.upload_pipeline(str(ir), pipeline_name=pipeline_name)
            pipeline_id = kfp_client.get_pipeline_id(pipeline_name)
        existing = kfp_client.list_pipeline_versions(pipeline_id, page_size=200).pipeline_versions or []
        if not any(v.display_name == version for v in existing):
            kfp_client.upload_pipeline_version(str(ir), pipeline_version_name=version, pipeline_id=pipeline_id)


def run_local(name: str, params: dict[str, Any], pipeline_root: Path) -> Path | None:
    """Run a pipeline with KFP's local SubprocessRunner in this environment; return its output artifact's path
    (None for a pipeline without one: the audit's outputs are in its store).

    The local runner ignores accelerators, node selectors and tolerations: every
    task runs here, one subprocess per task.
    """
    import warnings

    from kfp import local

    # Kubernetes settings (resources, GPUs) mean nothing to the local runner, which warns per task.
    warnings.filterwarnings("ignore", message=r".*have no effect in the current local runner.*")
    # The components name their cluster images; the local runner runs them in this environment, as intended.
    warnings.filterwarnings("ignore", message=r".*uses custom or non-Python base image.*")
    # Parallel branches run as concurrent subprocesses; one BLAS thread pool per core each
    # oversubscribes the CPU and slows every task several-fold. Users may set their own.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // 2)))
    pipeline_root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root.resolve()), raise_on_error=True)
    func = getattr(pipeline_module(name), PIPELINES[name])
    # The local runner indents print() per task by swapping builtins.print; concurrent
    # ParallelFor tasks restore it out of order and can leave it indented for good.
    original_print = builtins.print
    try:
        task = func(**params)
    finally:
        builtins.print = original_print
    outputs = getattr(task, "outputs", None) or {}
    return Path(task.output.path) if "Output" in outputs else None
