"""Shared by the audit tests: a store root on each backend and a profile that needs no data."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from safetax.records import CheckpointScores
from safetax.stages import audit as stage
from safetax.stages.score import SCORES
from safetax.store import atomic_dir, write_json

# A custom profile whose files are never read (plan and ledger tests generate nothing).
PROFILE = {"eval_sets": [{"name": "demo-harmful", "kind": "safety", "uri": "/dev/null"},
                         {"name": "demo-arith", "kind": "reasoning", "uri": "/dev/null"}]}


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store root: a local directory, or a fresh prefix in a SeaweedFS bucket."""
    if request.param == "local":
        return str(tmp_path / "store")
    request.getfixturevalue("s3_env")
    return f"s3://safetax-audits/{uuid.uuid4().hex[:10]}"


def finish_targets(tmp_path: Path, plan_dir: Path, run_id: str, gateway: str = "") -> list[str]:
    """Evaluate the plan's targets (the same scores written directly for each) and finish the run; the names audited."""
    dirs = []
    for t in stage.targets(plan_dir):
        out = tmp_path / "scores" / run_id / t["label"]
        with atomic_dir(out) as tmp:
            cs = CheckpointScores(t["label"], t["label"], 0, reasoning={"demo-arith": 0.5}, safety={"demo-harmful": 0.9},
                                  counts={"demo-harmful": {"n": 10, "unscored": 0}})
            write_json(tmp / SCORES, [cs.to_dict()])
        dirs.append(out)
    return [a.checkpoint for a in stage.finish(plan_dir, dirs, tmp_path / "out" / run_id, run_id, gateway=gateway)]
