"""Real servers for the telemetry tests: one Pushgateway and one Prometheus scraping it, per session.

Tests share them, so each test uses its own ``run_id`` (the ``run_id`` fixture).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from safetax.testing import FakeClock
from safetax.testing.prometheus import free_port, prometheus, pushgateway

_run_ids = itertools.count()


@pytest.fixture(scope="session")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pushgateway(tmp_path_factory.mktemp("pushgateway")) as url:
        yield url


@pytest.fixture(scope="session")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory, gateway_url: str) -> Iterator[str]:
    with prometheus(tmp_path_factory.mktemp("prometheus"), scrape_targets=[gateway_url]) as url:
        yield url


@pytest.fixture()
def run_id(request: pytest.FixtureRequest) -> str:
    """A run id of this test alone, so tests on the shared gateway never see each other's groups."""
    return f"{request.node.name[:80]}-{next(_run_ids)}"


@pytest.fixture()
def closed_port_url() -> str:
    """A loopback address that nothing listens on: a gateway that is down."""
    return f"127.0.0.1:{free_port()}"


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "outputs"
