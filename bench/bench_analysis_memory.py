"""Peak memory of the weight-update analysis, one matrix pair at a time vs whole checkpoints (target: << 1x the file).

Builds a random Qwen2-shaped bf16 checkpoint (base) and a perturbed copy (tuned),
sharded like real ones, then runs ``analyze_updates`` (stable rank + the four overlap
metrics) over every Linear weight in a fresh subprocess each way:

* streaming: ``iter_matrix_deltas`` (``iter_matrix_pairs``) reads one pair at a time from the safetensors files;
* whole: ``safetensors.torch.load_file`` of both checkpoints, then the same analysis.

Peak RSS growth over the child's baseline (after imports and a warm-up) is read from
``VmHWM`` in ``/proc/self/status`` (reset through ``clear_refs`` where the kernel allows),
so torch's allocations, which ``tracemalloc`` cannot see, are counted.

1 thread per child (``_harness.pin_threads``); ``--repeats`` (default 3, at least 3) interleaved streaming/whole
pairs, min and median of each. Target: the streaming peak (median) < 0.5x the checkpoint file; PASS or FAIL, exit
status 1 on FAIL. About 4 minutes on 2 shared cores. Fewer ``--layers`` run faster but cannot pass: the streaming
peak is a fixed ~70 MiB (a few matrices and the metrics' workspaces), which a smaller file does not shrink.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).parent))
from _harness import pin_threads, verdict  # noqa: E402
from _rss import peak_increase, reset_peak  # noqa: E402

from safetax.weights.io import iter_matrix_deltas  # noqa: E402
from safetax.weights.metrics import analyze_updates  # noqa: E402

TARGET = 0.5  # streaming peak RSS increase over the size of one checkpoint file (median of the repeats)
MODES = ("streaming", "whole")


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


def run_child(mode: str, base_dir: Path, tuned_dir: Path, env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(base_dir), str(tuned_dir)],
                         check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(base_dir: Path, tuned_dir: Path, repeats: int) -> dict[str, list[dict]]:
    """``repeats`` interleaved streaming/whole pairs, each a fresh child with 1 thread."""
    if repeats < 3:
        raise ValueError(f"repeats must be >= 3, got {repeats}")
    env = {**os.environ, **pin_threads(1)}
    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for _ in range(repeats):  # interleaved: a load change on the machine hits both alike
        for mode in MODES:
            results[mode].append(run_child(mode, base_dir, tuned_dir, env))
    return results


def main(layers: int, hidden: int, inter: int, repeats: int) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        base_dir, tuned_dir = build(Path(tmp), layers, hidden, inter)
        size = sum(f.stat().st_size for f in base_dir.glob("*.safetensors"))
        largest = 2 * max(inter * hidden, hidden * hidden) * 4  # one fp32 (W_I, dW) pair
        print(f"checkpoint: {layers} layers, hidden {hidden}, intermediate {inter}, bf16, "
              f"{size / 2**20:.0f} MiB per checkpoint (x2 on disk); {repeats} interleaved pairs, 1 thread per child")
        results = measure(base_dir, tuned_dir, repeats)
    peaks = {mode: [r["peak_increase"] for r in rs] for mode, rs in results.items()}
    for mode, rs in results.items():
        secs, med = [r["seconds"] for r in rs], statistics.median(peaks[mode])
        print(f"{mode:>9}: {rs[0]['matrices']} matrices; peak RSS +{min(peaks[mode]) / 2**20:.0f} MiB (min), "
              f"+{med / 2**20:.0f} MiB (median) = {med / size:.2f}x the checkpoint file, {med / largest:.1f}x the largest "
              f"fp32 matrix pair; time min {min(secs):.2f}s median {statistics.median(secs):.2f}s")
    ratio = statistics.median(peaks["streaming"]) / size
    print(f"streaming / whole peak (median): {statistics.median(peaks['streaming']) / statistics.median(peaks['whole']):.2f}")
    return verdict(f"streaming peak {ratio:.2f}x the checkpoint file (median; target < {TARGET}x)", ratio < TARGET)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=16, help="decoder layers (default 16: 213 MiB per checkpoint)")
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--intermediate", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved streaming/whole pairs (>= 3)")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "BASE", "TUNED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
    else:
        raise SystemExit(0 if main(args.layers, args.hidden, args.intermediate, args.repeats) else 1)
