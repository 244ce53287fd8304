"""Stages push to a real Pushgateway; a real Prometheus scrapes it and answers queries."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.samples import Sample

from safetax.telemetry import GATEWAY_ENV, PushPolicy, StageTelemetry
from safetax.testing import FakeClock
from safetax.testing.prometheus import pushgateway, query, scrape

PIPELINE = "safetax-alignment"
MODEL_URI = "s3://AKIAKEY:topsecret@models/r1/DeepSeek-R1-Distill-Qwen-7B"
FAST = PushPolicy(timeout_s=2.0, retries=1, backoff_s=0.0)  # a down gateway costs no waiting in tests
# bcrypt (cost 4) of "s3cret-pw", for a gateway that asks for basic auth.
USER, PASSWORD, PASSWORD_HASH = "telemetry-ci", "s3cret-pw", "$2b$04$phSfqjTukLWs.jV/W7JejOM7LCW9YkWX9RfeRV8BqP6NBN9R5894C"


def telemetry(stage: str, run_id: str, gateway: str | None, method: str = "lora-r4", **kwargs: object) -> StageTelemetry:
    return StageTelemetry(stage, pipeline=PIPELINE, run_id=run_id, model=MODEL_URI, method=method,
                          gateway=gateway, policy=kwargs.pop("policy", FAST), **kwargs)  # type: ignore[arg-type]


def pushed(gateway: str, run_id: str) -> dict[str, list[Sample]]:
    """The gateway's safetax samples of one run, by metric name."""
    found: dict[str, list[Sample]] = {}
    for sample in scrape(gateway, prefix="safetax_"):
        if sample.labels.get("run_id") == run_id:
            found.setdefault(sample.name, []).append(sample)
    return found


def only(result: list[dict[str, object]]) -> tuple[dict[str, str], float]:
    assert len(result) == 1, result
    metric, (_, value) = result[0]["metric"], result[0]["value"]  # type: ignore[misc]
    return metric, float(value)  # type: ignore[return-value]


def test_a_stage_s_figures_reach_prometheus_with_their_labels(gateway_url: str, prometheus_url: str,
                                                            run_id: str, clock: FakeClock) -> None:
    t = telemetry("train", run_id, gateway_url, clock=clock)
    before = time.time()
    with t.run():
        t.train_progress(loss=1.5, tokens_per_second=900.0, epoch=1.0)
        t.samples_per_second("generation", 12.5)
        t.result("safety_score", benchmark="strongreject", checkpoint="epoch-1", value=0.875)
        t.result("pass_at_1", benchmark="aime24", checkpoint="epoch-1", value=0.25)
        t.tradeoff(checkpoint="epoch-1", safety_tax_rate=0.08, reasoning_drop=0.05, harmfulness_drop=0.5)
        clock.advance(42.0)

    stage = {"__name__": "safetax_train_loss", "job": "safetax", "pipeline": PIPELINE, "run_id": run_id,
             "stage": "train", "model": "DeepSeek-R1-Distill-Qwen-7B", "method": "lora-r4"}
    assert only(query(prometheus_url, f'safetax_train_loss{{run_id="{run_id}"}}')) == (stage, 1.5)
    for name, value in [("safetax_train_tokens_per_second", 900.0), ("safetax_train_epoch", 1.0),
                        ("safetax_generation_samples_per_second", 12.5), ("safetax_stage_duration_seconds", 42.0)]:
        assert only(query(prometheus_url, f'{name}{{run_id="{run_id}"}}')) == (stage | {"__name__": name}, value)
    _, last_success = only(query(prometheus_url, f'safetax_stage_last_success_timestamp_seconds{{run_id="{run_id}"}}'))
    assert before <= last_success <= time.time()

    labels, value = only(query(prometheus_url, f'safetax_safety_score{{run_id="{run_id}"}}'))
    assert value == 0.875
    assert labels == stage | {"__name__": "safetax_safety_score", "checkpoint": "epoch-1", "benchmark": "strongreject"}
    assert only(query(prometheus_url, f'safetax_pass_at_1{{run_id="{run_id}",benchmark="aime24"}}'))[1] == 0.25
    labels, value = only(query(prometheus_url, f'safetax_safety_tax_rate{{run_id="{run_id}"}}'))
    assert (labels["checkpoint"], value) == ("epoch-1", 0.08)
    assert "benchmark" not in labels
    assert "safetax_stage_failed" not in pushed(gateway_url, run_id)
    assert "topsecret" not in str(scrape(gateway_url))


def test_a_failing_stage_pushes_stage_failed_and_reraises(gateway_url: str, prometheus_url: str, run_id: str) -> None:
    t = telemetry("generate", run_id, gateway_url)
    with pytest.raises(RuntimeError, match="out of memory"):
        with t.run():
            t.samples_per_second("generation", 3.0)
            raise RuntimeError("out of memory")

    labels, value = only(query(prometheus_url, f'safetax_stage_failed{{run_id="{run_id}"}}'))
    assert (labels["stage"], labels["method"], value) == ("generate", "lora-r4", 1.0)
    group = pushed(gateway_url, run_id)
    assert group["safetax_generation_samples_per_second"][0].value == 3.0  # what the stage had measured
    assert "safetax_stage_duration_seconds" not in group
    assert "safetax_stage_last_success_timestamp_seconds" not in group


def test_a_successful_retry_replaces_the_failed_group(gateway_url: str, run_id: str) -> None:
    with pytest.raises(ValueError):
        with telemetry("judge", run_id, gateway_url).run():
            raise ValueError("judge crashed")
    assert pushed(gateway_url, run_id)["safetax_stage_failed"][0].value == 1.0
    with telemetry("judge", run_id, gateway_url).run():
        pass
    assert set(pushed(gateway_url, run_id)) == {"safetax_stage_duration_seconds",
                                                "safetax_stage_last_success_timestamp_seconds"}


def test_parallel_methods_keep_their_own_groups(gateway_url: str, run_id: str) -> None:
    for method, loss in [("lora-r4", 0.5), ("full", 0.25)]:
        t = telemetry("train", run_id, gateway_url, method=method)
        with t.run():
            t.train_progress(loss=loss)
    losses = {s.labels["method"]: s.value for s in pushed(gateway_url, run_id)["safetax_train_loss"]}
    assert losses == {"lora-r4": 0.5, "full": 0.25}


def test_the_gateway_comes_from_the_environment(gateway_url: str, run_id: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GATEWAY_ENV, gateway_url.removeprefix("http://"))  # host:port form
    t = telemetry("score", run_id, gateway=None)
    assert t.gateway == gateway_url
    with t.run():
        t.result("overrefusal_rate", benchmark="xstest", checkpoint="base", value=0.125)
    [sample] = pushed(gateway_url, run_id)["safetax_overrefusal_rate"]
    assert (sample.labels["checkpoint"], sample.value) == ("base", 0.125)


def test_training_pushes_periodically_at_most_once_per_interval(gateway_url: str, run_id: str,
                                                                clock: FakeClock) -> None:
    t = telemetry("train", run_id, gateway_url, clock=clock, policy=PushPolicy(interval_s=30.0, retries=0))

    def loss_on_gateway() -> float:
        assert t.flush(timeout_s=10) is True  # periodic pushes go out on a background thread
        return pushed(gateway_url, run_id)["safetax_train_loss"][0].value

    assert t.train_progress(loss=2.0, epoch=0.1) is True  # the first call pushes at once
    assert loss_on_gateway() == 2.0
    clock.advance(10.0)
    assert t.train_progress(loss=1.5, epoch=0.2) is False
    clock.advance(19.9)
    assert t.train_progress(loss=1.25, epoch=0.3) is False
    assert loss_on_gateway() == 2.0
    clock.advance(0.1)
    assert t.train_progress(loss=1.0, epoch=0.4) is True
    assert loss_on_gateway() == 1.0
    clock.advance(5.0)
    assert t.train_progress(loss=0.75, epoch=0.5) is False
    assert loss_on_gateway() == 1.0
    t.publish()  # the final push: synchronous, the latest figures
    assert pushed(gateway_url, run_id)["safetax_train_loss"][0].value == 0.75


def test_a_down_gateway_logs_a_warning_without_credentials_and_the_stage_goes_on(
        closed_port_url: str, run_id: str, caplog: pytest.LogCaptureFixture) -> None:
    t = telemetry("train", run_id, f"http://{USER}:{PASSWORD}@{closed_port_url}")
    caplog.set_level(logging.WARNING, logger="safetax.telemetry")
    ran_on = False
    with t.run():
        assert t.train_progress(loss=1.0) is True  # handed to the background pusher
        assert t.flush(timeout_s=10) is False  # which failed
        ran_on = True
    assert ran_on
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # the periodic push and the final one
    assert f"***@{closed_port_url}" in warnings[0].getMessage()
    assert "failed after 2 attempt(s)" in warnings[0].getMessage()
    assert PASSWORD not in caplog.text and USER not in caplog.text
    assert t.kfp_metrics()["train_loss"] == 1.0


def test_a_down_gateway_falls_back_to_the_textfile(closed_port_url: str, run_id: str, out_dir: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    t = telemetry("score", run_id, closed_port_url, out_dir=out_dir)
    with t.run():
        t.result("safety_score", benchmark="strongreject", checkpoint="epoch-2", value=0.5)
    assert "safetax_safety_score" in (out_dir / "metrics.prom").read_text()
    assert "writing" in caplog.text and "metrics.prom instead" in caplog.text


@pytest.fixture(scope="module")
def auth_gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pushgateway(tmp_path_factory.mktemp("auth-gateway"), basic_auth_users={USER: PASSWORD_HASH}) as url:
        yield url


def test_credentials_in_the_address_are_sent_as_basic_auth(auth_gateway_url: str, run_id: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    host = auth_gateway_url.removeprefix("http://")
    assert telemetry("score", run_id, auth_gateway_url).publish() is False  # no credentials: 401
    assert telemetry("score", run_id, f"http://{USER}:wrong-pw@{host}").publish() is False
    assert "wrong-pw" not in caplog.text
    assert "401" in caplog.text
    assert telemetry("score", run_id, f"http://{USER}:{PASSWORD}@{host}").publish() is True


def test_a_stage_without_model_or_method_pushes_too(gateway_url: str, run_id: str) -> None:
    t = StageTelemetry("prepare", pipeline=PIPELINE, run_id=run_id, gateway=gateway_url, policy=FAST)
    assert t.labels.grouping_key()["method"] == ""  # sent as method@base64/=
    with t.run():
        pass
    [sample] = pushed(gateway_url, run_id)["safetax_stage_duration_seconds"]
    assert sample.labels["stage"] == "prepare"
    assert sample.labels.get("method", "") == ""
