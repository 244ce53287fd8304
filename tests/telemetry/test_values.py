"""Recording figures: value checks and the flat dict for a KFP Metrics artifact."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pytest

from safetax.telemetry import StageTelemetry
from safetax.testing import FakeClock


def stage(name: str = "score", clock: Callable[[], float] = time.monotonic) -> StageTelemetry:
    return StageTelemetry(name, pipeline="safetax-alignment", run_id="r1", model="org/Qwen-7B", method="lora-r4",
                          gateway="", clock=clock)


def test_kfp_metrics_is_a_flat_dict_of_every_figure(clock: FakeClock) -> None:
    t = stage("analytics", clock)
    with t.run():
        t.train_progress(loss=1.25, tokens_per_second=800.0, epoch=0.5)
        t.samples_per_second("generation", 12.5)
        t.samples_per_second("judge", 40.0)
        t.result("safety_score", benchmark="strongreject", checkpoint="epoch-1", value=0.93)
        t.result("attack_success_rate", benchmark="strongreject", checkpoint="epoch-1", value=0.07)
        t.result("pass_at_1", benchmark="aime24", checkpoint="base", value=0.5)
        t.result("overrefusal_rate", benchmark="xstest", checkpoint="epoch-1", value=0.1)
        t.tradeoff(checkpoint="epoch-1", safety_tax_rate=0.08, reasoning_drop=0.02, harmfulness_drop=-0.25)
        t.tradeoff(checkpoint="base", reasoning_drop=0.0)  # no STR for the base model
        clock.advance(12.0)
    assert t.kfp_metrics() == {
        "attack_success_rate/strongreject/epoch-1": 0.07,
        "generation_samples_per_second": 12.5,
        "harmfulness_drop/epoch-1": -0.25,
        "judge_samples_per_second": 40.0,
        "overrefusal_rate/xstest/epoch-1": 0.1,
        "pass_at_1/aime24/base": 0.5,
        "reasoning_drop/base": 0.0,
        "reasoning_drop/epoch-1": 0.02,
        "safety_score/strongreject/epoch-1": 0.93,
        "safety_tax_rate/epoch-1": 0.08,
        "stage_duration_seconds": 12.0,
        "train_epoch": 0.5,
        "train_loss": 1.25,
        "train_tokens_per_second": 800.0,
    }


def test_a_later_value_replaces_the_earlier_one() -> None:
    t = stage()
    t.result("pass_at_1", benchmark="math500", checkpoint="epoch-1", value=0.25)
    t.result("pass_at_1", benchmark="math500", checkpoint="epoch-1", value=0.75)
    assert t.kfp_metrics() == {"pass_at_1/math500/epoch-1": 0.75}


def test_a_nan_loss_is_recorded_but_left_out_of_the_kfp_dict() -> None:
    t = stage("train")
    t.train_progress(loss=math.nan, epoch=1.0)
    assert math.isnan(t.metrics.train_loss.labels(**t.labels.stage_labels())._value.get())
    assert t.kfp_metrics() == {"train_epoch": 1.0}


@pytest.mark.parametrize("kind,value,message", [
    ("safety_score", 93.8, r"`value` must be a fraction in \[0, 1\] \(not a percentage\), got 93.8"),
    ("pass_at_1", math.nan, "`value` must be a fraction"),
    ("accuracy", 0.5, "`kind` must be one of 'safety_score', 'attack_success_rate', 'pass_at_1'"),
])
def test_bad_results_are_value_errors(kind: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stage().result(kind, benchmark="b", checkpoint="epoch-1", value=value)


def test_bad_throughput_and_tradeoffs_are_value_errors() -> None:
    with pytest.raises(ValueError, match="`kind` must be one of 'generation', 'judge'"):
        stage().samples_per_second("judging", 1.0)
    with pytest.raises(ValueError, match="`value` must be a finite number >= 0"):
        stage().samples_per_second("judge", -1.0)
    with pytest.raises(ValueError, match=r"`reasoning_drop` must be in \[-1, 1\], got 12.0"):
        stage().tradeoff(checkpoint="epoch-1", reasoning_drop=12.0)
    with pytest.raises(ValueError, match="`safety_tax_rate` must be finite"):
        stage().tradeoff(checkpoint="epoch-1", safety_tax_rate=math.inf)
    with pytest.raises(ValueError, match="`tokens_per_second` must be a finite number >= 0"):
        stage("train").train_progress(loss=1.0, tokens_per_second=-5.0)


def test_each_stage_has_its_own_registry() -> None:
    a, b = stage(), stage()
    a.result("pass_at_1", benchmark="math500", checkpoint="epoch-1", value=0.25)
    assert a.metrics.registry is not b.metrics.registry
    assert b.kfp_metrics() == {}
