"""Resumable training state: what a preempted train task needs to continue where it stopped.

A state is a directory ``<root>/step-<N>/`` (``root`` is ``state/`` under the train output) holding:

- ``model/``: the trainable parameters and the optimiser's state, written with torch's distributed
  checkpoint (DCP). Each rank writes its own FSDP shards (nothing is gathered on rank 0); DDP's
  replicas and one process write plain tensors. Frozen parameters (LoRA's base) are not written:
  a resumed run loads them from the base model again.
- ``rank-<r>.pt``: that rank's RNG states (torch CPU and CUDA, Python, NumPy) and the data-order
  generator, so dropout masks and the data order continue as if never interrupted.
- ``meta.json`` (written last, by rank 0): the loop's position (epoch, next batch, optimiser steps,
  the epoch's data order, the running loss sums), the scheduler, what the caller adds (the
  checkpoint entries written so far, RPSA's controller) and a fingerprint of the run's inputs.
- ``COMPLETE``: the state is whole. A state is written to ``.step-<N>.tmp`` and renamed in place
  after its marker, so a kill at any point leaves the previous state usable.

The last :data:`KEEP` complete states are kept; older ones and stale temporary directories are
pruned. Epoch checkpoints (``epoch-<k>/``) live in the stage's temporary output directory, which a
killed run leaves behind under a random name, so they are also linked into ``<root>/epochs/``
(hard links: no copy on the same filesystem) and linked back on resume. A state whose fingerprint
differs (other config, model, data or number of ranks) is ignored with a warning: training starts over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from safetax.training.distributed import DataParallel

log = logging.getLogger(__name__)
STATE_DIR = "state"  # under the train stage's output directory
KEEP = 2  # complete states kept: the newest, and one more in case the newest's storage turns out bad
EPOCHS = "epochs"
_STEP = re.compile(r"^step-(\d+)$")


def fingerprint(*parts: Any) -> str:
    """A short digest of the run's inputs (JSON-serialisable parts): a state is resumed only by the same run."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def link_tree(src: Path, dest: Path) -> None:
    """Copy the directory ``src`` to ``dest`` (which must not exist) as hard links; files are copied where
    the two lie on different filesystems."""
    shutil.copytree(src, dest, copy_function=_link_or_copy)


def _link_or_copy(src: str, dest: str) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


class TrainState:
    """Saves and restores the resumable state of one training run in ``root`` (see the module docstring).

    ``every``: optimiser steps between states (0: at the end of each epoch only; a state is also
    written at every epoch's end). ``extra()`` adds JSON-serialisable state of the caller to each
    save; ``on_restore(extra)`` gets it back when a run resumes. Every rank constructs one and calls
    :meth:`save` and :meth:`restore` together (they run collectives with several ranks).
    """

    def __init__(self, root: Path, digest: str, every: int = 0, ranks: DataParallel | None = None,
                 extra: Callable[[], dict[str, Any]] | None = None,
                 on_restore: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.root, self.digest, self.every, self.ranks = Path(root), digest, every, ranks
        self.extra = extra or dict
        self.on_restore = on_restore or (lambda _: None)

    @property
    def _main(self) -> bool:
        return self.ranks is None or self.ranks.main

    def _barrier(self) -> None:
        if self.ranks is not None:
            import torch.distributed as dist

            dist.barrier()

    def complete_states(self) -> list[Path]:
        """Complete states of this run, oldest first."""
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir() if (m := _STEP.match(p.name)) and (p / "COMPLETE").is_file()]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        """The newest complete state with this run's fingerprint, or None."""
        for path in reversed(self.complete_states()):
            digest = json.loads((path / "meta.json").read_text())["fingerprint"]
            if digest == self.digest:
                return path
            log.warning("train state %s belongs to another run (inputs %s, this run %s): not resumed", path, digest, self.digest)
            return None
        return None

    def save(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, gen: torch.Generator,
             position: dict[str, Any]) -> Path:
        """Write the state after optimiser step ``position["step"]``; prune older ones. Returns its directory."""
        import torch.distributed.checkpoint as dcp

        final = self.root / f"step-{position['step']:06d}"
        tmp = self.root / f".{final.name}.tmp"
        if self._main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self._barrier()
        dcp.save(_model_and_optimizer(model, optimizer), checkpoint_id=tmp / "model")
        rank = 0 if self.ranks is None else self.ranks.rank
        torch.save({"rng": _rng_states(), "gen": gen.get_state()}, tmp / f"rank-{rank}.pt")
        self._barrier()
        if self._main:
            meta = {"fingerprint": self.digest, "position": position, "scheduler": scheduler.state_dict(),
                    "world": 1 if self.ranks is None else self.ranks.world, "extra": self.extra()}
            (tmp / "meta.json").write_text(json.dumps(meta, default=_jsonable) + "\n")
            (tmp / "COMPLETE").write_text("")
            shutil.rmtree(final, ignore_errors=True)  # a state of the same step from an earlier attempt
            os.rename(tmp, final)
            self._prune()
            log.info("train state saved: %s (epoch %d, batch %d)", final.name, position["epoch"], position["batch"])
        self._barrier()
        return final

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                gen: torch.Generator) -> dict[str, Any] | None:
        """Load the newest complete state into the model, optimiser, scheduler, RNGs and ``gen``; return
        its loop position, or None (nothing to resume: train from the start)."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_state_dict

        path = self.latest() if self._main else None
        path = self._broadcast(path)
        if path is None:
            return None
        meta = json.loads((path / "meta.json").read_text())
        state = _model_and_optimizer(model, optimizer)
        dcp.load(state, checkpoint_id=path / "model")
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"],
                       options=_options(strict=False))  # frozen parameters come from the base model
        scheduler.load_state_dict(meta["scheduler"])
        rank = 0 if self.ranks is None else self.ranks.rank
        own = torch.load(path / f"rank-{rank}.pt", weights_only=False)  # our own file, written by save()
        _set_rng_states(own["rng"])
        gen.set_state(own["gen"])
        self.on_restore(meta["extra"])
        pos = meta["position"]
        log.info("resuming training from %s: epoch %d, batch %d, optimiser step %d", path.name, pos["epoch"], pos["batch"], pos["step"])
        return dict(pos)

    def _broadcast(self, path: Path | None) -> Path | None:
        """Rank 0's choice of state, for every rank (they must load the same one)."""
        if self.ranks is None:
            return path
        import torch.distributed as dist

        box = [None if path is None else str(path)]
        dist.broadcast_object_list(box, src=0)
        return None if box[0] is None else Path(box[0])

    def _prune(self) -> None:
        states = self.complete_states()
        for old in states[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in self.root.glob(".step-*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)

    def keep_epoch(self, checkpoint: Path) -> None:
        """Link a finished epoch checkpoint into ``<root>/epochs/`` (rank 0), for a resumed run to take over."""
        if not self._main:
            return
        dest = self.root / EPOCHS / checkpoint.name
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        link_tree(checkpoint, tmp)
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(tmp, dest)

    def take_epochs(self, names: list[str], out: Path) -> None:
        """Link the kept epoch checkpoints ``names`` into the new output directory ``out`` (rank 0)."""
        if not self._main:
            return
        for name in names:
            kept = self.root / EPOCHS / name
            if not kept.is_dir():
                raise FileNotFoundError(f"train state: epoch checkpoint {kept} is missing; remove {self.root} to train from the start")
            shutil.rmtree(out / name, ignore_errors=True)
            link_tree(kept, out / name)


def _options(strict: bool = True) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(ignore_frozen_params=True, strict=strict)


def _model_and_optimizer(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Trainable parameters and optimiser state keyed by parameter name (sharded as the model is)."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer, options=_options())
    return {"model": model_sd, "optim": optim_sd}


def _rng_states() -> dict[str, Any]:
    import numpy as np

    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": random.getstate(), "numpy": np.random.get_state()}


def _set_rng_states(states: dict[str, Any]) -> None:
    import numpy as np

    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])


def _jsonable(value: Any) -> Any:
    """JSON for the scheduler's state (plain numbers and lists; tensors become lists)."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"train state: {type(value).__name__} is not JSON-serialisable")
