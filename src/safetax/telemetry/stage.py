"""One stage run's telemetry: record figures, time the stage, publish at the end.

A :class:`StageTelemetry` belongs to one stage run (one KFP task). It holds a
fresh registry with every safetax gauge (:mod:`safetax.telemetry.metrics`),
labelled with the run's identity (:class:`~safetax.telemetry.labels.StageLabels`).
``run()`` times the stage and publishes once at the end, from the success path
and from the failure path alike; ``train_progress()`` also publishes during
training, at most once per ``PushPolicy.interval_s`` of an injectable clock.
Publishing goes to the Pushgateway when one is configured and otherwise (or when
the push fails) to ``out_dir/metrics.prom``; it never raises. Periodic pushes
go through a background thread (the training loop never waits on the gateway)
and are skipped while the gateway's circuit breaker is open; the final push is
synchronous, with the policy's short timeout
(:mod:`safetax.telemetry.publish`).

A stage that reports several methods (analytics over LoRA and full fine-tuning)
makes one ``StageTelemetry`` per method: the method is part of the grouping key,
and the Pushgateway overwrites a series' ``method`` with the group's.

>>> t = StageTelemetry("score", pipeline="safetax-alignment", run_id="r1", model="org/Qwen-7B", method="full",
...                    gateway="")
>>> with t.run():
...     t.result("safety_score", benchmark="strongreject", checkpoint="epoch-1", value=0.93)
>>> {k: v for k, v in t.kfp_metrics().items() if k.startswith("safety")}
{'safety_score/strongreject/epoch-1': 0.93}
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from safetax.config import Checks
from safetax.telemetry.labels import JOB, StageLabels
from safetax.telemetry.metrics import RESULT_KINDS, THROUGHPUT_KINDS, MetricSet, flatten
from safetax.telemetry.publish import (
    TEXTFILE_NAME,
    BackgroundPusher,
    PushPolicy,
    breaker_for,
    push,
    resolve_gateway,
    write_textfile,
)

log = logging.getLogger("safetax.telemetry")


class StageTelemetry:
    """Metrics of one stage run, pushed to a Pushgateway or written beside the outputs.

    Args:
        stage: the stage name (``train``, ``generate``, ...); non-empty.
        pipeline: the pipeline name; non-empty.
        run_id: the pipeline run's id; non-empty.
        model: the model; a URI or hub id is cut to its last path component.
        method: ``base``, ``lora-r4``, ``full``, ...; empty for a stage without one.
        out_dir: where ``metrics.prom`` goes when there is no gateway (or the push fails).
        gateway: Pushgateway address; None reads ``$SAFETAX_PUSHGATEWAY``, "" means none.
        grouping: extra grouping keys, e.g. ``{"checkpoint_set": "epochs-1-3"}``.
        policy: push timeout, retries and the periodic push interval.
        clock: monotonic seconds, for the duration and the periodic push (inject a fake in tests).
        env: the environment to read ``$SAFETAX_PUSHGATEWAY`` from (default ``os.environ``).

    Raises:
        ConfigError: (a ValueError) naming every bad label or gateway address.
    """

    def __init__(self, stage: str, *, pipeline: str, run_id: str, model: str = "", method: str = "",
                 out_dir: Path | str | None = None, gateway: str | None = None,
                 grouping: Mapping[str, str] | None = None, policy: PushPolicy = PushPolicy(),
                 clock: Callable[[], float] = time.monotonic, env: Mapping[str, str] | None = None) -> None:
        self.labels = StageLabels(pipeline=pipeline, run_id=run_id, stage=stage, model=model, method=method,
                                  grouping=grouping)
        self.gateway = resolve_gateway(gateway, env)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.policy = policy
        self.metrics = MetricSet()
        self._clock = clock
        self._last_publish: float | None = None
        self._pusher: BackgroundPusher | None = None

    @contextmanager
    def run(self) -> Iterator[StageTelemetry]:
        """Time the block; publish at its end. On an exception set ``stage_failed`` = 1, publish, re-raise."""
        start = self._clock()
        stage = self.labels.stage_labels()
        try:
            yield self
        except BaseException:
            self.record_failure()
            raise
        self.metrics.stage_failed.clear()
        self.metrics.stage_duration.labels(**stage).set(self._clock() - start)
        self.metrics.stage_last_success.labels(**stage).set_to_current_time()
        self.publish()

    def record_failure(self) -> bool:
        """Mark the stage failed (``stage_failed`` = 1, no success figures) and publish; for a failure after
        ``run()`` ended too (the stage's publication to the store). Returns whether it published."""
        self.metrics.stage_failed.labels(**self.labels.stage_labels()).set(1)
        self.metrics.stage_duration.clear()
        self.metrics.stage_last_success.clear()
        return self.publish()

    def train_progress(self, loss: float, tokens_per_second: float | None = None,
                       epoch: float | None = None) -> bool:
        """Record training progress; publish if ``policy.interval_s`` has passed since the last publish.

        The first call publishes at once, so a dashboard sees a run as soon as it trains.
        A NaN loss is recorded as is (divergence is worth seeing). Returns whether it published
        (with a gateway: whether it handed the figures to the background pusher; see :meth:`flush`).
        """
        checks = Checks("train_progress")
        for name, value in (("tokens_per_second", tokens_per_second), ("epoch", epoch)):
            if value is not None and not (math.isfinite(value) and value >= 0):
                checks.fail(name, value, "a finite number >= 0")
        checks.raise_if_any()
        labels = self.labels.stage_labels()
        self.metrics.train_loss.labels(**labels).set(loss)
        if tokens_per_second is not None:
            self.metrics.train_tokens_per_second.labels(**labels).set(tokens_per_second)
        if epoch is not None:
            self.metrics.train_epoch.labels(**labels).set(epoch)
        due = self._last_publish is None or self._clock() - self._last_publish >= self.policy.interval_s
        return self._publish_periodic() if due else False

    def _publish_periodic(self) -> bool:
        """Hand the figures to the background pusher (True when queued), or write the textfile without a gateway."""
        self._last_publish = self._clock()
        if self.gateway is None:
            return self.out_dir is not None and write_textfile(self.metrics.registry, self.out_dir) is not None
        if self._pusher is None:
            self._pusher = BackgroundPusher(self.gateway, self.labels.grouping_key(), self.policy, JOB,
                                            breaker_for(self.gateway, self.policy, self._clock))
        return self._pusher.submit(self.metrics.registry)

    def flush(self, timeout_s: float | None = None) -> bool | None:
        """Wait for the periodic push in flight, if any; the last periodic push's result (None: none yet)."""
        return None if self._pusher is None else self._pusher.flush(timeout_s)

    def samples_per_second(self, kind: str, value: float) -> None:
        """Record throughput of ``kind`` ``generation`` or ``judge`` in samples per second."""
        checks = Checks("samples_per_second")
        checks.one_of("kind", kind, THROUGHPUT_KINDS)
        if not (math.isfinite(value) and value >= 0):
            checks.fail("value", value, "a finite number >= 0")
        checks.raise_if_any()
        self.metrics.samples_per_second[kind].labels(**self.labels.stage_labels()).set(value)

    def result(self, kind: str, *, benchmark: str, checkpoint: str, value: float) -> None:
        """Record a benchmark result of one checkpoint: ``kind`` is one of
        ``safety_score``, ``attack_success_rate``, ``pass_at_1``, ``overrefusal_rate``; ``value`` in [0, 1]."""
        checks = Checks("result")
        checks.one_of("kind", kind, RESULT_KINDS)
        if not (math.isfinite(value) and 0 <= value <= 1):
            checks.fail("value", value, "a fraction in [0, 1] (not a percentage)")
        checks.raise_if_any()
        self.metrics.results[kind].labels(**self.labels.result_labels(checkpoint, benchmark)).set(value)

    def tradeoff(self, *, checkpoint: str, safety_tax_rate: float | None = None,
                 reasoning_drop: float | None = None, harmfulness_drop: float | None = None) -> None:
        """Record a checkpoint's trade-off against the base model; None leaves a figure out (STR of the base).

        ``reasoning_drop`` and ``harmfulness_drop`` are in points of 0..1, so within [-1, 1].
        """
        figures = {"safety_tax_rate": safety_tax_rate, "reasoning_drop": reasoning_drop,
                   "harmfulness_drop": harmfulness_drop}
        checks = Checks("tradeoff")
        for name, value in figures.items():
            bound = math.inf if name == "safety_tax_rate" else 1.0
            if value is not None and not (math.isfinite(value) and -bound <= value <= bound):
                checks.fail(name, value, "finite" if bound == math.inf else "in [-1, 1]")
        checks.raise_if_any()
        labels = self.labels.result_labels(checkpoint)
        for name, value in figures.items():
            if value is not None:
                self.metrics.tradeoffs[name].labels(**labels).set(value)

    def publish(self) -> bool:
        """Push to the gateway now (after any periodic push in flight), or write ``out_dir/metrics.prom``;
        never raises. Returns whether it published."""
        self._last_publish = self._clock()
        if self._pusher is not None:
            self._pusher.close(self.policy.timeout_s + 1.0)
            self._pusher = None
        if self.gateway is not None:
            if push(self.metrics.registry, self.gateway, self.labels.grouping_key(), self.policy, job=JOB,
                    breaker=breaker_for(self.gateway, self.policy, self._clock)):
                return True
            if self.out_dir is not None:
                log.warning("telemetry: writing %s instead", self.out_dir / TEXTFILE_NAME)
        if self.out_dir is not None:
            return write_textfile(self.metrics.registry, self.out_dir) is not None
        return False

    def kfp_metrics(self) -> dict[str, float]:
        """The figures as a flat dict for a KFP ``Metrics`` artifact, e.g. ``safety_score/strongreject/epoch-1``.

        Holds ``stage_duration_seconds``, the training and throughput figures,
        ``{result}/{benchmark}/{checkpoint}`` and ``{tradeoff}/{checkpoint}``; not the
        last-success timestamp, nor non-finite values.
        """
        return flatten(self.metrics.registry)
