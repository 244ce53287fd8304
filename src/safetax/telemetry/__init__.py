"""Prometheus telemetry for every pipeline stage.

Each stage run (one KFP task) makes a :class:`StageTelemetry`: a fresh
``CollectorRegistry`` with the safetax gauges (names fixed in
:mod:`~safetax.telemetry.metrics`; the Helm chart's dashboard and alerts query
them), labelled by pipeline, run id, stage, model, method and, for results,
checkpoint and benchmark: never anything per prompt, so cardinality stays
bounded. ``StageTelemetry.run()`` times the stage and publishes at its end, on
success and on failure. Publishing PUTs the registry to the Pushgateway named by
``$SAFETAX_PUSHGATEWAY`` (or passed in) under the grouping key job="safetax",
pipeline, run_id, stage, method; a down gateway costs a warning, never the
stage, and a hung one at most the push timeout (5 s): periodic pushes during
training run on a background thread behind a circuit breaker. With no gateway, ``metrics.prom`` (textfile-collector format) is
written beside the outputs. ``kfp_metrics()`` gives the same figures as a flat
dict for a KFP ``Metrics`` artifact.

Modules: :mod:`.labels` (validation, short model names, grouping key),
:mod:`.metrics` (the contract and the flat dict), :mod:`.publish` (gateway
address, push with retries, circuit breaker, background pusher, textfile), :mod:`.stage` (``StageTelemetry``).
"""

from safetax.telemetry.labels import StageLabels, model_label
from safetax.telemetry.metrics import MetricSet, flatten
from safetax.telemetry.publish import (
    GATEWAY_ENV,
    TEXTFILE_NAME,
    BackgroundPusher,
    CircuitBreaker,
    PushPolicy,
    breaker_for,
    push,
    redact_url,
    resolve_gateway,
)
from safetax.telemetry.stage import StageTelemetry

__all__ = [
    "GATEWAY_ENV", "TEXTFILE_NAME", "BackgroundPusher", "CircuitBreaker", "MetricSet", "PushPolicy", "StageLabels",
    "StageTelemetry", "breaker_for", "flatten", "model_label", "push", "redact_url", "resolve_gateway",
]
