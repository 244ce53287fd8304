"""The train stage on several nodes: the worker's job laid out on a shared volume, run as a Kubeflow TrainJob.

With ``train_nodes > 1`` the train stage's pod does not train: it copies the SFT data (and RPSA's
inputs) to a work directory on a volume every node mounts, writes the worker's job there, runs a
TrainJob (:mod:`safetax.training.trainjob`) and, when it completes, takes rank 0's checkpoints from
the work directory into the stage's output. The work directory is the same for a retry of the same
run and method, so a retried task resumes from the resumable state (``state/`` in it, see
:mod:`safetax.training.resume`); every file there is the workers' except ``job.json`` and the inputs.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetax.config import Checks
from safetax.training.resume import STATE_DIR
from safetax.training.trainjob import DEFAULT_RUNTIME, SharedVolume, TrainJobSpec, job_name, run_trainjob

if TYPE_CHECKING:
    from safetax.training.sft import StepCallback


@dataclass(frozen=True)
class TrainJobSettings:
    """Where a multi-node run goes (the platform's and the run's settings; the node count is the run's).

    ``workdir``: a directory under ``volume.mount_path``, the same for every attempt of one run and method
    (e.g. ``<mount>/<run id>/<method label>``), mounted at the same path in this pod and on the nodes."""

    namespace: str
    image: str
    volume: SharedVolume
    workdir: str
    runtime: str = DEFAULT_RUNTIME
    env: tuple[dict[str, Any], ...] = ()
    service_account: str = ""
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, str], ...] = ()
    poll_seconds: float = 10.0
    api_client: Any = field(default=None, compare=False)  # a kubernetes ApiClient; None = in-cluster config

    def __post_init__(self) -> None:
        c = Checks("TrainJobSettings")
        mount = self.volume.mount_path.rstrip("/") + "/"
        if not self.workdir.startswith(mount):
            c.fail("workdir", self.workdir, f"a directory under the shared volume's mount path {mount}")
        c.positive("poll_seconds", self.poll_seconds)
        c.raise_if_any()


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
REQUIRED = ("image", "volume_claim", "volume_path")  # the platform settings a TrainJob cannot start without


def trainjob_settings(platform: dict[str, Any], run_id: str, label: str) -> TrainJobSettings:
    """The settings of a run's TrainJob from the platform's plain settings (compiled into the pipeline).

    ``platform`` keys: ``image`` (the train image), ``volume_claim`` and ``volume_path`` (the shared
    ReadWriteMany volume, mounted at that path in this pod too), optional ``runtime``, ``namespace``
    (default: this pod's), ``env`` (plain variables), ``s3_secret`` with ``s3_secret_keys``
    (``access_key``/``secret_key``) and ``hf_token_secret`` with ``hf_token_secret_key`` (passed as
    ``secretKeyRef``, never as values), ``node_selector``, ``tolerations``, ``service_account``.
    The work directory is ``<volume_path>/<run_id>/<label>``: the same for every attempt of the run.
    """
    from safetax.platform import S3_ACCESS_KEY_ENV, S3_SECRET_KEY_ENV

    c = Checks("train_nodes platform settings")
    for key in REQUIRED:
        if not platform.get(key):
            c.fail(key, platform.get(key), "set for train_nodes > 1 (a non-empty string)")
    c.raise_if_any()
    env: list[dict[str, Any]] = [{"name": k, "value": str(v)} for k, v in sorted((platform.get("env") or {}).items())]
    if platform.get("s3_secret"):
        keys = platform.get("s3_secret_keys") or {"access_key": "accesskey", "secret_key": "secretkey"}
        env += [_secret_env(S3_ACCESS_KEY_ENV, platform["s3_secret"], keys["access_key"]),
                _secret_env(S3_SECRET_KEY_ENV, platform["s3_secret"], keys["secret_key"])]
    if platform.get("hf_token_secret"):
        env.append(_secret_env("HF_TOKEN", platform["hf_token_secret"], platform.get("hf_token_secret_key") or "token"))
    namespace = platform.get("namespace") or SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    mount = str(platform["volume_path"]).rstrip("/")
    return TrainJobSettings(namespace=namespace, image=platform["image"], volume=SharedVolume(platform["volume_claim"], mount),
                            workdir=f"{mount}/{run_id}/{label}", runtime=platform.get("runtime") or DEFAULT_RUNTIME,
                            env=tuple(env), service_account=platform.get("service_account", ""),
                            node_selector=dict(platform.get("node_selector") or {}),
                            tolerations=tuple(platform.get("tolerations") or ()))


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def train_on_trainjob(job: dict[str, Any], nodes: int, gpus_per_node: int, settings: TrainJobSettings, label: str,
                      out: Path, on_step: StepCallback | None = None) -> dict[str, Any]:
    """Run the worker ``job`` (as :func:`safetax.training.distributed.launch` takes it) on ``nodes`` nodes and
    copy rank 0's checkpoints into ``out``; return rank 0's result. Raises
    :class:`~safetax.training.trainjob.TrainJobError` when the TrainJob fails."""
    work = Path(settings.workdir)
    work.mkdir(parents=True, exist_ok=True)
    job = dict(job)
    for key, name in (("sft_file", "sft.jsonl"), ("fisher_dir", "fisher"), ("corpus_dir", "corpus")):
        if job.get(key):
            job[key] = str(_copy_in(Path(job[key]), work / name))
    results, checkpoints = work / "result.json", work / "out"
    results.unlink(missing_ok=True)
    shutil.rmtree(checkpoints, ignore_errors=True)  # a failed attempt's partial output; its state stays
    checkpoints.mkdir()
    job.update(out_dir=str(checkpoints), result=str(results), state_dir=str(work / STATE_DIR) if job.get("state_dir") else None)
    (work / "job.json").write_text(json.dumps(job))
    spec = TrainJobSpec(name=job_name(label), namespace=settings.namespace, image=settings.image, nodes=nodes,
                        gpus_per_node=gpus_per_node, job_file=str(work / "job.json"), runtime=settings.runtime,
                        volumes=(settings.volume,), env=settings.env, service_account=settings.service_account,
                        node_selector=settings.node_selector, tolerations=settings.tolerations)
    run_trainjob(spec, on_step, settings.api_client, settings.poll_seconds)
    shutil.copytree(checkpoints, out, dirs_exist_ok=True)
    return json.loads(results.read_text())


def _copy_in(src: Path, dest: Path) -> Path:
    """A fresh copy of an input file or directory on the shared volume."""
    if dest.is_dir():
        shutil.rmtree(dest)
    if src.is_dir():
        shutil.copytree(src, dest)
    else:
        shutil.copyfile(src, dest)
    return dest
