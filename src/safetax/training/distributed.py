"""Data-parallel training in one pod: ``torchrun`` workers launched by the train stage.

The parent (the train stage, one process in the KFP pod) calls :func:`launch`: it starts
``python -m torch.distributed.run --standalone --nproc-per-node N -m safetax.training.worker <job.json>``,
streams the workers' output through, turns rank 0's progress lines into ``on_step`` calls (so
Pushgateway progress and the KFP metrics work as with one process) and raises :class:`WorkerError`,
naming the rank, its exit code and the last output lines, when a worker fails.

Inside a worker (:mod:`safetax.training.worker`), :func:`init_worker` joins the process group
(NCCL on CUDA, gloo on the CPU) and :func:`shard` wraps the model:

- full fine-tuning: FSDP2 (``fully_shard`` on each decoder layer, then the root): parameters,
  gradients and AdamW's state are sharded across the GPUs, so a 7B/14B model with fp32 master
  weights fits where one GPU does not. FSDP2 also runs on the CPU with gloo (that is what the tests run).
  On CUDA with bf16, parameters are all-gathered in bf16 and gradients reduced in fp32
  (``MixedPrecisionPolicy``); the sharded master weights stay fp32 as in the one-process path.
- LoRA: DDP. The trainable set is a few million parameters at most, so replicating it costs
  nothing and sharding would only add collectives; the frozen bf16 base is replicated too.

:class:`DataParallel` is what :func:`safetax.training.sft.train_loop` needs to split each global
batch across ranks and scale the loss so that the averaged gradient is the one-process gradient.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from safetax.data.chat import IGNORE_INDEX

if TYPE_CHECKING:
    from safetax.training.sft import StepCallback

log = logging.getLogger(__name__)
# Rank 0 prints one line per batch: PROGRESS_PREFIX + {"loss": .., "tokens_per_second": .., "epoch": ..}
PROGRESS_PREFIX = "@safetax-train-progress "
WORKER_MODULE = "safetax.training.worker"
TAIL_LINES = 40  # output lines kept for the error message of a failed worker
# The other ranks wait in a collective while rank 0 writes a checkpoint (14B in fp32: 56 GB); NCCL's
# default of 10 minutes could end a run on a slow volume. A dead worker is caught by torchrun at once.
COLLECTIVE_TIMEOUT = timedelta(minutes=60)
Example = dict[str, list[int]]


class WorkerError(RuntimeError):
    """A training worker failed; the message names its rank and exit code and ends with the output's tail."""


def processes_for(requested: int, visible: int) -> int:
    """Worker processes for ``requested`` GPUs when ``visible`` CUDA devices are seen: one per visible
    requested GPU, at least one (no CUDA: one process on the CPU).

    >>> processes_for(4, 4), processes_for(4, 2), processes_for(1, 8), processes_for(8, 0)
    (4, 2, 1, 1)
    """
    return max(1, min(requested, visible))


def shifted_label_tokens(example: Example) -> int:
    """Tokens a causal-LM loss averages over: labels after the one-token shift that are not ignored
    (what transformers' ``ForCausalLMLoss`` counts)."""
    return sum(1 for t in example["labels"][1:] if t != IGNORE_INDEX)


@dataclass(frozen=True)
class DataParallel:
    """This worker's place in the data-parallel group; all ranks see the same global batches."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, batch: Sequence[Example]) -> list[Example]:
        """This rank's examples of a global batch (every ``world``-th); a rank left without one in a
        short last batch gets the batch's first example as a dummy, weighted 0 by :meth:`objective`
        (FSDP needs every rank in every collective)."""
        return list(batch[self.rank :: self.world]) or list(batch[:1])

    def _tokens(self, batch: Sequence[Example]) -> tuple[int, int]:
        """(this rank's, the global batch's) loss tokens."""
        return sum(shifted_label_tokens(e) for e in batch[self.rank :: self.world]), sum(shifted_label_tokens(e) for e in batch)

    def objective(self, loss: torch.Tensor, batch: Sequence[Example]) -> torch.Tensor:
        """The local mean loss scaled by local_tokens * world / global_tokens: DDP and FSDP average
        gradients over ranks, so the result is the gradient of the token mean over the global batch."""
        local, total = self._tokens(batch)
        if local == 0 or total == 0:
            return loss.nan_to_num(0.0) * 0.0  # a zero gradient that still runs every collective
        return loss * (local * self.world / total)

    def batch_loss(self, loss: torch.Tensor, batch: Sequence[Example]) -> float:
        """The global batch's token-mean loss (what one process would report), all-reduced."""
        import torch.distributed as dist

        local, total = self._tokens(batch)
        part = torch.tensor([loss.item() * local if local else 0.0], dtype=torch.float64, device=self.device)
        dist.all_reduce(part)
        return float(part.item()) / total if total else float("nan")


def init_worker() -> DataParallel:
    """Join torchrun's process group (NCCL on CUDA, gloo on the CPU) and pin this rank's GPU."""
    import torch.distributed as dist

    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device, timeout=COLLECTIVE_TIMEOUT)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
    return DataParallel(dist.get_rank(), dist.get_world_size(), device)


def shard(model: torch.nn.Module, ranks: DataParallel, lora: bool, bf16: bool) -> torch.nn.Module:
    """FSDP2 for full fine-tuning (each decoder layer, then the root), DDP for LoRA; see the module docstring."""
    if lora:
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[ranks.device.index] if ranks.device.type == "cuda" else None)
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
        if bf16 and ranks.device.type == "cuda" else MixedPrecisionPolicy()
    layer_classes = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in layer_classes]
    if not layers:
        raise ValueError(f"{type(model).__name__}: no decoder layer ({sorted(layer_classes)}) to shard")
    for layer in layers:
        fully_shard(layer, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def save_checkpoint(model: torch.nn.Module, path: Path, ranks: DataParallel, dtype: torch.dtype = torch.float32) -> None:
    """Write the checkpoint as one process would (:func:`~safetax.training.save.write_checkpoint` in
    ``dtype``), from rank 0; every rank must call this. DDP's replicas are identical, so rank 0 saves
    its own. FSDP's shards are streamed: gathered one parameter at a time and written by rank 0 file by
    file in ``dtype`` (:func:`~safetax.training.save.stream_checkpoint`), so no rank holds the full fp32
    model. A model whose checkpoint format differs from its modules (transformers' weight conversions,
    e.g. fused MoE experts) is gathered whole and saved by ``save_pretrained``, which reverts them."""
    from torch.nn.parallel import DistributedDataParallel

    from safetax.training.save import stream_checkpoint, tied_aliases, write_checkpoint

    if isinstance(model, DistributedDataParallel):
        if ranks.main:
            write_checkpoint(model.module, path, dtype)
        return
    if not getattr(model, "_weight_conversions", None):
        stream_checkpoint(model, path, dtype, ranks.main)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if ranks.main:
        # Tied aliases are gathered as copies, which save_pretrained would write twice.
        write_checkpoint(model, path, dtype, state=state, drop=tied_aliases(model))  # type: ignore[arg-type]


def emit_progress(loss: float, tokens_per_second: float, epoch: float) -> None:
    """Rank 0's ``on_step``: one progress line for :func:`launch` to turn into the parent's ``on_step``."""
    print(PROGRESS_PREFIX + json.dumps({"loss": loss, "tokens_per_second": tokens_per_second, "epoch": epoch}), flush=True)


def relay_line(line: str, on_step: StepCallback | None) -> str:
    """Hand a progress line of rank 0 to ``on_step``; return the rest of the line (what to show as output).
    A tqdm ``"\r"`` update may precede the progress on the same line."""
    text, sep, progress = line.partition(PROGRESS_PREFIX)
    if not sep:
        return line
    if on_step is not None:
        p = json.loads(progress)
        on_step(p["loss"], p["tokens_per_second"], p["epoch"])
    return text


def exception_line(line: str) -> str | None:
    """The exception of a Python traceback's last line (with torch's ``[rankN]:`` prefix or not), else None.

    >>> exception_line("[rank1]: IndexError: index out of range in self"), exception_line("step 3")
    ('IndexError: index out of range in self', None)
    """
    m = _EXCEPTION.match(line)
    return m.group(1) if m else None


def launch(job: dict[str, Any], processes: int, workdir: Path, on_step: StepCallback | None = None) -> dict[str, Any]:
    """Run ``processes`` workers on ``job`` with torchrun and return rank 0's result (``result.json``).

    ``job`` is written to ``workdir/job.json``; it must name ``result`` (a path in ``workdir``). The
    workers' output goes to this process's stderr as it comes; ``on_step(loss, tokens_per_second,
    epoch)`` gets rank 0's progress. A failed worker (or a failing ``on_step``) stops them all: torchrun
    stops the other ranks, and :class:`WorkerError` names the failed rank and its exit code.
    """
    job_file = workdir / "job.json"
    job_file.write_text(json.dumps(job))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
           "-m", WORKER_MODULE, str(job_file)]
    log.info("training with %d data-parallel worker processes (torchrun)", processes)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    summary: list[str] = []  # torchrun's "Root Cause" block, which names the first failed rank
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
                            env=os.environ | {"PYTHONUNBUFFERED": "1"}, start_new_session=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            out = relay_line(line, on_step)
            if out.strip():
                sys.stderr.write(out if out.endswith("\n") else out + "\n")
                tail.append(out.rstrip("\n"))
                if (summary or "Root Cause" in out) and len(summary) < 8:
                    summary.append(out)
        code = proc.wait()
    finally:
        _stop(proc)
    if code != 0:
        raise WorkerError(_failure(code, processes, "".join(summary), list(tail)))
    return json.loads(Path(job["result"]).read_text())


def _stop(proc: subprocess.Popen[str]) -> None:
    """End torchrun (it stops its workers) if it still runs; then its whole session, by its id."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _failure(code: int, processes: int, summary: str, tail: list[str]) -> str:
    """The error of a failed run: torchrun's root-cause summary names the first failed rank and its exit code."""
    text = "\n".join(tail)
    rank = re.findall(r"^\s*rank\s*:\s*(\d+)", summary, re.MULTILINE)
    exitcode = re.findall(r"^\s*exitcode\s*:\s*(-?\d+)", summary, re.MULTILINE)
    what = (f"train worker rank {rank[0]} of {processes} failed with exit code {exitcode[0]}" if rank and exitcode
            else f"torchrun exited with code {code}")
    errors = [e for line in tail if (e := exception_line(line))]
    cause = f" ({errors[-1]})" if errors else ""
    return f"{what}{cause}; the output directory was not written. Last output lines:\n{text}"


# The last line of a Python traceback, with torch's "[rank1]: " prefix or not: "IndexError: index out of range".
_EXCEPTION = re.compile(r"^\s*(?:\[rank\d+\]:\s*)?((?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Interrupt)\b.*)$")
