"""The outputs of a finished alignment run, read back from its local run directory or its store prefix.

A local run directory is what ``safetax run`` / ``safetax demo`` leave under their pipeline root
(``<root>/safetax-alignment-<time>/``, one folder per task; a task's output may be a pointer to the run
store). A store prefix is ``<store_uri>/<run id>`` (``s3://`` or a local folder), where every stage
published ``<stage>/<method>/``. Nothing is recomputed: scores, tables and histories are read as written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from safetax.records import CheckpointScores

log = logging.getLogger(__name__)
RUN_GLOB = "safetax-alignment-*"
SCORES, RESULTS, WEIGHTS = "scores.json", "results.csv", "weights.csv"
RPSA, CHECKPOINTS, GATE, VERDICTS = "rpsa.json", "checkpoints.json", "gate.json", "verdicts.json"


@dataclass
class RunOutputs:
    """What a report is made of. ``results``: the analytics stage's table (None when the run did not get that
    far); ``rpsa``: each method's ``rpsa.json`` by label; ``verdicts`` / ``gate``: the safety gate's."""

    label: str
    source: str
    scores: list[CheckpointScores]
    results: pd.DataFrame | None = None
    weights: pd.DataFrame = field(default_factory=pd.DataFrame)
    rpsa: dict[str, dict[str, Any]] = field(default_factory=dict)
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    gate: dict[str, Any] | None = None


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _weights(dirs: list[Path]) -> pd.DataFrame:
    tables = [pd.read_csv(d / WEIGHTS) for d in dirs if (d / WEIGHTS).is_file() and (d / WEIGHTS).stat().st_size > 1]
    tables = [t for t in tables if not t.empty]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _assemble(label: str, source: str, dirs: dict[str, list[Path]], unreadable: Sequence[str] = ()) -> RunOutputs:
    """Read the files of the stage output directories (by stage: score, analytics, analyze, train, gate);
    ``unreadable``: the outputs that could not be read, named in the error when no scores remain."""
    score_files = [d / SCORES for d in dirs.get("score", []) if (d / SCORES).is_file()]
    if not score_files:
        why = f"; unreadable outputs: {'; '.join(unreadable)}" if unreadable else ""
        raise FileNotFoundError(f"{source}: no scores of any checkpoint (no {SCORES} in a score output): "
                                f"is it an alignment run that got past its evaluation?{why}")
    scores = [CheckpointScores.from_dict(x) for f in score_files for x in json.loads(f.read_text(encoding="utf-8"))]
    results = next((pd.read_csv(d / RESULTS) for d in dirs.get("analytics", []) if (d / RESULTS).is_file()), None)
    rpsa = {}
    for d in dirs.get("train", []):
        record, manifest = _json(d / RPSA), _json(d / CHECKPOINTS) or {}
        if record and record.get("history"):
            rpsa[str(manifest.get("label") or record.get("method") or d.name)] = record
    gate_dir = next(iter(dirs.get("gate", [])), None)
    return RunOutputs(label, source, scores, results, _weights(dirs.get("analyze", [])), rpsa,
                      (_json(gate_dir / VERDICTS) or {}) if gate_dir else {}, _json(gate_dir / GATE) if gate_dir else None)


def _resolve(path: Path, what: str, only: list[str], unreadable: list[str]) -> Path | None:
    """A task output's local directory (following a store pointer); None, with the reason appended to
    ``unreadable``, when it is incomplete or its store copy is gone."""
    from safetax.store import StoreError, input_dir

    try:
        return input_dir(path, what, only)
    except (StoreError, FileNotFoundError) as e:
        log.warning("left out: %s", e)
        unreadable.append(str(e))
        return None


def run_dir(path: Path) -> Path:
    """The run directory ``path`` names: itself, or the newest run under a pipeline root."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such run directory")
    if any(path.glob("*/executor_output.json")):
        return path
    runs = sorted(p for p in path.glob(RUN_GLOB) if p.is_dir())
    if not runs:
        raise FileNotFoundError(f"{path}: not a run directory: it holds no task folders (<task>/executor_output.json), "
                                f"no run folder {RUN_GLOB} (as in a pipeline root such as runs/demo), and no published "
                                "<stage>/<method>/MANIFEST.json (a store prefix)")
    if len(runs) > 1:
        log.info("%s holds %d runs; reading the newest, %s", path, len(runs), runs[-1].name)
    return runs[-1]


def from_run_dir(path: Path, label: str = "") -> RunOutputs:
    """A local run directory (or the newest run under a pipeline root such as ``runs/demo``)."""
    root = run_dir(Path(path))
    found: dict[str, list[Path]] = {
        "score": sorted(root.glob("**/score*/scores")),
        "analytics": sorted(root.glob("analytics/results")),
        "analyze": sorted(root.glob("**/analyze/analysis")),
        "train": sorted(root.glob("**/train/checkpoints")),
        "gate": sorted(root.glob("gate/result")),
    }
    unreadable: list[str] = []
    dirs = {stage: [r for d in ds if (r := _resolve(d, f"{stage} output", ONLY[stage], unreadable)) is not None]
            for stage, ds in found.items()}
    return _assemble(label or root.name, str(root), dirs, unreadable)


ONLY = {"train": [RPSA, CHECKPOINTS], "analyze": [WEIGHTS], "score": [SCORES], "analytics": [RESULTS],
        "gate": [GATE, VERDICTS]}  # the files of each stage's output that a report reads


def _fetch(uri: str, digest: str, files: list[str], what: str) -> Path:
    """The local directory of a published output with (at least) ``files``: downloaded from ``s3://`` (those
    files only, cached by digest), or the local folder itself."""
    from safetax.store import cache_root, is_s3

    if is_s3(uri):
        from safetax.store.s3 import S3Store

        return S3Store().fetch_published(uri, digest, cache_root() / "s3", what, files)
    return Path(uri.removeprefix("file://"))


def _published(prefix: str) -> list[Any]:
    from safetax.store.objects import published_dirs

    published, _ = published_dirs(prefix, "run prefix")
    if not published:
        raise FileNotFoundError(f"{prefix}: no published stage output under it (expected <stage>/<method>/ folders "
                                "with a MANIFEST.json, as a run with store_uri writes)")
    return published


def from_store(prefix: str, label: str = "") -> RunOutputs:
    """A run's store prefix ``<store_uri>/<run id>``: ``s3://`` or a local folder."""
    dirs: dict[str, list[Path]] = {}
    for p in _published(prefix):
        stage = p.name.split("/", 1)[0]
        if stage in ONLY:
            files = [f.path for f in p.manifest.files if f.path in ONLY[stage]]
            dirs.setdefault(stage, []).append(_fetch(p.uri, p.manifest.digest, files, f"{stage} output {p.uri}"))
    return _assemble(label or prefix.rstrip("/").rsplit("/", 1)[-1], prefix, dirs)


def from_store_stage(prefix: str) -> dict[str, dict[str, Any]]:
    """RPSA histories (label -> ``rpsa.json``) of the train outputs published under ``prefix`` (``<run>/train``)."""
    out: dict[str, dict[str, Any]] = {}
    for p in _published(prefix):
        files = [f.path for f in p.manifest.files if f.path in ONLY["train"]]
        if RPSA not in files:
            continue
        local = _fetch(p.uri, p.manifest.digest, files, f"train output {p.uri}")
        record, manifest = _json(local / RPSA), _json(local / CHECKPOINTS) or {}
        if record and record.get("history"):
            out[str(manifest.get("label") or p.name)] = record
    return out


def load_run(run: str, label: str = "") -> RunOutputs:
    """A run given as a local run directory, a pipeline root, or a store prefix (``s3://...`` or a local folder
    with published ``<stage>/<method>/`` outputs)."""
    if run.startswith("s3://"):
        return from_store(run, label)
    path = Path(run.removeprefix("file://"))
    # A run directory has a folder per task with the runner's executor_output.json; a store prefix has
    # <stage>/<method>/MANIFEST.json.
    if path.is_dir() and not any(path.glob("*/executor_output.json")) and any(path.glob("*/*/MANIFEST.json")):
        return from_store(str(path), label)
    return from_run_dir(path, label)
