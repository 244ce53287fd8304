"""Peak memory of the weight-update analysis, one matrix pair at a time vs whole checkpoints (target: << 1x the file).

Builds a random Qwen2-shaped bf16 checkpoint (base) and a perturbed copy (tuned),
sharded like real ones, then runs ``analyze_updates`` (stable rank + the four overlap
metrics) over every Linear weight in a fresh subprocess each way:

* streaming: ``iter_matrix_deltas`` (``iter_matrix_pairs``) reads one pair at a time from the safetensors files;
* whole: ``safetensors.torch.load_file`` of both checkpoints, then the same analysis.

Peak RSS growth over the child's baseline (after imports and a warm-up) is read from
``VmHWM`` in ``/proc/self/status`` (reset through ``clear_refs`` where the kernel allows),
so torch's allocations, which ``tracemalloc`` cannot see, are counted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from _rss import peak_increase, reset_peak
from safetax.weights.io import iter_matrix_deltas
from safetax.weights.metrics import analyze_updates


def layer_shapes(hidden: int, inter: int, kv: int) -> dict[str, tuple[int, int]]:
    return {
        "self_attn.q_proj": (hidden, hidden), "self_attn.k_proj": (kv, hidden), "self_attn.v_proj": (kv, hidden),
        "self_attn.o_proj": (hidden, hidden), "mlp.gate_proj": (inter, hidden), "mlp.up_proj": (inter, hidden),
        "mlp.down_proj": (hidden, inter),
    }


def build(root: Path, layers: int, hidden: int, inter: int, vocab: int = 8192, shards: int = 2) -> tuple[Path, Path]:
    """base/ and tuned/ with model-0000i-of-0000n.safetensors; tuned = base + a small random update on every Linear."""
    gen = torch.Generator().manual_seed(0)
    base_dir, tuned_dir = root / "base", root / "tuned"
    base_dir.mkdir(), tuned_dir.mkdir()
    per_shard = -(-layers // shards)
    for s in range(shards):
        base: dict[str, torch.Tensor] = {}
        if s == 0:
            base["model.embed_tokens.weight"] = torch.randn(vocab, hidden, generator=gen).to(torch.bfloat16)
            base["lm_head.weight"] = torch.randn(vocab, hidden, generator=gen).to(torch.bfloat16)
        for i in range(s * per_shard, min(layers, (s + 1) * per_shard)):
            base[f"model.layers.{i}.input_layernorm.weight"] = torch.ones(hidden, dtype=torch.bfloat16)
            for mod, shape in layer_shapes(hidden, inter, hidden // 4).items():
                base[f"model.layers.{i}.{mod}.weight"] = (0.02 * torch.randn(*shape, generator=gen)).to(torch.bfloat16)
        tuned = {
            k: (v.float() + 1e-3 * torch.randn(v.shape, generator=gen)).to(v.dtype) if v.ndim == 2 else v
            for k, v in base.items()
        }
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_file(base, base_dir / name)
        save_file(tuned, tuned_dir / name)
    return base_dir, tuned_dir


def child(mode: str, base_dir: Path, tuned_dir: Path) -> None:
    """Run one analysis and print {"peak_increase": bytes, "matrices": n, "seconds": s} as JSON."""
    w = torch.randn(64, 48)
    list(analyze_updates([("warm-up", w, w)], k=16))  # LAPACK/BLAS workspaces into the baseline
    baseline = reset_peak()
    t0 = time.perf_counter()
    if mode == "streaming":
        rows = list(analyze_updates(iter_matrix_deltas(base_dir, tuned_dir), k=16))
    else:
        base = {k: v for f in sorted(base_dir.glob("*.safetensors")) for k, v in load_file(f).items()}
        tuned = {k: v for f in sorted(tuned_dir.glob("*.safetensors")) for k, v in load_file(f).items()}
        names = [k for k, v in base.items() if v.ndim == 2 and "embed" not in k and "lm_head" not in k]
        rows = list(analyze_updates(((n, base[n], tuned[n].float().sub_(base[n])) for n in names), k=16))
    print(json.dumps({"peak_increase": peak_increase(baseline), "matrices": len(rows), "seconds": time.perf_counter() - t0}))


def run_child(mode: str, base_dir: Path, tuned_dir: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(base_dir), str(tuned_dir)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(layers: int, hidden: int, inter: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base_dir, tuned_dir = build(Path(tmp), layers, hidden, inter)
        size = sum(f.stat().st_size for f in base_dir.glob("*.safetensors"))
        largest = 2 * max(inter * hidden, hidden * hidden) * 4  # one fp32 (W_I, dW) pair
        print(f"checkpoint: {layers} layers, hidden {hidden}, intermediate {inter}, bf16, "
              f"{size / 2**20:.0f} MiB per checkpoint (x2 on disk)")
        results = {mode: run_child(mode, base_dir, tuned_dir) for mode in ("streaming", "whole")}
    for mode, r in results.items():
        peak = r["peak_increase"]
        print(f"{mode:>9}: {r['matrices']} matrices in {r['seconds']:.1f}s, peak RSS +{peak / 2**20:.0f} MiB = "
              f"{peak / size:.2f}x the checkpoint file, {peak / largest:.1f}x the largest fp32 matrix pair")
    ratio = results["streaming"]["peak_increase"] / size
    print(f"streaming / whole peak: {results['streaming']['peak_increase'] / results['whole']['peak_increase']:.2f}")
    print("PASS" if ratio < 0.5 else "FAIL", f"(target: streaming peak well below 1x the file, got {ratio:.2f}x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--intermediate", type=int, default=2048)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "BASE", "TUNED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
    else:
        main(args.layers, args.hidden, args.intermediate)
