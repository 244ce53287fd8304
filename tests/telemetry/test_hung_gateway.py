"""A Pushgateway that accepts connections and never answers: pushes give up after the short timeout,
the training loop never waits on them, and a circuit breaker stops trying after repeated failures."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Gauge

from safetax.telemetry import CircuitBreaker, PushPolicy, StageTelemetry, push
from safetax.testing import FakeClock

TIMEOUT = 1.0  # the policy's timeout in these tests (the default is 5 s); the old code waited it 3 times plus backoff


@pytest.fixture()
def hung_gateway() -> Iterator[str]:
    """http://127.0.0.1:<port> of a TCP server that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.1)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conns.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for c in conns:
        c.close()
    server.close()


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge("safetax_train_loss", "loss", registry=registry).set(1.0)
    return registry


def test_a_push_to_a_hung_gateway_returns_within_its_timeout(hung_gateway: str, caplog: pytest.LogCaptureFixture) -> None:
    assert PushPolicy().timeout_s <= 5.0
    start = time.monotonic()
    assert push(_registry(), hung_gateway, {"run_id": "hung"}, PushPolicy(timeout_s=TIMEOUT, retries=2, backoff_s=0.5)) is False
    elapsed = time.monotonic() - start
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 1.5, elapsed  # one timeout: a timeout is not retried
    assert "failed after 1 attempt(s)" in caplog.text and "timed out" in caplog.text


def test_the_training_loop_never_waits_on_a_hung_gateway(hung_gateway: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="safetax.telemetry")
    policy = PushPolicy(timeout_s=TIMEOUT, interval_s=0.0)  # the breaker: 3 failures, then 5 minutes open
    t = StageTelemetry("train", pipeline="safetax-alignment", run_id="hung-train", method="lora-r4", gateway=hung_gateway,
                       policy=policy)
    slowest, queued = 0.0, []
    stage_start = time.monotonic()
    with t.run():
        deadline = time.monotonic() + 5.5 * TIMEOUT  # long enough for three background pushes to time out
        step = 0
        while time.monotonic() < deadline:
            start = time.monotonic()
            queued.append(t.train_progress(loss=1.0 / (step + 1), epoch=step / 100))
            slowest = max(slowest, time.monotonic() - start)
            step += 1
            time.sleep(0.02)
        end_start = time.monotonic()
    final = time.monotonic() - end_start
    assert slowest < 0.5, slowest  # every training step went on at once
    assert queued[0] is True and queued[-1] is False  # the breaker opened: later periodic pushes are skipped
    assert final < 2 * TIMEOUT + 1.5, final  # the push in flight, then the synchronous final push (one attempt)
    opened = [r for r in caplog.records if "periodic pushes are skipped" in r.getMessage()]
    assert len(opened) == 1  # logged once
    assert time.monotonic() - stage_start < 12 * TIMEOUT
    assert t.kfp_metrics()["train_loss"] > 0


def test_the_breaker_opens_after_repeated_failures_and_closes_on_success() -> None:
    clock = FakeClock()
    b = CircuitBreaker(failures=3, open_s=300.0, clock=clock)
    assert [b.record(False) for _ in range(3)] == [False, False, True]  # True: it opened (log it once)
    assert b.is_open and not b.allow_periodic()
    assert b.record(False) is False  # still open: not logged again
    clock.advance(300.0)
    assert b.allow_periodic()  # one trial after the open period
    b.record(True)
    assert not b.is_open and b.allow_periodic()


def test_an_open_breaker_skips_periodic_pushes_without_connecting(closed_port_url: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    policy = PushPolicy(timeout_s=1.0, retries=0, breaker_failures=2, breaker_open_s=60.0)
    b = CircuitBreaker(policy.breaker_failures, policy.breaker_open_s, clock)
    gateway = f"http://{closed_port_url}"
    assert not push(_registry(), gateway, {"run_id": "b"}, policy, periodic=True, breaker=b)
    assert not push(_registry(), gateway, {"run_id": "b"}, policy, periodic=True, breaker=b)
    assert b.is_open
    caplog.clear()
    assert not push(_registry(), gateway, {"run_id": "b"}, policy, periodic=True, breaker=b)
    assert caplog.text == ""  # skipped: no attempt, no warning
    assert not push(_registry(), gateway, {"run_id": "b"}, policy, breaker=b)  # a final push is still tried once
    assert "failed after 1 attempt(s)" in caplog.text
