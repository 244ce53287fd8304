"""RPSA Fisher scoring: time vs plain forward+backward (target <= 1.3x) and peak memory of the hook path (<= 1.2x).

(a) ``fisher_diagonal`` over a corpus vs one plain forward+backward per sequence over the same
sequences, on a small (4 layers, hidden 128) and a wider (4 layers, hidden 512) random Qwen2.
(b) Peak RSS of scoring with the post-accumulate-grad hooks vs without them (a plain backward
keeping every gradient, then squaring into the accumulator), each in a fresh subprocess
(``VmHWM`` in ``/proc/self/status``, reset through ``clear_refs``; CPU torch allocations are
invisible to tracemalloc), against weights + fp32 accumulator + activations (the bytes autograd
saves for backward, measured with ``saved_tensors_hooks``).

1 thread per process; (a) runs ``--repeats`` (default 3, at least 3) interleaved repeats, (b) as many interleaved
hook/no-hook pairs of fresh subprocesses; both print min and median (the targets apply to the median).
Targets, both checked: (a) fisher <= 1.3x a plain forward+backward on every model; (b) the hook path's weights +
peak <= 1.2x (weights + fp32 accumulator + activations), the README's memory claim. PASS or FAIL, exit status 1 on
FAIL. ``--quick``: 4 sequences of 64 tokens in (a), 2 of 128 in (b).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

sys.path.insert(0, str(Path(__file__).parent))
from _harness import THREAD_ENV, pin_threads, verdict  # noqa: E402
from _rss import peak_increase, reset_peak  # noqa: E402

from safetax.rpsa.fisher import fisher_diagonal  # noqa: E402

MEMORY_TARGET = 1.2  # weights + peak <= 1.2x (weights + fp32 accumulator + activations)
TIME_TARGET = 1.3
MiB = 2**20
CONFIGS = {  # name: (hidden, intermediate, layers, heads, kv heads)
    "small": (128, 352, 4, 4, 2),
    "wide": (512, 1408, 4, 8, 2),
}
VOCAB = 32000  # a Qwen/Llama-sized vocabulary: embeddings and lm_head dominate small models, as in real ones


def build(name: str) -> Qwen2ForCausalLM:
    hidden, inter, layers, heads, kv = CONFIGS[name]
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=1024)
    return Qwen2ForCausalLM(cfg)


def corpus(n: int, length: int, prompt: int = 32) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    seqs = []
    for _ in range(n):
        ids = torch.randint(0, VOCAB, (1, length), generator=g)
        labels = ids.clone()
        labels[:, :prompt] = -100
        seqs.append({"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids)})
    return seqs


def plain_pass(model: torch.nn.Module, seqs: list[dict[str, torch.Tensor]]) -> None:
    """One forward+backward per sequence, gradients dropped between sequences (the reference cost)."""
    model.eval()
    for s in seqs:
        model.zero_grad(set_to_none=True)
        model(**s).loss.backward()
    model.zero_grad(set_to_none=True)


def time_config(name: str, n: int, length: int, repeats: int) -> tuple[list[float], list[float]]:
    model, seqs = build(name), corpus(n, length)
    plain_pass(model, seqs[:2])  # warm-up
    fisher_diagonal(model, seqs[:2])
    t_plain: list[float] = []
    t_fisher: list[float] = []
    for _ in range(repeats):  # interleaved: a load change on the shared machine hits both alike
        t0 = time.perf_counter()
        plain_pass(model, seqs)
        t_plain.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fisher_diagonal(model, seqs)
        t_fisher.append(time.perf_counter() - t0)
    return t_plain, t_fisher


def saved_activation_bytes(model: torch.nn.Module, seq: dict[str, torch.Tensor]) -> int:
    """Bytes of the distinct non-parameter storages autograd saves for backward in one forward."""
    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in param_ptrs:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**seq).loss
    del loss
    return sum(seen.values())


def child(mode: str, name: str, n: int, length: int) -> None:
    """Score ``n`` sequences one way; print the peak RSS increase and the reference sizes as JSON."""
    model, seqs = build(name), corpus(n, length)
    model.eval()
    plain_pass(model, seqs[:1])  # BLAS workspaces and autograd's first-use allocations into the baseline
    act = saved_activation_bytes(model, seqs[0])
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    baseline = reset_peak()
    if mode == "hook":
        fisher_diagonal(model, seqs)
    else:
        acc = {k: torch.zeros_like(p, dtype=torch.float32) for k, p in model.named_parameters()}
        for s in seqs:
            model(**s).loss.backward()  # every gradient alive at once next to the accumulator
            for k, p in model.named_parameters():
                acc[k].addcmul_(p.grad, p.grad)
            model.zero_grad(set_to_none=True)
    print(json.dumps({"peak_increase": peak_increase(baseline), "weights": weights,
                      "accumulator": sum(p.numel() * 4 for p in model.parameters()), "activations": act,
                      "largest_grad": max(p.numel() * p.element_size() for p in model.parameters())}))


def run_child(mode: str, name: str, n: int, length: int) -> dict:
    # a fixed mmap threshold: large buffers are returned to the OS when freed, so RSS tracks live memory
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "TQDM_DISABLE": "1", **{k: "1" for k in THREAD_ENV}}
    out = subprocess.run([sys.executable, __file__, "--child", mode, name, str(n), str(length)],
                         check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_runs(n: int, length: int, repeats: int) -> dict[str, list[dict]]:
    """``repeats`` interleaved hook/no-hook pairs on the 'wide' model, each a fresh subprocess."""
    res: dict[str, list[dict]] = {"hook": [], "no-hook": []}
    for _ in range(repeats):  # interleaved: a load change on the shared machine hits both alike
        for mode in res:
            res[mode].append(run_child(mode, "wide", n, length))
    return res


def main(n: int = 8, length: int = 128, mem_n: int = 4, mem_length: int = 256, repeats: int = 3) -> bool:
    if repeats < 3:
        raise ValueError(f"repeats must be >= 3, got {repeats}")
    pin_threads(1)
    print(f"(a) time: {n} sequences of {length} tokens, one per backward, vocab {VOCAB}, 1 thread, {repeats} repeats")
    ok = True
    for name in CONFIGS:
        t_plain, t_fisher = time_config(name, n, length, repeats)
        params = sum(p.numel() for p in build(name).parameters())
        ratio = statistics.median(t_fisher) / statistics.median(t_plain)
        ok &= ratio <= TIME_TARGET
        print(f"  {name:5s} ({params / 1e6:5.1f}M params): plain fwd+bwd min {min(t_plain):6.2f}s median "
              f"{statistics.median(t_plain):6.2f}s; fisher min {min(t_fisher):6.2f}s median {statistics.median(t_fisher):6.2f}s; "
              f"ratio {min(t_fisher) / min(t_plain):.2f}x (min), {ratio:.2f}x (median; target <= {TIME_TARGET}x)")
    print(f"(b) peak RSS while scoring, 'wide' model, {mem_n} sequences of {mem_length} tokens "
          f"({repeats} interleaved pairs of fresh subprocesses)")
    runs = memory_runs(mem_n, mem_length, repeats)
    peaks = {mode: [m["peak_increase"] for m in ms] for mode, ms in runs.items()}
    r = runs["hook"][0]  # the sizes are the same in every run
    ideal_extra = r["accumulator"] + r["activations"]
    ideal_total = r["weights"] + ideal_extra
    print(f"  weights {r['weights'] / MiB:.0f} MiB, fp32 accumulator {r['accumulator'] / MiB:.0f} MiB, "
          f"saved activations {r['activations'] / MiB:.0f} MiB, largest gradient {r['largest_grad'] / MiB:.0f} MiB")
    print(f"  expected increase: hook ~ accumulator + activations + largest gradient = "
          f"{(ideal_extra + r['largest_grad']) / MiB:.0f} MiB; no hook ~ accumulator + all gradients = "
          f"{(r['accumulator'] + r['weights']) / MiB:.0f} MiB (activations are freed as gradients appear)")
    for mode, ps in peaks.items():
        med = statistics.median(ps)
        total = r["weights"] + med
        print(f"  {mode:8s}: peak +{min(ps) / MiB:5.0f} MiB (min), +{med / MiB:5.0f} MiB (median) over weights "
              f"({med / ideal_extra:.2f}x accumulator + activations); "
              f"weights + peak {total / MiB:5.0f} MiB = {total / ideal_total:.2f}x (weights + accumulator + activations)")
    saving = statistics.median(peaks["no-hook"]) / statistics.median(peaks["hook"])
    hook_total = (r["weights"] + statistics.median(peaks["hook"])) / ideal_total
    print(f"  no-hook / hook peak increase: {saving:.2f}x; hook path {hook_total:.2f}x (median; target <= {MEMORY_TARGET}x)")
    return verdict("Fisher scoring time and memory", ok and hook_total <= MEMORY_TARGET and saving > 1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of (a) and pairs of (b) (>= 3)")
        parser.add_argument("--quick", action="store_true", help="fewer, shorter sequences (a check that it runs)")
        args = parser.parse_args()
        sizes = dict(n=4, length=64, mem_n=2, mem_length=128) if args.quick else {}
        raise SystemExit(0 if main(**sizes, repeats=args.repeats) else 1)
