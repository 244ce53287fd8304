"""Sample-level resume: SIGKILL a generate stage (and the code task) at 90 % of its chunks, rerun it, count the redone samples.

A tiny random model generates 40 reasoning prompts x 4 samples and 40 safety prompts (200 samples, chunks of 4
prompts: 20 chunks) in a child process, once uninterrupted and once killed as soon as its chunks hold 90 % of the
samples, then rerun into the same chunk area. Target: the rerun regenerates <= 10 % of the samples (it reads the rest from the chunks), and
its output equals the uninterrupted run's byte for byte (seeded sampling). Also prints the wall time of the
uninterrupted run against killed run + rerun (min and median of 3 interleaved repeats, 1 thread per process).

The code task the same way: 20 HumanEval+ tasks x (the canonical and a wrong program) = 40 programs in chunks of 4,
kept in a real S3 server (SeaweedFS) through the pre-signed URLs the judge task would make, run by a child process
that holds no store credential. Target: the rerun runs <= 10 % of the programs, and its results equal the
uninterrupted run's.
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
CODE_TASKS, CODE_CHUNK = 20, 4
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # the benchmark files ($SAFETAX_DATA_DIR wins)
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





def _code_jobs(jobs_dir: Path, partial: str) -> int:
    """The judge task's code jobs (each task's canonical solution and a wrong program) and chunk plan; the program count."""
    from safetax.stages import code_exec
    from safetax.testing.code_jobs import write_code_jobs

    n = write_code_jobs(jobs_dir, CODE_TASKS)
    code_exec.plan_chunks(jobs_dir, partial, chunk_jobs=CODE_CHUNK)
    return n


def _code_run(jobs: Path, out: Path, env: dict[str, str], pause: float = 0.0) -> subprocess.Popen[bytes]:
    from safetax.testing.code_jobs import DRIVER as CODE_TASK_DRIVER

    args = {"jobs": str(jobs), "out": str(out), "pause": pause}
    return subprocess.Popen([sys.executable, "-c", CODE_TASK_DRIVER, json.dumps(args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)


def _code_main(root: Path, repeats: int) -> bool:
    from safetax.store.s3 import S3Store
    from safetax.testing.seaweedfs import seaweedfs

    os.environ.setdefault("SAFETAX_DATA_DIR", str(DATA))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAFETAX_S3_", "AWS_"))} | pin_threads(1)
    with seaweedfs(root / "seaweedfs") as server:
        os.environ.update(server.env())  # this process plans and counts the chunks; the children get no credential
        store = S3Store()
        whole_s, resumed_s, redo, same = [], [], [], []
        for rep in range(repeats):
            n = _code_jobs(root / f"whole-jobs{rep}", "")
            t0 = time.perf_counter()
            whole = _code_run(root / f"whole-jobs{rep}", root / f"whole-code{rep}", env)
            assert whole.wait() == 0, "the uninterrupted code run failed"
            whole_s.append(time.perf_counter() - t0)

            partial = f"s3://bench-resume/{rep}/partial/code/base"
            _code_jobs(root / f"jobs{rep}", partial)
            t0 = time.perf_counter()
            proc = _code_run(root / f"jobs{rep}", root / f"code{rep}", env, pause=0.5)
            while len(store.keys(partial) or []) * CODE_CHUNK < KILL_AT * n and proc.poll() is None:
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            killed_at = len(store.keys(partial) or [])
            rerun = _code_run(root / f"jobs{rep}", root / f"code{rep}", env)
            out, _ = rerun.communicate()
            assert rerun.returncode == 0, "the code rerun failed"
            resumed_s.append(time.perf_counter() - t0 - 0.5 * killed_at)
            counts = json.loads(out.decode().strip().splitlines()[-1])
            redo.append(counts["executed"] / n)
            same.append((root / f"code{rep}" / "code_results.jsonl").read_bytes() == (root / f"whole-code{rep}" / "code_results.jsonl").read_bytes())
            print(f"  code repeat {rep + 1}: killed after {killed_at}/{n // CODE_CHUNK} chunks; rerun ran {counts['executed']} of {n} "
                  f"programs, resumed {counts['resumed']}; results identical: {same[-1]}")
    print(f"  code uninterrupted: min {min(whole_s):.2f}s median {statistics.median(whole_s):.2f}s; killed + rerun (less pauses): "
          f"min {min(resumed_s):.2f}s median {statistics.median(resumed_s):.2f}s")
    return verdict(f"code programs run again after a kill at 90 %: max {max(redo):.1%} (target <= 10 %), "
                   f"identical results {sum(same)}/{repeats}", max(redo) <= 0.10 and all(same))


def main(repeats: int = 3) -> bool:
    with tempfile.TemporaryDirectory(prefix="bench-resume-") as tmp:
        generation = _main(Path(tmp), repeats)
        code = _code_main(Path(tmp), repeats)
        return generation and code


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
