"""Shared by the audit tests: a store root on each backend and a profile that needs no data."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

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
