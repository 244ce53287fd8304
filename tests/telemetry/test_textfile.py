"""Without a gateway a stage writes metrics.prom (textfile-collector format) beside its outputs."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from safetax.telemetry import StageTelemetry
from safetax.testing import FakeClock


def telemetry(out_dir: Path | None, clock: FakeClock, **kwargs: object) -> StageTelemetry:
    return StageTelemetry("score", pipeline="safetax-alignment", run_id="local-1", model="/models/tiny",
                          method="full", out_dir=out_dir, clock=clock, env={}, **kwargs)  # type: ignore[arg-type]


def samples(path: Path) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            found.setdefault(s.name, []).append((dict(s.labels), s.value))
    return found


def test_no_gateway_writes_a_parseable_textfile(out_dir: Path, clock: FakeClock) -> None:
    t = telemetry(out_dir, clock)
    assert t.gateway is None
    with t.run():
        t.samples_per_second("judge", 8.0)
        t.result("attack_success_rate", benchmark="strongreject", checkpoint="epoch-1", value=0.0625)
        clock.advance(3.0)
    written = samples(out_dir / "metrics.prom")
    stage = {"pipeline": "safetax-alignment", "run_id": "local-1", "stage": "score", "model": "tiny", "method": "full"}
    assert written["safetax_stage_duration_seconds"] == [(stage, 3.0)]
    assert written["safetax_judge_samples_per_second"] == [(stage, 8.0)]
    [(labels, value)] = written["safetax_attack_success_rate"]
    assert value == 0.0625
    assert labels == {"pipeline": "safetax-alignment", "run_id": "local-1", "model": "tiny", "method": "full",
                      "checkpoint": "epoch-1", "benchmark": "strongreject"}
    assert [p.name for p in out_dir.iterdir()] == ["metrics.prom"]  # the temporary file was renamed


def test_the_textfile_passes_promtool_lint(out_dir: Path, clock: FakeClock) -> None:
    t = telemetry(out_dir, clock)
    with t.run():
        t.train_progress(loss=0.5, tokens_per_second=100.0, epoch=2.0)
        t.samples_per_second("generation", 1.0)
        t.result("pass_at_1", benchmark="math500", checkpoint="epoch-2", value=0.5)
        t.tradeoff(checkpoint="epoch-2", safety_tax_rate=0.1, reasoning_drop=0.1, harmfulness_drop=0.2)
    lint = subprocess.run(["promtool", "check", "metrics"], input=(out_dir / "metrics.prom").read_bytes(),
                          capture_output=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_a_failed_stage_writes_stage_failed(out_dir: Path, clock: FakeClock) -> None:
    with pytest.raises(KeyError):
        with telemetry(out_dir, clock).run():
            raise KeyError("missing column")
    assert [v for _, v in samples(out_dir / "metrics.prom")["safetax_stage_failed"]] == [1.0]


def test_training_rewrites_the_textfile_at_most_once_per_interval(out_dir: Path, clock: FakeClock) -> None:
    t = telemetry(out_dir, clock)
    t.train_progress(loss=3.0)
    clock.advance(29.0)
    t.train_progress(loss=2.0)
    assert samples(out_dir / "metrics.prom")["safetax_train_loss"][0][1] == 3.0
    clock.advance(1.0)
    t.train_progress(loss=1.0)
    assert samples(out_dir / "metrics.prom")["safetax_train_loss"][0][1] == 1.0


def test_nowhere_to_publish_is_fine(clock: FakeClock) -> None:
    t = telemetry(None, clock)
    with t.run():
        t.result("pass_at_1", benchmark="math500", checkpoint="base", value=0.75)
    assert t.publish() is False
    assert t.kfp_metrics()["pass_at_1/math500/base"] == 0.75


def test_an_unwritable_out_dir_is_a_warning(tmp_path: Path, clock: FakeClock,
                                            caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the outputs directory should be")
    caplog.set_level(logging.WARNING, logger="safetax.telemetry")
    with telemetry(blocker, clock).run():
        pass
    assert "could not write" in caplog.text
