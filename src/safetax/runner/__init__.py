"""The one package that drives KFP: components, pipeline factories, compile, register, and the local runner.

Nothing else under ``safetax`` imports kfp. The KFP code ships inside the installed package, so an
image (or any environment with the wheel) can compile and register the pipelines: no checkout needed.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
PIPELINES = ("alignment", "audit")
# Every stage's component, compiled one file each into components/ for users' own pipelines.
COMPONENTS = {
    "plan": "safetax.runner.components.plan:plan",
    "prepare": "safetax.runner.components.prepare:prepare",
    "train": "safetax.runner.components.train:train",
    "analyze": "safetax.runner.components.analyze:analyze",
    "generate": "safetax.runner.components.generate:generate",
    "judge": "safetax.runner.components.judge:judge",
    "code": "safetax.runner.components.execute_code:execute_code",
    "score": "safetax.runner.components.score:score",
    "analytics": "safetax.runner.components.analytics:analytics",
    "gate": "safetax.runner.components.gate:gate",
    "audit-plan": "safetax.runner.components.audit:audit_plan",
    "audit-targets": "safetax.runner.components.audit:audit_targets",
    "audit-finish": "safetax.runner.components.audit:audit_finish",
    "audit-idle": "safetax.runner.components.audit:audit_idle",
    "audit-release": "safetax.runner.components.audit:audit_release",
}


def _platform(platform: Any = None) -> Any:
    """A PlatformConfig from a config, a YAML path, or ``$SAFETAX_PLATFORM`` / the built-in defaults."""
    from safetax.platform import PlatformConfig, load_platform

    if isinstance(platform, PlatformConfig):
        return platform
    return load_platform(str(platform) if platform else None)


def pipeline(name: str, platform: Any = None) -> Any:
    """The ``@dsl.pipeline`` object ``name`` (alignment | audit), placed by ``platform``."""
    from safetax.runner.pipelines import build

    return build(name, _platform(platform))


def pipeline_inputs(name: str, compiled: Path | None = None) -> dict[str, bool]:
    """The pipeline's parameters, each mapped to whether it is required (from a compiled YAML when given)."""
    if compiled is not None:
        import yaml

        if not compiled.is_file():
            raise FileNotFoundError(f"compiled pipeline {compiled} does not exist")
        spec = next(yaml.safe_load_all(compiled.read_text()))
        params = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
        return {k: not v.get("isOptional", False) for k, v in params.items()}
    params = _default_parameters(name)
    return {k: not v.is_optional for k, v in params.items()}


def pipeline_defaults(name: str) -> dict[str, Any]:
    """The pipeline's parameter defaults, as a run started without them would receive them."""
    from google.protobuf import json_format

    params = _default_parameters(name)
    return {k: json_format.MessageToDict(v.default_value) for k, v in params.items() if v.HasField("default_value")}


def _default_parameters(name: str) -> Any:
    """The parameter definitions of ``name`` under ``$SAFETAX_PLATFORM`` (or the defaults), built once per file."""
    return _parameters(name, os.environ.get("SAFETAX_PLATFORM") or "")


@functools.lru_cache(maxsize=8)
def _parameters(name: str, platform_file: str) -> Any:
    return pipeline(name, platform_file or None).pipeline_spec.root.input_definitions.parameters


def compile_pipelines(out_dir: Path, platform: Any = None) -> list[Path]:
    """Write ``<name>.yaml`` (KFP IR) for every pipeline into ``out_dir``."""
    from kfp import compiler

    config = _platform(platform)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in PIPELINES:
        path = out_dir / f"{name}.yaml"
        compiler.Compiler().compile(pipeline(name, config), str(path))
        paths.append(path)
    return paths


def component(name: str) -> Any:
    """A stage's KFP component by its name in :data:`COMPONENTS`."""
    import importlib

    module, attr = COMPONENTS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def compile_components(out_dir: Path) -> list[Path]:
    """Write every stage's component spec, ``<stage>.yaml``, for ``kfp.components.load_component_from_file``."""
    from kfp import compiler

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in COMPONENTS:
        path = out_dir / f"{name}.yaml"
        compiler.Compiler().compile(component(name), str(path))
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
            func = pipeline(name, platform)
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


def register(mode: str, platform: Any = None, namespace: str = "kubeflow", host: str | None = None, out: Path | None = None,
             check_server: bool = True) -> list[str]:
    """Register every pipeline with a cluster's KFP; return the version names. Idempotent.

    ``cr``: create the Pipeline/PipelineVersion custom resources through the Kubernetes API
    (in-cluster service account, else kubeconfig); ``api``: upload through the KFP API at ``host``.
    An existing version of the same name has the same spec and is left alone. The server's KFP
    version is checked first (:mod:`safetax.runner.server`). With ``out`` (``cr`` mode), the custom
    resources are written there instead of applied: what would be created, for GitOps or a check.
    """
    import yaml

    if mode not in ("cr", "api"):
        raise ValueError(f"register mode must be 'cr' or 'api', got {mode!r}")
    if check_server:
        from safetax.runner import server

        if mode == "api":
            server.check_backend(host, namespace=namespace)
        else:
            server.check_backend_cr(namespace)
    versions = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in compile_manifests(Path(tmp), platform, namespace):
            pipeline_doc, version_doc = list(yaml.safe_load_all(path.read_text()))
            version = version_doc["metadata"]["name"]
            if mode == "cr" and out is not None:
                out.mkdir(parents=True, exist_ok=True)
                (out / path.name).write_text(path.read_text())
            elif mode == "cr":
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
    from safetax.runner.schedules import kfp_client as client_for

    kfp_client = client_for(host)  # the projected service-account token, when mounted (multi-user KFP)
    with tempfile.TemporaryDirectory() as tmp:
        from kfp import compiler

        ir = Path(tmp) / f"{name}.yaml"
        compiler.Compiler().compile(pipeline(name, platform), str(ir))
        pipeline_id = kfp_client.get_pipeline_id(pipeline_name)
        if pipeline_id is None:
            kfp_client.upload_pipeline(str(ir), pipeline_name=pipeline_name)
            pipeline_id = kfp_client.get_pipeline_id(pipeline_name)
        existing = kfp_client.list_pipeline_versions(pipeline_id, page_size=200).pipeline_versions or []
        if not any(v.display_name == version for v in existing):
            kfp_client.upload_pipeline_version(str(ir), pipeline_version_name=version, pipeline_id=pipeline_id)


def _compiled(name: str, platform: Any, root: Path) -> Path:
    from kfp import compiler

    path = root / f".{name}.compiled.yaml"
    compiler.Compiler().compile(pipeline(name, platform), str(path))
    return path


def _local_component(compiled: Path, keep_retries: bool = False) -> Any:
    """The compiled pipeline as the local runner runs it: the same spec, less the retry policies unless
    ``keep_retries`` (KFP's local runner honours them, with backoffs of minutes; on a laptop a failed task should
    fail the run at once)."""
    import yaml
    from kfp import components

    docs = list(yaml.safe_load_all(compiled.read_text()))
    spec = docs[0]
    for comp in [spec["root"], *spec.get("components", {}).values()]:
        for task in comp.get("dag", {}).get("tasks", {}).values():
            if not keep_retries:
                task.pop("retryPolicy", None)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump_all(docs, f, sort_keys=False)
    try:
        return components.load_component_from_file(f.name)
    finally:
        os.unlink(f.name)


def _failure(root: Path, since: float) -> str:
    """The failed tasks of the run that started at ``since`` and what their stage wrote into its ``FAILED`` marker."""
    markers = sorted((p for p in root.glob("*/**/FAILED") if p.stat().st_mtime >= since), key=lambda p: p.stat().st_mtime)
    lines = []
    for marker in markers:
        task = marker.parent.parent.name
        text = marker.read_text(errors="replace").strip().splitlines()
        line = f"task {task!r} failed: {text[0] if text else 'no message'}"
        if line not in lines:
            lines.append(line)
    return "\n".join(lines)


@contextmanager
def _logging_through(stream: Any) -> Iterator[None]:
    """Point the root logger's console handlers at ``stream`` (the quiet console) for the run, then back."""
    import logging

    handlers = [h for h in logging.getLogger().handlers
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    old = [_point(h, stream) for h in handlers]
    try:
        yield
    finally:
        for h, previous in zip(handlers, old, strict=True):
            if previous is not None:  # None: the handler wrote to ``stream`` already
                _point(h, previous if not getattr(previous, "closed", False) else sys.stderr)


def _point(handler: Any, stream: Any) -> Any:
    """``handler.setStream(stream)``, also for a handler whose stream has closed (one made in an earlier run of
    this process, e.g. on a test's captured stderr), which ``setStream`` would flush first and fail on."""
    if not getattr(handler.stream, "closed", False):
        return handler.setStream(stream)
    with handler.lock:
        previous, handler.stream = handler.stream, stream
    return previous


def run_local(name: str, params: dict[str, Any], pipeline_root: Path, platform: Any = None, compiled: Path | None = None,
              verbose: bool = True, retries: bool = False) -> Path | None:
    """Run a pipeline with KFP's local SubprocessRunner in this environment; return its output artifact's path
    (None for a pipeline without one: the audit's outputs are in its store).

    ``compiled``: run that compiled pipeline YAML (what a cluster runs) instead of building ``name`` here.
    ``verbose=False``: the runner's own output (every task's executor input and logs) goes to
    ``<pipeline_root>/logs/<name>-<time>.log`` and the console shows one line per finished stage and
    every warning and error (:mod:`safetax.runner.console`).
    The local runner ignores accelerators, node selectors, tolerations and timeouts: every task runs here, one
    subprocess per task. ``retries``: keep the platform's retry policies (KFP's local runner honours them; by default
    they are dropped, so that a failed task fails the run at once), e.g. to see a killed task resume.
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
    # Tasks end when this process does, even when it is killed (safetax.timing.end_with_runner).
    from safetax.timing import RUNNER_PID_ENV

    os.environ[RUNNER_PID_ENV] = str(os.getpid())
    pipeline_root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root.resolve()), raise_on_error=True)
    func = _local_component(compiled or _compiled(name, platform, pipeline_root), keep_retries=retries)
    # The local runner indents print() per task by swapping builtins.print; concurrent
    # ParallelFor tasks restore it out of order and can leave it indented for good.
    original_print = builtins.print
    started = time.time()
    import contextlib

    from safetax.runner.console import QuietConsole, log_path, plain_text

    with contextlib.ExitStack() as stack:
        if not verbose:
            path = log_path(pipeline_root, name)
            log_file = stack.enter_context(path.open("w"))
            console = QuietConsole(log_file, sys.stdout)
            stack.enter_context(contextlib.redirect_stdout(console))  # type: ignore[type-var]
            stack.enter_context(_logging_through(console))  # the runner's records that reach the root logger too
            print(f"running {name} locally; the runner's full log: {path}", file=sys.stderr)
        try:
            task = func(**params)
        except RuntimeError as e:  # the local runner's "finished with status FAILURE": name the task and its error
            raise RuntimeError(_failure(pipeline_root, started) or plain_text(str(e))) from None
        finally:
            builtins.print = original_print
    outputs = getattr(task, "outputs", None) or {}
    return Path(task.output.path) if "Output" in outputs else None
