"""Stage `gate` (end of the alignment pipeline): promote the best checkpoint of the run that passes the thresholds.

The base model is the baseline: reasoning drops and the safety tax rate are measured against it, as in
the run's report, and every figure is :mod:`safetax.metrics`'s. With ``confidence`` in the thresholds the
verdicts decide on one-sided bounds and the choice ranks checkpoints on the lower bounds of their means. The gate's choice (:func:`safetax.audit.gate.choose`) is published with its audit
record under ``<store_uri>/promoted/<run id>/<checkpoint>``: a full model directory, or a LoRA adapter
(``audit.json`` names its base model). No checkpoint passing fails the stage, naming every failed
criterion of every checkpoint.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from safetax.artifacts import checkpoint_files, read_checkpoints, read_scores
from safetax.audit.gate import choose, promote, ranked_on
from safetax.audit.telemetry import Audited
from safetax.audit.verdict import Thresholds, judge_checkpoint
from safetax.config import ConfigError
from safetax.records import BASE
from safetax.store import atomic_dir, write_json
from safetax.timing import timed

log = logging.getLogger(__name__)
GATE = "gate.json"


def check(thresholds: dict[str, Any], store_uri: str) -> Thresholds | None:
    """The gate's thresholds (None: no gate); errors before any work when the gate cannot publish."""
    if not thresholds:
        return None
    t = Thresholds.from_dict(thresholds, "gate_thresholds")
    if not store_uri:
        raise ConfigError("gate", ["`gate_thresholds` is set but `store_uri` is empty: the gate publishes the promoted "
                                   "checkpoint to <store_uri>/promoted/<run id>/"])
    return t


def run(thresholds: dict[str, Any], base_model: str, score_dirs: list[Path], train_dirs: list[Path], out_dir: Path,
        store_uri: str, run_id: str) -> dict[str, Any]:
    """Judge every checkpoint against the base model and the thresholds; promote the gate's choice."""
    limits = check(thresholds, store_uri)
    with timed("gate"), atomic_dir(out_dir) as tmp:
        if limits is None:
            write_json(tmp / GATE, {"gate": "off"})
            return {"gate": "off"}
        scores = read_scores(score_dirs)
        base = next((s for s in scores if s.checkpoint == BASE), None)
        if base is None:
            raise ValueError(f"gate: no scores of the base model among {[s.checkpoint for s in scores]}")
        now = time.time()
        results = [Audited(s.checkpoint, s, judge_checkpoint(s, base, limits), now) for s in scores if s.checkpoint != BASE]
        verdicts = {a.checkpoint: a.verdict.to_dict() for a in results}
        write_json(tmp / "verdicts.json", verdicts)
        best = choose(results, limits.confidence)  # GateError names every failed criterion when nothing passes
        manifests = [(d, read_checkpoints(d)) for d in train_dirs]  # checkpoints.json only
        found = [(d, m.kind, e) for d, m in manifests for e in m.entries if str(e.ref) == best.checkpoint]
        if not found:
            raise ValueError(f"gate: the files of {best.checkpoint!r} are not among the run's checkpoints "
                             f"{sorted(str(e.ref) for _, m in manifests for e in m.entries)}")
        train_dir, kind, entry = found[0]
        src = checkpoint_files(train_dir, [entry.name]) / entry.name  # from a run store: this checkpoint's files only
        record = {"checkpoint": best.checkpoint, "run_id": run_id, "verdict": "pass", "thresholds": limits.to_dict(),
                  "baseline": "base", "base_model": base_model, "kind": kind,
                  "scores": best.scores.to_dict(), **{k: v for k, v in verdicts[best.checkpoint].items() if k != "checkpoint"},
                  "completed_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        dest = f"{store_uri.rstrip('/')}/promoted/{run_id}/{best.checkpoint}"
        promote(str(src), record, dest)
        result = {"gate": "promoted", "checkpoint": best.checkpoint, "uri": dest, "passed": [a.checkpoint for a in results if a.verdict.passed],
                  "ranked_on": ranked_on(limits.confidence)}
        write_json(tmp / GATE, result)
    log.info("gate: promoted %s to %s (%d of %d checkpoint(s) pass)", best.checkpoint, dest, len(result["passed"]), len(results))
    return result
