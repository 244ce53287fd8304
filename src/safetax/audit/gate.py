"""The safety gate: promote the best Pareto checkpoint that passes the thresholds, or fail saying why.

Among the checkpoints that pass every threshold, the gate takes the Pareto front of (mean pass@1,
mean safety score) and from it the one with the highest mean pass@1 (ties: the safer one): every
candidate is already safe enough, so the gate keeps the most reasoning. It publishes that checkpoint's
files with its audit record (``audit.json``) under the promotion URI, manifest last, so a consumer
watching ``promoted/`` never sees half a model. With no checkpoint passing, :class:`GateError` lists
every checkpoint's failed criteria.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safetax.audit.telemetry import Audited
from safetax.metrics import Estimate, figures, pareto_front
from safetax.store import fetch, is_hub_id, local_model_dir, publish


class GateError(RuntimeError):
    """No checkpoint passed the safety gate."""



def _point(e: Estimate | None, confidence: float | None) -> float:
    """A mean figure (0 for none), or its one-sided lower bound at ``confidence`` when it has one."""
    if e is None:
        return 0.0
    bound = e.bound(confidence, upper=False) if confidence is not None else math.nan
    return e.value if math.isnan(bound) else bound


def choose(results: Sequence[Audited], confidence: float | None = None) -> Audited:
    """The checkpoint the gate promotes (see the module docstring); GateError when none passes. With
    ``confidence`` the front and the choice use the lower bounds of mean pass@1 and mean safety."""
    passing = [a for a in results if a.verdict.passed]
    if not passing:
        reasons = "; ".join(f"{a.checkpoint}: " + ", ".join(f.message for f in a.verdict.failed) for a in results)
        raise GateError(f"safety gate: none of {len(results)} checkpoint(s) passes the thresholds ({reasons or 'nothing audited'})")
    points = []
    for a in passing:
        f = figures(a.scores)
        points.append((_point(f.reasoning_mean, confidence), _point(f.safety_mean, confidence)))
    best = max(pareto_front(points), key=lambda i: points[i])
    return passing[best]


def ranked_on(confidence: float | None) -> str:
    """How :func:`choose` ranks, in words for reports (the run report's ``pareto`` column is on means).

    >>> ranked_on(None), ranked_on(0.9)
    ('means', 'one-sided 90% lower bounds')
    """
    return "means" if confidence is None else f"one-sided {100 * confidence:g}% lower bounds"


def choice(ranked: str) -> str:
    """What :func:`choose` picked, in words, from :func:`ranked_on`'s text.

    >>> choice("one-sided 90% lower bounds")
    "the highest one-sided 90% lower bound of mean pass@1 on the Pareto front of the passing checkpoints' one-sided 90% lower bounds of (mean pass@1, mean safety)"
    """
    highest = "mean pass@1" if ranked == "means" else f"{ranked.removesuffix('s')} of mean pass@1"
    return f"the highest {highest} on the Pareto front of the passing checkpoints' {ranked} of (mean pass@1, mean safety)"


def promote(checkpoint_uri: str, record: dict[str, Any], dest_uri: str) -> str:
    """Publish the checkpoint's files and ``audit.json`` under ``dest_uri``; returns it."""
    what = "promoted checkpoint"  # a directory, s3:// or (a listed audit checkpoint) a pinned hub id
    src = local_model_dir(checkpoint_uri, what) if is_hub_id(checkpoint_uri) else fetch(checkpoint_uri, what)
    with tempfile.TemporaryDirectory(prefix="safetax-promote-") as tmp:
        staged = Path(tmp) / "checkpoint"
        shutil.copytree(src, staged, ignore=shutil.ignore_patterns("MANIFEST.json", "COMPLETE"))
        (staged / "audit.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        publish(staged, dest_uri)
    return dest_uri
