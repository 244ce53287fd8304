"""The SFT loop shared by full fine-tuning and LoRA: one loop, read top to bottom."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from safetax.data.chat import IGNORE_INDEX
from safetax.timing import progress_bar

if TYPE_CHECKING:
    from safetax.training.distributed import DataParallel
    from safetax.training.resume import TrainState

# on_step(loss, tokens_per_second, fractional_epoch)
StepCallback = Callable[[float, float, float], object]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopConfig:
    epochs: int
    learning_rate: float
    weight_decay: float
    batch_size: int
    grad_accum: int
    warmup_ratio: float
    grad_clip: float
    seed: int
    bf16: bool
    warmup_steps: int = -1  # >= 0 overrides warmup_ratio (RPSA's seeds: 100 steps)


def collate(examples: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padded positions get no attention and no loss."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def cosine_with_warmup(step: int, total: int, warmup: int) -> float:
    """LR multiplier: linear warmup, then cosine decay to 0 (the seeds' schedule)."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train_loop(
    model: torch.nn.Module,
    examples: Sequence[dict[str, list[int]]],
    pad_id: int,
    cfg: LoopConfig,
    on_epoch_end: Callable[[int, float], None],
    on_step: StepCallback | None = None,
    regularizer: Callable[[], torch.Tensor] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    before_step: Callable[[int], None] | None = None,
    ranks: DataParallel | None = None,
    state: TrainState | None = None,
) -> list[float]:
    """Train the parameters with ``requires_grad``; return the mean loss of each epoch.

    Deterministic on CPU for a fixed ``seed``: data order comes from a seeded generator.
    ``on_epoch_end(epoch, mean_loss)`` writes the epoch's checkpoint; ``on_step(loss,
    tokens_per_second, fractional_epoch)`` sees every batch (for telemetry). ``regularizer()``,
    if given, is added to every batch's loss (e.g. the LoRA paper's orthogonality term); the
    reported losses are the SFT loss alone. ``optimizer`` replaces the default AdamW (RPSA's
    masked one); ``before_step(step)`` runs after the backward pass of each optimiser step,
    before clipping and the step (RPSA's mask updates).

    ``ranks``: this process's place among data-parallel workers (``model`` wrapped in DDP or FSDP,
    see :mod:`safetax.training.distributed`). ``batch_size`` stays the global batch: every rank draws
    the same order, trains on its share of each batch with the loss scaled so that the averaged
    gradient is the one-process gradient, and reports the global batch's loss; ``None`` = one process.

    ``state``: where the resumable state goes (:mod:`safetax.training.resume`): written every
    ``state.every`` optimiser steps and at each epoch's end; the loop starts from the newest one
    there, if any, and then continues exactly as the interrupted run would have.
    """
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    # The fused AdamW kernel (CPU and CUDA) is what transformers' Trainer uses by default: fewer passes over the state.
    opt = optimizer if optimizer is not None else torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                                                    fused=device.type in ("cpu", "cuda"))
    batches_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total = cfg.epochs * math.ceil(batches_per_epoch / cfg.grad_accum)
    warmup = min(total, cfg.warmup_steps) if cfg.warmup_steps >= 0 else int(cfg.warmup_ratio * total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_with_warmup(s, total, warmup))
    gen = torch.Generator().manual_seed(cfg.seed)
    pos = state.restore(model, opt, sched, gen) if state is not None else None
    start_epoch, start_batch, order = (pos["epoch"], pos["batch"], pos["order"]) if pos else (1, 0, None)
    step = pos["step"] if pos else 0
    losses: list[float] = list(pos["losses"]) if pos else []
    epoch_loss, n_tokens, seen_tokens = (pos["epoch_loss"], pos["n_tokens"], pos["seen_tokens"]) if pos else (0.0, 0, 0)
    bar = progress_bar(cfg.epochs * batches_per_epoch, desc="train", unit="batch")
    bar.update((start_epoch - 1) * batches_per_epoch + start_batch)
    start = time.perf_counter()
    model.train()
    for epoch in range(start_epoch, cfg.epochs + 1):
        if order is None:
            order = torch.randperm(len(examples), generator=gen).tolist()
        for b in range(start_batch, batches_per_epoch):
            chosen = [examples[i] for i in order[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
            batch = collate(chosen if ranks is None else ranks.share(chosen), pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                loss = model(**batch, use_cache=False).loss  # no KV cache: training never reads it back
            objective = loss if ranks is None else ranks.objective(loss, chosen)
            if regularizer is None:
                (objective / cfg.grad_accum).backward()
            else:
                ((objective + regularizer()) / cfg.grad_accum).backward()
            stepped = (b + 1) % cfg.grad_accum == 0 or b + 1 == batches_per_epoch
            if stepped:
                if before_step is not None:
                    before_step(step)
                step += 1
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
            if ranks is None:
                batch_loss = loss.item()
                tokens = int((batch["labels"] != IGNORE_INDEX).sum())
                seen_tokens += int(batch["attention_mask"].sum())
            else:  # the global batch's loss and token counts, as one process would see them
                batch_loss = ranks.batch_loss(loss, chosen)
                tokens = sum(1 for e in chosen for t in e["labels"] if t != IGNORE_INDEX)
                seen_tokens += sum(len(e["input_ids"]) for e in chosen)
            epoch_loss += batch_loss * tokens
            n_tokens += tokens
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{batch_loss:.3f}", refresh=False)
            if on_step is not None:
                on_step(batch_loss, seen_tokens / max(1e-9, time.perf_counter() - start), epoch - 1 + (b + 1) / batches_per_epoch)
            if state is not None and stepped and state.every > 0 and step % state.every == 0 and b + 1 < batches_per_epoch:
                state.save(model, opt, sched, gen, {"epoch": epoch, "batch": b + 1, "step": step, "order": order, "losses": losses,
                                                    "epoch_loss": epoch_loss, "n_tokens": n_tokens, "seen_tokens": seen_tokens})
        losses.append(epoch_loss / max(1, n_tokens))
        log.info("epoch %d/%d: loss %.4f (%.1fs elapsed)", epoch, cfg.epochs, losses[-1], time.perf_counter() - start)
        on_epoch_end(epoch, losses[-1])
        order, start_batch, epoch_loss, n_tokens = None, 0, 0.0, 0
        if state is not None:
            state.save(model, opt, sched, gen, {"epoch": epoch + 1, "batch": 0, "step": step, "order": None, "losses": losses,
                                                "epoch_loss": 0.0, "n_tokens": 0, "seen_tokens": seen_tokens})
    bar.close()
    return losses
