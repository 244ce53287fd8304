"""The test servers themselves: clear errors when missing or broken, stopped on exit."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from safetax.testing.prometheus import ServerError, find_binary, free_port, pushgateway, query, scrape_config


def test_a_missing_binary_says_how_to_install_it() -> None:
    with pytest.raises(ServerError, match="apt-get install prometheus prometheus-pushgateway"):
        find_binary("prometheus-no-such-binary")


def test_a_server_that_cannot_start_raises_with_its_log(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(ServerError, match="(?s)exited with .*address already in use"):
            with pushgateway(tmp_path, port=port):
                pass  # pragma: no cover


def test_the_server_is_stopped_on_exit(tmp_path: Path) -> None:
    with pushgateway(tmp_path) as url:
        with urllib.request.urlopen(f"{url}/-/healthy", timeout=5) as resp:
            assert resp.status == 200
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/-/healthy", timeout=5)


def test_the_scrape_config_scrapes_every_second_and_honours_labels() -> None:
    config = scrape_config(["http://127.0.0.1:9091/", "127.0.0.1:9100"])
    assert config["global"]["scrape_interval"] == config["global"]["scrape_timeout"] == "1s"
    [job] = config["scrape_configs"]
    assert job["honor_labels"] is True
    assert job["static_configs"] == [{"targets": ["127.0.0.1:9091", "127.0.0.1:9100"]}]


def test_query_returns_the_empty_result_after_its_timeout(prometheus_url: str) -> None:
    assert query(prometheus_url, 'safetax_stage_failed{run_id="never-pushed"}', timeout=0.5) == []
    [up] = query(prometheus_url, "up")
    assert up["value"][1] == "1"
