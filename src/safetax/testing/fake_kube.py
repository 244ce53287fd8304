"""A local fake of the Kubernetes API for TrainJobs: a threaded HTTP server on 127.0.0.1 that the real
``kubernetes`` Python client talks to, with a minimal Kubeflow Trainer controller behind it.

Endpoints (what :mod:`safetax.training.trainjob` calls): create, get and delete
``trainer.kubeflow.org/v1alpha1`` trainjobs; list pods by label selector; read a pod's log (with
``tailLines``). Every request is recorded in :attr:`FakeKube.requests`, every created body in
:attr:`FakeKube.created`.

The controller does what the torch runtime does, on this machine: for a TrainJob of N nodes it
starts N processes running the trainer's ``command`` (``python`` is this interpreter: the fake's
"image" is the test's environment) with the trainer's plain ``env`` and the ``PET_*`` variables
torchrun reads (node rank, master 127.0.0.1 and a free port, processes per node), each as a pod
``<job>-node-0-<i>`` labelled like JobSet's, whose log is the process's output. The TrainJob turns
``Complete`` when every node exits 0, ``Failed`` (the other nodes stopped, as JobSet's failure
policy does) when one fails; a node's ``finishedAt`` is the time its process exited. With ``start_pods=False`` pods stay ``Pending`` forever (a cluster
without free GPUs). Deleting a TrainJob stops its processes and removes its pods. Processes are
stopped by their own process group id, never by name.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

JOBS = re.compile(r"^/apis/trainer\.kubeflow\.org/v1alpha1/namespaces/([^/]+)/trainjobs(?:/([^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
LOG = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeKube:
    """The fake API's state and controller; ``url`` once started (use as a context manager)."""

    def __init__(self, logs: Path, start_pods: bool = True) -> None:
        self.logs, self.start_pods = Path(logs), start_pods
        self.lock = threading.Lock()
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> FakeKube:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._serve(self, "GET")

            def do_POST(self) -> None:
                fake._serve(self, "POST")

            def do_DELETE(self) -> None:
                fake._serve(self, "DELETE")

            def log_message(self, *args: object) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for name in list(self.procs):
            self._stop(name)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def client(self) -> Any:
        """A real ``kubernetes.client.ApiClient`` pointed at this server."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        return client.ApiClient(cfg)

    # --- HTTP -------------------------------------------------------------------------------------

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = json.loads(h.rfile.read(int(h.headers.get("Content-Length") or 0)) or b"null")
        with self.lock:
            self.requests.append((method, url.path))
            status, payload = self._route(method, url.path, query, body)
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if m := JOBS.match(path):
            ns, name = m.groups()
            if method == "POST" and name is None:
                return self._create(ns, body)
            if (ns, name) not in self.jobs:
                return 404, _status(404, "NotFound", f'trainjobs.trainer.kubeflow.org "{name}" not found')
            if method == "GET":
                return 200, self.jobs[(ns, name)]
            if method == "DELETE":
                return 200, self._delete(ns, name)
        if (m := PODS.match(path)) and method == "GET":
            wanted = dict(kv.split("=", 1) for kv in query.get("labelSelector", "").split(",") if kv)
            items = [p for (ns, _), p in self.pods.items() if ns == m.group(1)
                     and all(p["metadata"]["labels"].get(k) == v for k, v in wanted.items())]
            return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}
        if (m := LOG.match(path)) and method == "GET":
            if (m.group(1), m.group(2)) not in self.pods:
                return 404, _status(404, "NotFound", f'pods "{m.group(2)}" not found')
            lines = (self.logs / f"{m.group(2)}.log").read_text(errors="replace").splitlines(keepends=True)
            return 200, "".join(lines[-int(query["tailLines"]):] if "tailLines" in query else lines)
        return 404, _status(404, "NotFound", f"{method} {path} is not served by the fake")

    # --- controller -------------------------------------------------------------------------------

    def _create(self, ns: str, body: dict[str, Any]) -> tuple[int, Any]:
        name = body["metadata"]["name"]
        if (ns, name) in self.jobs:
            return 409, _status(409, "AlreadyExists", f'trainjobs.trainer.kubeflow.org "{name}" already exists')
        self.created.append(json.loads(json.dumps(body)))
        job = json.loads(json.dumps(body)) | {"status": {"conditions": []}}
        self.jobs[(ns, name)] = job
        trainer = body["spec"]["trainer"]
        port = _free_port()
        for i in range(int(trainer.get("numNodes", 1))):
            pod_name = f"{name}-node-0-{i}"
            self.pods[(ns, pod_name)] = _pod(ns, pod_name, name, i, "Pending", None)
            (self.logs / f"{pod_name}.log").write_text("")
            if self.start_pods:
                self._start(ns, pod_name, trainer, i, port)
        if self.start_pods:
            threading.Thread(target=self._supervise, args=(ns, name), daemon=True).start()
        return 201, job

    def _start(self, ns: str, pod_name: str, trainer: dict[str, Any], rank: int, port: int) -> None:
        env = os.environ | {e["name"]: e["value"] for e in trainer.get("env", []) if "value" in e} | {
            "PET_NNODES": str(trainer.get("numNodes", 1)), "PET_NPROC_PER_NODE": str(trainer.get("numProcPerNode", 1)),
            "PET_NODE_RANK": str(rank), "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(port)}
        cmd = [sys.executable if c == "python" else c for c in trainer["command"][:1]] + trainer["command"][1:]
        with open(self.logs / f"{pod_name}.log", "wb") as out:
            self.procs[pod_name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.pods[(ns, pod_name)] = _pod(ns, pod_name, pod_name.rsplit("-node-", 1)[0], rank, "Running", None)

    def _supervise(self, ns: str, name: str) -> None:
        """Wait for the nodes (each exit time taken as it happens); the first failure fails the TrainJob and
        stops the other nodes."""
        nodes = sorted(p for (n, p) in self.pods if n == ns and p.startswith(f"{name}-node-"))
        exits: list[tuple[float, str, int]] = []
        done = threading.Condition()

        def wait(pod_name: str) -> None:
            code = self.procs[pod_name].wait()
            with done:
                exits.append((time.time(), pod_name, code))
                done.notify()

        for pod_name in nodes:
            threading.Thread(target=wait, args=(pod_name,), daemon=True).start()
        seen = 0
        while seen < len(nodes):
            with done:
                done.wait_for(lambda: len(exits) > seen)
                at, pod_name, code = exits[seen]
            seen += 1
            with self.lock:
                if (ns, name) not in self.jobs:  # deleted
                    return
                rank = nodes.index(pod_name)
                self.pods[(ns, pod_name)] = _pod(ns, pod_name, name, rank, "Succeeded" if code == 0 else "Failed", code, at)
                if code != 0:
                    for other in nodes:
                        self._stop(other)
                    self._condition(ns, name, "Failed", "FailedJobs", f"jobset failed: node pod {pod_name} exited {code}")
                    return
        with self.lock:
            if (ns, name) in self.jobs:
                self._condition(ns, name, "Complete", "JobsCompleted", "TrainJob is completed")

    def _condition(self, ns: str, name: str, kind: str, reason: str, message: str) -> None:
        self.jobs[(ns, name)]["status"]["conditions"].append({"type": kind, "status": "True", "reason": reason, "message": message,
                                                               "lastTransitionTime": "2026-01-01T00:00:00Z"})

    def _delete(self, ns: str, name: str) -> dict[str, Any]:
        self.deleted.append(name)
        job = self.jobs.pop((ns, name))
        for key in [k for k in self.pods if k[0] == ns and k[1].startswith(f"{name}-node-")]:
            self._stop(key[1])
            del self.pods[key]
        return job

    def _stop(self, pod_name: str) -> None:
        proc = self.procs.pop(pod_name, None)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def running(self) -> list[str]:
        """Names of pods whose node process still runs."""
        return [n for n, p in self.procs.items() if p.poll() is None]


def _pod(ns: str, pod_name: str, job: str, rank: int, phase: str, code: int | None, finished: float = 0.0) -> dict[str, Any]:
    at = datetime.fromtimestamp(finished, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    state: dict[str, Any] = ({"waiting": {"reason": "ContainerCreating"}} if phase == "Pending" else {"running": {}} if code is None
                             else {"terminated": {"exitCode": code, "reason": "Error" if code else "Completed", "finishedAt": at}})
    labels = {"jobset.sigs.k8s.io/jobset-name": job, "jobset.sigs.k8s.io/replicatedjob-name": "node",
              "batch.kubernetes.io/job-completion-index": str(rank)}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name, "namespace": ns, "labels": labels},
            "status": {"phase": phase, "containerStatuses": [{"name": "node", "image": "safetax", "imageID": "", "ready": code is None
                                                              and phase == "Running", "restartCount": 0, "state": state}]}}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": message}
