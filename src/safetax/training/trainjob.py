"""Multi-node training handed to Kubeflow Trainer v2: one ``TrainJob`` running the safetax worker on N nodes.

Written against Kubeflow Trainer v2.3.0 (``trainer.kubeflow.org/v1alpha1``; CRD schema checked into
``tests/training/data/``). The train stage's pod builds the TrainJob (:func:`trainjob_manifest`):
``runtimeRef`` names a ClusterTrainingRuntime of the torch plugin (the platform's setting, by default
the Trainer's own ``torch-distributed``), ``trainer`` runs the stage's image with the command
``python -m torch.distributed.run -m safetax.training.worker <job.json>`` on ``numNodes`` nodes of
``numProcPerNode`` GPUs; torchrun reads the ``PET_*`` variables the runtime sets (node rank, master
address and port). The job file, the data and the output lie on a volume every node mounts (a
ReadWriteMany PVC, patched into the runtime's pod template through ``runtimePatches``).

:func:`run_trainjob` creates the TrainJob (``CustomObjectsApi``), polls its ``Complete``/``Failed``
conditions, relays node 0's log (the progress lines rank 0 prints, see
:mod:`safetax.training.distributed`) to ``on_step`` and stderr, and raises :class:`TrainJobError`
naming the failed pod and its last log lines. A failed or cancelled run (an exception, or SIGTERM
when KFP cancels the task) deletes its TrainJob; a succeeded one is left for inspection.

Kubernetes API used (the chart's ``trainjob-rbac.yaml``): trainjobs.trainer.kubeflow.org create,
get, list, watch, delete; pods get, list; pods/log get, all in the run's namespace.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from safetax.config import Checks
from safetax.training.distributed import TAIL_LINES, WORKER_MODULE, exception_line, relay_line

if TYPE_CHECKING:
    from safetax.training.sft import StepCallback

log = logging.getLogger(__name__)
GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
TRAINER_VERSION = "v2.3.0"  # the Kubeflow Trainer release this module was written and tested against
DEFAULT_RUNTIME = "torch-distributed"  # the Trainer's own ClusterTrainingRuntime for PyTorch
NODE = "node"  # the torch runtime's replicated job and container name
PATCH_MANAGER = "safetax.io/train"  # our entry among the TrainJob's runtimePatches
# Labels JobSet puts on every pod of a TrainJob (the JobSet has the TrainJob's name).
JOBSET_LABEL, INDEX_LABEL = "jobset.sigs.k8s.io/jobset-name", "batch.kubernetes.io/job-completion-index"


class TrainJobError(RuntimeError):
    """A TrainJob failed; the message names the failed pod and ends with its last log lines."""


class TrainJobCancelled(RuntimeError):
    """The stage was asked to stop (SIGTERM) while its TrainJob ran."""


@dataclass(frozen=True)
class SharedVolume:
    """A PersistentVolumeClaim mounted on every node at ``mount_path`` (ReadWriteMany for several nodes)."""

    claim: str
    mount_path: str


@dataclass(frozen=True)
class TrainJobSpec:
    """What the TrainJob runs and where. ``job_file`` (the worker's job, see :mod:`safetax.training.worker`)
    and everything it names must lie on one of ``volumes``. ``env``: Kubernetes ``EnvVar`` dicts added to
    the training container (``{"name": .., "value": ..}`` or ``valueFrom`` a secret: never put a secret's
    value here, the TrainJob object is readable by whoever can read the namespace's TrainJobs)."""

    name: str
    namespace: str
    image: str
    nodes: int
    gpus_per_node: int
    job_file: str
    runtime: str = DEFAULT_RUNTIME  # platform setting: the ClusterTrainingRuntime to run on
    volumes: tuple[SharedVolume, ...] = ()
    env: tuple[dict[str, Any], ...] = ()
    service_account: str = ""  # "" = the runtime's
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, str], ...] = ()  # Kubernetes Toleration dicts, e.g. for tainted GPU nodes
    python: str = "python"  # the interpreter in the image

    def __post_init__(self) -> None:
        c = Checks("TrainJobSpec")
        if not _is_dns_label(self.name):
            c.fail("name", self.name, "a DNS label (lowercase letters, digits and '-', at most 63 characters)")
        for name in ("namespace", "image", "runtime", "job_file"):
            if not getattr(self, name):
                c.fail(name, getattr(self, name), "a non-empty string")
        if not (isinstance(self.nodes, int) and self.nodes >= 1):
            c.fail("train_nodes", self.nodes, "an integer >= 1")
        if not (isinstance(self.gpus_per_node, int) and self.gpus_per_node >= 0):
            c.fail("train_gpus", self.gpus_per_node, "an integer >= 0 (GPUs per node; 0 = CPU nodes)")
        if self.volumes and not any(self.job_file.startswith(v.mount_path.rstrip("/") + "/") for v in self.volumes):
            c.fail("job_file", self.job_file, "a path on one of the shared volumes " + ", ".join(v.mount_path for v in self.volumes))
        c.raise_if_any()


def _is_dns_label(name: str) -> bool:
    import re

    return bool(re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name))


def job_name(label: str) -> str:
    """A fresh TrainJob name for a method label: ``safetax-<label>-<8 hex>``, a DNS label.

    >>> n = job_name("lora-r4+ortho_both"); n.startswith("safetax-lora-r4-ortho-both-") and len(n) <= 63
    True
    """
    import re

    stem = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:40].rstrip("-")
    return f"safetax-{stem}-{uuid.uuid4().hex[:8]}"


def trainjob_manifest(spec: TrainJobSpec) -> dict[str, Any]:
    """The TrainJob object for ``spec`` (a ``trainer.kubeflow.org/v1alpha1`` TrainJob)."""
    trainer: dict[str, Any] = {
        "image": spec.image,
        "command": [spec.python, "-m", "torch.distributed.run", "-m", WORKER_MODULE, spec.job_file],
        "numNodes": spec.nodes,
        "numProcPerNode": max(1, spec.gpus_per_node),
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}, *spec.env],
    }
    if spec.gpus_per_node:
        gpus = str(spec.gpus_per_node)
        trainer["resourcesPerNode"] = {"limits": {"nvidia.com/gpu": gpus}, "requests": {"nvidia.com/gpu": gpus}}
    pod: dict[str, Any] = {}
    if spec.volumes:
        pod["volumes"] = [{"name": f"shared-{i}", "persistentVolumeClaim": {"claimName": v.claim}} for i, v in enumerate(spec.volumes)]
        pod["containers"] = [{"name": NODE, "volumeMounts": [{"name": f"shared-{i}", "mountPath": v.mount_path}
                                                             for i, v in enumerate(spec.volumes)]}]
    if spec.service_account:
        pod["serviceAccountName"] = spec.service_account
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod["tolerations"] = [dict(t) for t in spec.tolerations]
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": {"app.kubernetes.io/managed-by": "safetax"}},
        "spec": {"runtimeRef": {"apiGroup": GROUP, "kind": "ClusterTrainingRuntime", "name": spec.runtime}, "trainer": trainer},
    }
    if pod:
        node_job = {"name": NODE, "template": {"spec": {"template": {"spec": pod}}}}
        body["spec"]["runtimePatches"] = [{"manager": PATCH_MANAGER,
                                           "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [node_job]}}}}]
    return body


def run_trainjob(spec: TrainJobSpec, on_step: StepCallback | None = None, api_client: Any = None,
                 poll_seconds: float = 10.0) -> None:
    """Create the TrainJob, relay node 0's progress and log until it completes; raise :class:`TrainJobError`
    if it fails. A failure or cancellation (exception, SIGTERM) deletes the TrainJob before returning.

    ``api_client``: a ``kubernetes.client.ApiClient``; None = the pod's service account (in a cluster),
    else the local kubeconfig.
    """
    from kubernetes import client

    api = api_client or _default_client()
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    created = done = False
    with _sigterm_raises():
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, spec.namespace, PLURAL, trainjob_manifest(spec))
            created = True
            log.info("TrainJob %s/%s created: %d node(s) x %d GPU(s), runtime %s", spec.namespace, spec.name, spec.nodes,
                     spec.gpus_per_node, spec.runtime)
            _wait(custom, core, spec, on_step, poll_seconds)
            done = True
        finally:
            if created and not done:
                _delete(custom, spec)


def _default_client() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """KFP cancels a task with SIGTERM: turn it into an exception so that ``finally`` deletes the TrainJob."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def cancel(signum: int, frame: object) -> None:
        raise TrainJobCancelled("the train task was cancelled (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, cancel)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _delete(custom: Any, spec: TrainJobSpec) -> None:
    from kubernetes.client import V1DeleteOptions
    from kubernetes.client.exceptions import ApiException

    try:
        custom.delete_namespaced_custom_object(GROUP, VERSION, spec.namespace, PLURAL, spec.name,
                                               body=V1DeleteOptions(propagation_policy="Foreground"))
        log.info("TrainJob %s/%s deleted", spec.namespace, spec.name)
    except ApiException as e:
        if e.status != 404:
            log.error("could not delete TrainJob %s/%s (%s): delete it by hand", spec.namespace, spec.name, e.reason)


def _condition(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The TrainJob's terminal condition (``Complete`` or ``Failed`` with status True), if any."""
    for cond in obj.get("status", {}).get("conditions", []) or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return cond
    return None


def _wait(custom: Any, core: Any, spec: TrainJobSpec, on_step: StepCallback | None, poll_seconds: float) -> None:
    relayed = 0
    while True:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, spec.namespace, PLURAL, spec.name)
        cond = _condition(obj)
        relayed = _relay(core, spec, relayed, on_step)
        if cond is not None and cond["type"] == "Complete":
            log.info("TrainJob %s/%s completed", spec.namespace, spec.name)
            return
        if cond is not None:
            raise TrainJobError(_failure(core, spec, cond))
        time.sleep(poll_seconds)


def _pods(core: Any, spec: TrainJobSpec) -> list[Any]:
    """The TrainJob's pods, node 0 first."""
    pods = core.list_namespaced_pod(spec.namespace, label_selector=f"{JOBSET_LABEL}={spec.name}").items
    return sorted(pods, key=lambda p: int((p.metadata.labels or {}).get(INDEX_LABEL, "0")))


def _relay(core: Any, spec: TrainJobSpec, relayed: int, on_step: StepCallback | None) -> int:
    """Pass node 0's new log lines on (progress to ``on_step``, the rest to stderr); returns the lines seen.

    The whole log is read at each poll and the lines already relayed skipped (a restarted container's
    log starts over: it is relayed from its start)."""
    pods = [p for p in _pods(core, spec) if p.status is not None and p.status.phase in ("Running", "Succeeded", "Failed")]
    if not pods:
        return relayed
    text = core.read_namespaced_pod_log(pods[0].metadata.name, spec.namespace, container=NODE)
    lines = text.splitlines()
    if len(lines) < relayed:
        relayed = 0
    for line in lines[relayed:]:
        out = relay_line(line, on_step)
        if out.strip():
            sys.stderr.write(out + "\n")
    return len(lines)


def _failure(core: Any, spec: TrainJobSpec, cond: dict[str, Any]) -> str:
    """The error of a failed TrainJob: its condition, the pod that failed first (the others often fail
    because it did), its exit code and last log lines."""
    what = f"TrainJob {spec.namespace}/{spec.name} failed ({cond.get('reason', '?')}: {cond.get('message', '')})"
    failed = [(p, _terminated(p)) for p in _pods(core, spec)]
    failed = [(p, t) for p, t in failed if (p.status and p.status.phase == "Failed") or (t is not None and t.exit_code != 0)]
    if not failed:
        return f"{what}; no failed pod found (deleted or never started): see `kubectl describe trainjob {spec.name}`"
    failed.sort(key=lambda pt: (pt[1] is None or pt[1].finished_at is None, pt[1].finished_at if pt[1] and pt[1].finished_at else 0))
    pod, term = failed[0]
    tail = core.read_namespaced_pod_log(pod.metadata.name, spec.namespace, container=NODE, tail_lines=TAIL_LINES)
    lines = [line for line in tail.splitlines() if line.strip()]
    errors = [e for line in lines if (e := exception_line(line))]
    node = (pod.metadata.labels or {}).get(INDEX_LABEL, "?")
    cause = f" ({errors[-1]})" if errors else ""
    others = f" (also failed: {', '.join(p.metadata.name for p, _ in failed[1:])})" if len(failed) > 1 else ""
    return (f"{what}: pod {pod.metadata.name} (node {node}) exited with code {term.exit_code if term else '?'}{cause}{others}; "
            "the output directory was not written. Last log lines:\n" + "\n".join(lines))


def _terminated(pod: Any) -> Any:
    """The training container's ``V1ContainerStateTerminated`` (exit code, finishedAt), if it terminated."""
    for status in (pod.status.container_statuses or []) if pod.status else []:
        if status.name == NODE and status.state is not None and status.state.terminated is not None:
            return status.state.terminated
    return None
