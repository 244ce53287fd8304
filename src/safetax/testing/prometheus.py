"""Real Prometheus and Pushgateway servers for tests, on free loopback ports.

``pushgateway(tmp)`` and ``prometheus(tmp, scrape_targets)`` are context
managers that start the Debian binaries (``apt-get install prometheus
prometheus-pushgateway``; CI installs them), wait until ``/-/ready`` answers,
yield the base URL and stop the process by its PID (SIGTERM, then SIGKILL).
Prometheus scrapes every second with ``honor_labels: true``, as it must for a
Pushgateway, so the pushed ``job``/``stage`` labels survive. ``query`` polls the
HTTP API until the first scrapes have landed (about 5 s after start).
Each server logs to a file in ``tmp``; when one never gets ready, the error
carries the tail of that log.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

PUSHGATEWAY_BIN = "prometheus-pushgateway"
PROMETHEUS_BIN = "prometheus"
INSTALL_HINT = "install the Debian packages: apt-get install prometheus prometheus-pushgateway"


class ServerError(RuntimeError):
    """A test server is missing, or did not get ready."""


def find_binary(name: str) -> str:
    """The path of ``name`` on PATH or in /usr/bin; a ServerError that says how to install it."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
    if path is None:
        raise ServerError(f"{name} not found on PATH or in /usr/bin; {INSTALL_HINT}")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(log: Path, lines: int = 20) -> str:
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    """Poll ``url/-/ready`` until 200; ServerError with the log tail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"{proc.args[0]} exited with {proc.returncode} before it was ready:\n{_log_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code == 401:  # up, and asking for the basic auth it was configured with
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise ServerError(f"{proc.args[0]} not ready at {url} after {timeout:.0f}s:\n{_log_tail(log)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server by its PID: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def _server(args: list[str], url: str, log: Path, ready_timeout: float) -> Iterator[str]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_ready(proc, url, log, ready_timeout)
        yield url
    finally:
        _stop(proc)


@contextmanager
def pushgateway(tmp_dir: Path, basic_auth_users: Mapping[str, str] | None = None, port: int | None = None,
                ready_timeout: float = 30.0) -> Iterator[str]:
    """A Pushgateway without persistence; yields its URL, ``http://127.0.0.1:<port>``.

    ``basic_auth_users`` maps user names to bcrypt hashes: every endpoint then asks for basic auth.
    ``port`` defaults to a free one.
    """
    address = f"127.0.0.1:{port or free_port()}"
    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    args = [find_binary(PUSHGATEWAY_BIN), f"--web.listen-address={address}", "--persistence.file="]
    if basic_auth_users:
        web_config = tmp_dir / "web.yml"
        web_config.write_text(json.dumps({"basic_auth_users": dict(basic_auth_users)}))  # JSON is YAML
        args.append(f"--web.config.file={web_config}")
    with _server(args, f"http://{address}", tmp_dir / "pushgateway.log", ready_timeout) as url:
        yield url


def scrape_config(targets: Sequence[str]) -> dict[str, Any]:
    """A Prometheus config scraping ``targets`` (URLs or host:port) every second, honouring their labels."""
    hosts = [t.split("://", 1)[-1].rstrip("/") for t in targets]
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "targets", "honor_labels": True, "static_configs": [{"targets": hosts}]}],
    }


@contextmanager
def prometheus(tmp_dir: Path, scrape_targets: Sequence[str], port: int | None = None,
               ready_timeout: float = 60.0) -> Iterator[str]:
    """A Prometheus scraping ``scrape_targets`` (URLs or host:port) every second; yields its URL,
    ``http://127.0.0.1:<port>``. ``port`` defaults to a free one."""
    address = f"127.0.0.1:{port or free_port()}"
    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    config = tmp_dir / "prometheus.yml"
    config.write_text(json.dumps(scrape_config(scrape_targets), indent=2))  # JSON is YAML
    args = [find_binary(PROMETHEUS_BIN), f"--config.file={config}", f"--storage.tsdb.path={tmp_dir / 'tsdb'}",
            f"--web.listen-address={address}"]
    with _server(args, f"http://{address}", tmp_dir / "prometheus.log", ready_timeout) as url:
        yield url


def query(prom_url: str, promql: str, timeout: float = 30.0, at: float | None = None) -> list[dict[str, Any]]:
    """Poll ``/api/v1/query`` until ``promql`` has a non-empty result; the (empty) last result after ``timeout``.

    Each item is ``{"metric": {label: value}, "value": [timestamp, "value"]}``. ``at``: evaluate at this
    unix time instead of now (``time()`` in the expression is then ``at``).
    """
    params = {"query": promql} | ({"time": f"{at:.3f}"} if at is not None else {})
    url = f"{prom_url}/api/v1/query?" + urllib.parse.urlencode(params)
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise ServerError(f"query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(0.25)


def scrape(url: str, prefix: str = "") -> list[Sample]:
    """The samples that ``url/metrics`` exposes now (whose name starts with ``prefix``)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith(prefix)]
