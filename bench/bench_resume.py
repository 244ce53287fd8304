"""Sample-level resume: SIGKILL a generate stage at 90 % of its chunks, rerun it, count the regenerated samples.

A tiny random model generates 40 reasoning prompts x 4 samples and 40 safety prompts (200 samples, chunks of 4
prompts: 20 chunks) in a child process, once uninterrupted and once killed as soon as its chunks hold 90 % of the
samples, then rerun into the same chunk area. Target: the rerun regenerates <= 10 % of the samples (it reads the rest from the chunks), and
its output equals the uninterrupted run's byte for byte (seeded sampling). Also prints the wall time of the
uninterrupted run against killed run + rerun (min and median of 3 interleaved repeats, 1 thread per process).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import pin_threads, tiny_model, verdict  # noqa: E402

PROMPTS, CHUNK, KILL_AT = 40, 4, 0.9
DRIVER = """
import json, sys, time
from pathlib import Path
from safetax.data.eval_sets import EvalSet
from safetax.generation.base import SamplingConfig
from safetax.resume import ChunkArea
from safetax.stages import generate

a = json.loads(sys.argv[1])
if a["pause"]:  # a moment between chunks for the parent to kill in (a real stage is minutes per chunk)
    write = ChunkArea.write
    def slow(self, name, rows):
        write(self, name, rows)
        time.sleep(a["pause"])
    ChunkArea.write = slow
cfg = generate.GenerateConfig(a["model"], tuple(EvalSet(**e) for e in a["sets"]), SamplingConfig(max_new_tokens=24),
                              SamplingConfig(temperature=0.7, top_p=0.95, n=4, max_new_tokens=24, seed=1),
                              batch_size=8, chunk_prompts=a["chunk"])
generate.run(cfg, Path(a["out"]), partial_uri=a["partial"])
"""


def _start(args: dict[str, object], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(args)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _chunks(partial: Path) -> int:
    return sum(1 for _ in partial.rglob("*.jsonl"))


def _samples(partial: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in partial.rglob("*.jsonl"))


def _main(root: Path, repeats: int) -> bool:
    env = {**os.environ, **pin_threads(1)}
    model = tiny_model(str(root / "model"))
    (root / "r.jsonl").write_text("".join(json.dumps({"problem": f"Compute {i}*3.", "answer": str(3 * i)}) + "\n" for i in range(PROMPTS)))
    (root / "s.jsonl").write_text("".join(json.dumps({"prompt": f"Explain placeholder task {i}."}) + "\n" for i in range(PROMPTS)))
    sets = [{"name": "r", "kind": "reasoning", "uri": str(root / "r.jsonl")}, {"name": "s", "kind": "safety", "uri": str(root / "s.jsonl")}]
    whole_s, resumed_s, redo, same = [], [], [], []
    for rep in range(repeats):
        base = {"model": model, "sets": sets, "chunk": CHUNK, "pause": 0.0}
        t0 = time.perf_counter()
        whole = _start({**base, "out": str(root / f"whole{rep}"), "partial": str(root / f"wp{rep}")}, env)
        assert whole.wait() == 0, "the uninterrupted run failed"
        whole_s.append(time.perf_counter() - t0)

        partial = root / f"partial{rep}"
        t0 = time.perf_counter()
        proc = _start({**base, "out": str(root / f"gen{rep}"), "partial": str(partial), "pause": 0.5}, env)
        while _samples(partial) < KILL_AT * PROMPTS * 5 and proc.poll() is None:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at, done = _chunks(partial), _samples(partial)
        rerun = _start({**base, "out": str(root / f"gen{rep}"), "partial": str(partial)}, env)
        assert rerun.wait() == 0, "the rerun failed"
        resumed_s.append(time.perf_counter() - t0 - 0.5 * killed_at)  # less the pauses the kill needed
        cost = json.loads((root / f"gen{rep}" / "cost.json").read_text())
        redo.append(cost["generated"] / cost["samples"])
        same.append((root / f"gen{rep}" / "generations.jsonl").read_bytes() == (root / f"whole{rep}" / "generations.jsonl").read_bytes())
        print(f"  repeat {rep + 1}: killed after {killed_at}/{PROMPTS * 2 // CHUNK} chunks ({done} samples); rerun generated {cost['generated']} "
              f"of {cost['samples']} samples, resumed {cost['resumed']}; output identical: {same[-1]}")
    print(f"  uninterrupted: min {min(whole_s):.2f}s median {statistics.median(whole_s):.2f}s; killed + rerun (less pauses): "
          f"min {min(resumed_s):.2f}s median {statistics.median(resumed_s):.2f}s")
    return verdict(f"regenerated after a kill at 90 %: max {max(redo):.1%} of the samples (target <= 10 %), "
                   f"identical outputs {sum(same)}/{repeats}", max(redo) <= 0.10 and all(same))



def main(repeats: int = 3) -> bool:
    with tempfile.TemporaryDirectory(prefix="bench-resume-") as tmp:
        return _main(Path(tmp), repeats)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
