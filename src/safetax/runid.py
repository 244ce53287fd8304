"""The run id of a pipeline task, read from the URI of one of its output artifacts.

The run id names a run's folder in the store (``<store_uri>/<run id>/<stage>/<method>``) and labels
its metrics. Passing it as a task input (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``) would put it into
every task's cache key, so no task could ever be reused by a cloned or retried run. Instead each
task reads it from where KFP writes its outputs:

- on a cluster, ``<pipeline_root>/<pipeline name>/<run uuid>/<task>/.../<artifact>``: the run's UUID;
- in the local runner, ``<pipeline_root>/<pipeline name>-<timestamp>/<task>/<artifact>``: that folder name.

>>> run_id_of("minio://mlpipeline/v2/artifacts/safetax-alignment/0b6c1f52-3f8e-4a8e-9d7a-1f2e3d4c5b6a/train/123/checkpoints")
'0b6c1f52-3f8e-4a8e-9d7a-1f2e3d4c5b6a'
>>> run_id_of("/runs/demo/safetax-alignment-2026-12-01-21-30-15-665123/train/checkpoints")
'safetax-alignment-2026-12-01-21-30-15-665123'
>>> run_id_of("/tmp/somewhere/out")
'local'
"""

from __future__ import annotations

import re

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_LOCAL = re.compile(r"[a-z0-9][a-z0-9-]*-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-\d{6}")


def run_id_of(artifact_uri: str) -> str:
    """The run id in an output artifact's URI or path; ``local`` when it has none."""
    parts = str(artifact_uri).rstrip("/").split("/")
    for pattern in (_UUID, _LOCAL):
        for part in parts:
            if pattern.fullmatch(part):
                return part
    return "local"
