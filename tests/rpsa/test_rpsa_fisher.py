"""fisher_diagonal against a brute-force per-sample autograd loop; hooks, memory path, summary."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from safetax.rpsa.fisher import fisher_diagonal, summarize_fisher


def brute_force_fisher(model: nn.Module, sequences: list[dict[str, torch.Tensor]],
                       params: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
    """Mean over samples of the squared gradient of each sample's mean-token loss, via autograd.grad."""
    model.eval()
    names = list(params)
    acc = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    for s in sequences:
        loss = model(**{k: v.unsqueeze(0) for k, v in s.items()}).loss
        grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
        for n, g in zip(names, grads):
            if g is not None:
                acc[n] += g.float() ** 2
    return {n: a / len(sequences) for n, a in acc.items()}


def assert_fisher_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-5, atol=1e-12, msg=n)


def lora(model: nn.Module) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["up_proj"], lora_dropout=0.0))


def test_full_parameters_match_brute_force(model, sequences):
    params = dict(model.named_parameters())
    want = brute_force_fisher(model, sequences, params)
    got = fisher_diagonal(model, sequences)
    assert_fisher_close(got, want)
    assert sum(int((f > 0).sum()) for f in got.values()) > 0.5 * sum(f.numel() for f in got.values())


def test_lora_zero_b_gives_exactly_zero_a_fisher(model, sequences):
    peft_model = lora(model)
    params = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    assert params and all("lora_" in n for n in params)
    got = fisher_diagonal(peft_model, sequences)
    assert_fisher_close(got, brute_force_fisher(peft_model, sequences, params))
    for n, f in got.items():
        if "lora_A" in n:
            assert torch.count_nonzero(f) == 0, n
        else:
            assert torch.count_nonzero(f) > 0, n


def test_lora_nonzero_b_matches_brute_force(model, sequences):
    peft_model = lora(model)
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    params = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    got = fisher_diagonal(peft_model, sequences)
    assert_fisher_close(got, brute_force_fisher(peft_model, sequences, params))
    assert all(torch.count_nonzero(f) > 0 for n, f in got.items() if "lora_A" in n)


def test_subset_no_grads_left_hooks_removed_and_flags_restored(model, sequences):
    model.train()
    subset = {n: p for n, p in model.named_parameters() if ".mlp." in n}
    got = fisher_diagonal(model, sequences, subset)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert_fisher_close(got, brute_force_fisher(model, sequences, subset))
    # a later backward keeps its gradients: no hook is left to square and drop them
    model(**{k: v.unsqueeze(0) for k, v in sequences[0].items()}).loss.backward()
    assert all(p.grad is not None for p in subset.values())


def test_hooks_removed_and_state_restored_on_exception(model, sequences):
    def failing():
        yield sequences[0]
        raise RuntimeError("corpus broke")

    with pytest.raises(RuntimeError, match="corpus broke"):
        fisher_diagonal(model, failing(), {n: p for n, p in model.named_parameters() if ".mlp." in n})
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    model(**{k: v.unsqueeze(0) for k, v in sequences[0].items()}).loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if ".mlp." in n)


def test_cpu_accumulator_gives_same_values(model, sequences):
    default = fisher_diagonal(model, sequences)
    on_cpu = fisher_diagonal(model, sequences, accumulator_device="cpu")
    for n in default:
        assert on_cpu[n].device.type == "cpu" and on_cpu[n].dtype == torch.float32
        assert torch.equal(default[n].cpu(), on_cpu[n]), n


def test_batched_shapes_and_promptless_sequences(model, sequences):
    as_rows = [{k: v.unsqueeze(0) for k, v in s.items()} for s in sequences]
    no_response = {**sequences[0], "labels": torch.full_like(sequences[0]["labels"], -100)}
    a = fisher_diagonal(model, sequences)
    b = fisher_diagonal(model, [*as_rows, no_response])  # [1, T] inputs; the empty one is skipped
    assert all(torch.equal(a[n], b[n]) for n in a)
    two = {k: torch.stack([v, v]) for k, v in sequences[0].items()}
    with pytest.raises(ValueError, match="one sequence per backward"):
        fisher_diagonal(model, [two])
    with pytest.raises(ValueError, match="no sequence with a response token"):
        fisher_diagonal(model, [no_response])


def test_summary_rows(model, sequences):
    df = summarize_fisher(fisher_diagonal(model, sequences))
    assert len(df) == len(list(model.parameters()))
    row = df[df["name"] == "model.layers.1.self_attn.q_proj.weight"].iloc[0]
    assert (row["layer"], row["module"], row["group"], row["numel"]) == (1, "q_proj", "attention", 32 * 32)
    emb = df[df["name"] == "model.embed_tokens.weight"].iloc[0]
    assert emb["layer"] is None and emb["module"] == "embed_tokens" and emb["group"] == "other"
    assert set(df[df["module"] == "down_proj"]["group"]) == {"mlp"}
    assert (df["nonzero_share"].between(0, 1)).all() and (df["max"] >= df["mean"]).all()
