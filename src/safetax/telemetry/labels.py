"""Label values for telemetry: validated, short and bounded.

Every series carries the run's identity (pipeline, run id, stage, model,
method); results add a checkpoint and a benchmark. Values are checked once,
up front, and all problems are reported together (:class:`~safetax.config.Checks`),
so a typo fails the stage before a GPU is touched rather than producing an
unlabelled series on a dashboard. Nothing prompt-level is ever a label: the
number of series stays bounded by runs x methods x checkpoints x benchmarks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from safetax.config import Checks

MAX_LABEL_LENGTH = 128  # characters; a KFP run id is a 36-character UUID, model names are shorter
JOB = "safetax"  # the Pushgateway `job` of every group
# Labels that pushed series carry: an extra grouping key must not reuse one, because the
# Pushgateway overwrites a series' label with the grouping key's value of the same name.
RESERVED_KEYS = frozenset({"job", "instance", "pipeline", "run_id", "stage", "model", "method", "checkpoint", "benchmark",
                           "category", "hazard"})
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def model_label(model: str) -> str:
    """A short, credential-free model name: the last path component of a URI, path or hub id.

    >>> model_label("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B")
    'DeepSeek-R1-Distill-Qwen-7B'
    >>> model_label("s3://key:secret@bucket/models/Qwen-7B/?versionId=3")
    'Qwen-7B'
    >>> model_label("s3://user:pw@bucket")
    'bucket'
    >>> model_label("")
    ''
    """
    if "://" not in model:
        return model.rstrip("/").rpartition("/")[2]
    parts = urlsplit(model)
    name = parts.path.rstrip("/").rpartition("/")[2]
    return name or (parts.hostname or "")


def category_label(name: str) -> str:
    """A category name as a label value: control characters dropped, cut to ``MAX_LABEL_LENGTH``. The number
    of categories is bounded where they are counted (:data:`safetax.metrics.MAX_CATEGORIES` per benchmark).

    >>> category_label("violence"), len(category_label("x" * 300)), category_label("a\\tb")
    ('violence', 128, 'ab')
    """
    return _CONTROL.sub("", str(name))[:MAX_LABEL_LENGTH] or "unnamed"


def check_value(checks: Checks, name: str, value: object, *, required: bool) -> None:
    """Record a problem when ``value`` is not a usable label value."""
    if not isinstance(value, str):
        checks.fail(name, value, "a string")
    elif required and not value:
        checks.fail(name, value, "a non-empty string")
    elif len(value) > MAX_LABEL_LENGTH:
        checks.fail(name, value, f"at most {MAX_LABEL_LENGTH} characters")
    elif _CONTROL.search(value):
        checks.fail(name, value, "free of control characters")


@dataclass(frozen=True)
class StageLabels:
    """The identity of one stage run: the labels of every series it emits.

    ``model`` is shortened with :func:`model_label`; ``pipeline``, ``run_id`` and
    ``stage`` must be non-empty; ``model`` and ``method`` may be empty for a
    stage that has none (prepare). ``grouping`` adds Pushgateway grouping keys
    (for instance ``{"checkpoint_set": "epochs-1-3"}``) beyond the fixed ones.

    >>> StageLabels(pipeline="p", run_id="", stage="")
    Traceback (most recent call last):
    ...
    safetax.config.ConfigError: invalid telemetry labels (2 problem(s)):
      - `run_id` must be a non-empty string, got ''
      - `stage` must be a non-empty string, got ''
    """

    pipeline: str
    run_id: str
    stage: str
    model: str = ""
    method: str = ""
    grouping: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.model, str):
            object.__setattr__(self, "model", model_label(self.model))
        checks = Checks("telemetry labels")
        for name in ("pipeline", "run_id", "stage"):
            check_value(checks, name, getattr(self, name), required=True)
        for name in ("model", "method"):
            check_value(checks, name, getattr(self, name), required=False)
        for key, value in dict(self.grouping or {}).items():
            if not isinstance(key, str) or not _LABEL_NAME.fullmatch(key) or key.startswith("__"):
                checks.fail("grouping key", key, "a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, no leading __)")
            elif key in RESERVED_KEYS:
                checks.fail("grouping key", key, "none of " + ", ".join(sorted(RESERVED_KEYS)))
            else:
                check_value(checks, f"grouping[{key!r}]", value, required=True)
        checks.raise_if_any()

    def stage_labels(self) -> dict[str, str]:
        """Labels of the stage-wide series (duration, training, throughput)."""
        return {"pipeline": self.pipeline, "run_id": self.run_id, "stage": self.stage,
                "model": self.model, "method": self.method}

    def result_labels(self, checkpoint: str, benchmark: str | None = None) -> dict[str, str]:
        """Labels of a result series; raises ``ConfigError`` (a ValueError) naming a bad label."""
        checks = Checks("telemetry labels")
        check_value(checks, "checkpoint", checkpoint, required=True)
        labels = {"pipeline": self.pipeline, "run_id": self.run_id, "model": self.model,
                  "method": self.method, "checkpoint": checkpoint}
        if benchmark is not None:
            check_value(checks, "benchmark", benchmark, required=True)
            labels["benchmark"] = benchmark
        checks.raise_if_any()
        return labels

    def grouping_key(self) -> dict[str, str]:
        """The Pushgateway grouping key (``job`` is passed separately): one group per stage and method."""
        key = {"pipeline": self.pipeline, "run_id": self.run_id, "stage": self.stage, "method": self.method}
        return key | dict(self.grouping or {})
