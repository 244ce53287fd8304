"""The one module that drives KFP: compile the pipelines and run them with the local runner."""

from __future__ import annotations

import builtins
import importlib
import logging
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]  # src/safetax/runner.py -> repo root (pipelines/, components/)
PIPELINES = {"alignment": "alignment_pipeline"}


def pipeline_module(name: str) -> ModuleType:
    """Import ``pipelines.<name>`` from the repository checkout."""
    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}; pipelines: {', '.join(PIPELINES)}")
    if not (REPO_ROOT / "pipelines").is_dir():
        raise RuntimeError(f"pipelines/ not found beside {REPO_ROOT / 'src'}: run safetax from a checkout of the repository")
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return importlib.import_module(f"pipelines.{name}")


def compile_pipelines(out_dir: Path) -> list[Path]:
    """Write ``<name>.yaml`` for every pipeline into ``out_dir``."""
    from kfp import compiler

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, func in PIPELINES.items():
        path = out_dir / f"{name}.yaml"
        compiler.Compiler().compile(getattr(pipeline_module(name), func), str(path))
        paths.append(path)
    return paths


def run_local(name: str, params: dict[str, Any], pipeline_root: Path) -> Path:
    """Run a pipeline with KFP's local SubprocessRunner in this environment; return its output artifact's path.

    The local runner ignores accelerators, node selectors and tolerations: every
    task runs here, one subprocess per task.
    """
    from kfp import local

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
    return Path(task.output.path)
