"""Stage `merge`: LoRA (or full fine-tuning) updates folded into standard model directories.

Modes (LoRA paper, sec. 5.3): ``plain`` W = W_I + dW; ``ortho-col`` dW <- lam (I - U_k U_k^T) dW;
``ortho-both`` dW <- lam (I - U_k U_k^T) dW (I - V_k V_k^T), with U_k, V_k the top-k singular
vectors of the base weight W_I (exact top-k SVD by default, see safetax.weights.svd) and lam one of ``lambdas`` (the paper
tried 1, 1.15, 1.2, 1.25, 1.75): every (epoch, lam) is a candidate checkpoint that the pipeline
evaluates. ``none`` writes an empty candidate list (methods without a merge).

The base model stays in memory; updates are computed and applied one matrix at a time (the
singular vectors of each base matrix are computed once and reused for every candidate), so peak
memory is the model plus about one matrix. Candidates are saved as safetensors model directories
that transformers and vLLM load as they are.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from safetax.checkpoints import CheckpointRef, merge_name
from safetax.config import Checks, as_int
from safetax.artifacts import CheckpointEntry, CheckpointManifest, checkpoint_files, read_checkpoints, write_checkpoints
from safetax.store import atomic_dir, local_model_dir
from safetax.timing import progress, timed

log = logging.getLogger(__name__)
MODES = ("none", "plain", "ortho-col", "ortho-both")
EPOCHS = ("last", "all")


@dataclass(frozen=True)
class MergeConfig:
    mode: str = "none"
    k: int = 64  # top singular vectors of W_I removed from the update (ortho modes)
    lambdas: tuple[float, ...] = (1.0,)  # scale of the projected update; one candidate each
    epochs: str = "last"  # merge the last epoch's checkpoint, or every epoch's
    seed: int = 0  # only for the randomized SVD option

    def __post_init__(self) -> None:
        c = Checks("MergeConfig")
        c.one_of("merge", self.mode, MODES)
        c.one_of("merge_epochs", self.epochs, EPOCHS)
        if not (isinstance(self.k, int) and self.k >= 1):
            c.fail("merge_k", self.k, "an integer >= 1 (at most the smaller side of each matrix)")
        if not self.lambdas or not all(isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in self.lambdas):
            c.fail("merge_lambdas", list(self.lambdas), "a non-empty list of numbers > 0")
        if self.mode in ("none", "plain") and tuple(self.lambdas) != (1.0,):
            c.fail("merge_lambdas", list(self.lambdas), f"[1.0] with merge={self.mode!r} (lambda scales the projected ortho update)")
        c.raise_if_any()

    @classmethod
    def from_method(cls, d: dict[str, Any]) -> MergeConfig:
        """From a pipeline method config's ``merge``, ``merge_k``, ``merge_lambdas``, ``merge_epochs``."""
        lambdas = d.get("merge_lambdas", [1.0])
        if not isinstance(lambdas, (list, tuple)):
            lambdas = [lambdas]
        return cls(mode=str(d.get("merge", "none")), k=as_int("merge_k", d.get("merge_k", 64)),
                   lambdas=tuple(float(x) for x in lambdas), epochs=str(d.get("merge_epochs", "last")),
                   seed=as_int("seed", d.get("seed", 0)))

    def candidate(self, label: str, lam: float, epoch: int = 0) -> CheckpointRef:
        """A merge candidate's checkpoint, e.g. ``lora-r4+ortho-both-l1.15/epoch-8`` (its ``variant`` is the table's method)."""
        show = self.mode.startswith("ortho") and (self.mode == "ortho-both" or len(self.lambdas) > 1)
        return CheckpointRef(label, epoch, merge_name(self.mode, lam, show))


def update_deltas(base_dir: Path, manifest: CheckpointManifest, ckpt_dir: Path) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """(weight name, W_I, dW) of every updated matrix, one at a time."""
    from safetax.weights.io import iter_lora_deltas, iter_matrix_deltas

    reader = iter_lora_deltas if manifest.kind == "adapter" else iter_matrix_deltas
    yield from reader(base_dir, ckpt_dir)


def run(cfg: MergeConfig, model_uri: str, train_dir: Path, out_dir: Path) -> list[str]:
    """Write one model directory per (epoch, lambda) candidate and ``checkpoints.json``; return their names."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    manifest = read_checkpoints(train_dir)
    entries = manifest.entries if cfg.epochs == "all" else manifest.entries[-1:]
    written: list[CheckpointEntry] = []
    with timed(f"merge {manifest.label} ({cfg.mode})"), atomic_dir(out_dir) as tmp:
        if cfg.mode != "none":
            train_dir = checkpoint_files(train_dir, [e.name for e in entries])  # only the epochs merged
            base_dir = local_model_dir(model_uri, "model_uri")  # the weights are read file by file
            model = AutoModelForCausalLM.from_pretrained(base_dir, dtype="auto")
            tokenizer = AutoTokenizer.from_pretrained(base_dir)
            params = dict(model.named_parameters())
            bases: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
            for e in entries:
                for lam in cfg.lambdas:
                    start = time.perf_counter()
                    ref = cfg.candidate(manifest.label, lam, e.ref.epoch)
                    n = _apply(cfg, lam, update_deltas(base_dir, manifest, train_dir / e.name), params, bases)
                    model.save_pretrained(tmp / ref.dirname)
                    tokenizer.save_pretrained(tmp / ref.dirname)
                    written.append(CheckpointEntry(ref, ref.dirname, {"lambda": lam, "matrices": n}))
                    log.info("merged %s: %d matrices in %.2fs", ref.dirname, n, time.perf_counter() - start)
        merge = {"mode": cfg.mode, "k": cfg.k, "lambdas": list(cfg.lambdas), "epochs": cfg.epochs, "seed": cfg.seed}
        write_checkpoints(tmp, CheckpointManifest(manifest.label, "full", manifest.method, tuple(written),
                                                  {"base_model": model_uri, "merge": merge}))
    return [w.name for w in written]


def _apply(cfg: MergeConfig, lam: float, deltas: Iterator[tuple[str, torch.Tensor, torch.Tensor]],
           params: dict[str, torch.nn.Parameter], bases: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> int:
    """Set every updated matrix to W_I + dW' in place; return how many."""
    from safetax.weights.ortho import ortho_merge
    from safetax.weights.svd import top_singular

    n = 0
    with torch.no_grad():
        for name, w_i, dw in progress(deltas, desc=f"merge lambda={lam:g}", unit="matrix"):
            if name not in params:
                raise KeyError(f"update for {name!r}, which the base model does not have")
            if cfg.mode == "plain":
                update = dw
            else:
                if name not in bases:
                    bases[name] = top_singular(w_i.float(), cfg.k, seed=cfg.seed)
                update = ortho_merge(w_i, dw, cfg.k, lam, cfg.mode.removeprefix("ortho-"), seed=cfg.seed, basis=bases[name])
            params[name].copy_((w_i.float() + update.float()).to(params[name].dtype))
            n += 1
    return n
