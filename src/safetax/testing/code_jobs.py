"""Code-task inputs for tests and benchmarks: the job files a judge task would write for HumanEval+ programs."""

from __future__ import annotations

from pathlib import Path

from safetax.benchmarks.registry import get_benchmark
from safetax.records import write_jsonl
from safetax.stages import code_exec
from safetax.store import write_json

# A code task in a process of its own (argv[1]: JSON with "jobs", "out", "pause"), as a retried pod runs it; "pause"
# waits after each chunk written through the chunk URLs, so that a parent can kill it between two chunks.
DRIVER = """
import json, sys, time
from pathlib import Path
from safetax.resume import UrlChunks
from safetax.stages import code_exec

a = json.loads(sys.argv[1])
if a["pause"]:
    write = UrlChunks.write
    def slow(self, name, rows):
        write(self, name, rows)
        time.sleep(a["pause"])
    UrlChunks.write = slow
print(json.dumps(code_exec.execute(Path(a["jobs"]), Path(a["out"]))))
"""


def write_code_jobs(jobs_dir: Path, tasks: int) -> int:
    """Write ``code_jobs.jsonl`` and ``code_tasks.json`` for the first ``tasks`` HumanEval+ tasks, each answered by
    its canonical solution (passes) and by a wrong program (fails); return the number of programs."""
    bench = get_benchmark("humanevalplus")
    jobs, used = [], {}
    for item in bench.load(limit=tasks):
        task = bench.tasks[str(item.meta["task_id"])]  # type: ignore[attr-defined]
        used[task["task_id"]] = task
        for sample, code in enumerate([task["prompt"] + task["canonical_solution"], f"def {task['entry_point']}(*a):\n    return 0\n"]):
            jobs.append({"checkpoint": "base", "benchmark": "humanevalplus", "item_id": item.id, "sample": sample,
                         "task_id": task["task_id"], "code": code})
    jobs_dir.mkdir(parents=True)
    write_jsonl(jobs_dir / code_exec.JOBS, jobs)
    write_json(jobs_dir / code_exec.TASKS, {"humanevalplus": {"dataset": "humaneval", "tasks": used}})
    return len(jobs)
