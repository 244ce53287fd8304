"""The learning-rate schedule: warmup by ratio or by steps (RPSA's seeds: 100 steps), then cosine decay."""

from __future__ import annotations

import torch

from safetax.training.sft import LoopConfig, train_loop


def _lrs(warmup_ratio: float, warmup_steps: int) -> list[float]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10))

    class LM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, input_ids, labels, attention_mask, **kwargs):  # type: ignore[no-untyped-def]
            logits = self.net(input_ids)
            loss = torch.nn.functional.cross_entropy(logits.view(-1, 10), labels.view(-1), ignore_index=-100)
            return type("Out", (), {"loss": loss})()

    lm = LM()
    examples = [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}] * 8
    opt = torch.optim.SGD(lm.parameters(), lr=1.0)
    seen: list[float] = []
    cfg = LoopConfig(epochs=1, learning_rate=1.0, weight_decay=0.0, batch_size=1, grad_accum=1, warmup_ratio=warmup_ratio,
                     grad_clip=0.0, seed=0, bf16=False, warmup_steps=warmup_steps)
    train_loop(lm, examples, 0, cfg, lambda e, l: None, optimizer=opt, before_step=lambda s: seen.append(opt.param_groups[0]["lr"]))
    return seen


def test_warmup_steps_override_the_ratio() -> None:
    by_steps = _lrs(0.0, 4)
    assert by_steps[:5] == [0.25, 0.5, 0.75, 1.0, 1.0] and by_steps[5] < 1.0  # linear warmup over 4 steps, then cosine decay
    assert _lrs(0.5, -1)[:4] == [0.25, 0.5, 0.75, 1.0]  # the ratio: half of 8 steps
    assert _lrs(0.0, -1)[0] == 1.0  # no warmup
