"""Red team: model-written code attacks the code task's resume (its chunk URLs); every attack scores 0 and forges nothing.

The code task's jobs artifact holds a pre-signed PUT URL per chunk of verdicts (``code_chunks.json``). A program that
got one could write a chunk of forged passes that a later chunk, or a retry, reads back as valid: the chunk check
cannot tell a forged pass from a real one. Two barriers keep it out, each tested alone: the sandbox hides the jobs
file (``read_urls``, run through the code task itself) and it has no network, so a URL that leaked into the program's
own text is useless too (``leaked_url``). The control shows that both attacks work where nothing isolates the code.
Runs with the strongest isolation and without namespaces (Landlock + seccomp), like ``test_redteam.py``.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from safetax.benchmarks.registry import get_benchmark
from safetax.records import read_jsonl, write_jsonl
from safetax.scoring.sandbox import Isolation, isolation, probe, run_untrusted
from safetax.stages import code_exec
from safetax.store import write_json
from safetax.store.s3 import S3Store

TASK = "HumanEval/0"
BODY = """
def has_close_elements(numbers, threshold):
    if not PWNED:
        return None
    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for j, b in enumerate(numbers) if i != j)
"""
PROLOGUE = """
import glob, json, os, sys, urllib.request
T = {targets!r}
PWNED = False
LEAK = []
def put(url, body):
    req = urllib.request.Request(url, data=body.encode(), method="PUT")
    return urllib.request.urlopen(req, timeout=5).status == 200
"""
EPILOGUE = "\nprint(LEAK)\nprint(LEAK, file=sys.stderr)\n"
ATTACKS = {
    "read_urls": """
for p in glob.glob(T["jobs"] + "/*"):
    try:
        LEAK.append(open(p).read(1 << 16))
    except Exception:
        pass
try:
    plan = json.load(open(T["jobs"] + "/code_chunks.json"))
    PWNED = put(plan["chunks"]["00001"]["put"], T["forged"])
except Exception:
    pass
""",
    "leaked_url": """
try:
    PWNED = put(T["put"], T["forged"])
except Exception:
    pass
""",
}


@dataclass
class Arena:
    jobs: Path  # the code task's jobs artifact: the attacker's program (chunk 0), a wrong one (chunk 1), the URLs
    partial: str  # the chunk area in the run store
    forged: str  # chunk 1 forged as a pass, valid in form

    def targets(self, leaked_put: str = "") -> dict[str, str]:
        return {"jobs": str(self.jobs), "forged": self.forged, "put": leaked_put}

    def chunk_urls(self) -> dict[str, dict[str, str]]:
        return json.loads((self.jobs / code_exec.CHUNKS).read_text())["chunks"]


def attacker(attack: str, targets: dict[str, str]) -> str:
    return PROLOGUE.format(targets=targets) + attack + BODY


def make_arena(root: Path, attack: str) -> Arena:
    """Jobs for two responses to HumanEval/0 in chunks of one: the attacker's program, then a wrong one."""
    bench = get_benchmark("humanevalplus")
    item = next(i for i in bench.load(limit=1) if i.id == TASK)
    jobs_dir, wrong = root / f"jobs-{uuid.uuid4().hex[:6]}", "def has_close_elements(numbers, threshold):\n    return None\n"
    key = {"checkpoint": "base", "benchmark": "humanevalplus", "item_id": item.id, "task_id": TASK}
    forged = json.dumps({**{k: key[k] for k in code_exec.KEYS if k in key}, "sample": 1, "value": 1.0, "answer": wrong,
                         "reason": "base:pass plus:pass"}) + "\n"
    targets = {"jobs": str(jobs_dir), "forged": forged, "put": ""}
    jobs = [{**key, "sample": 0, "code": attacker(attack, targets)}, {**key, "sample": 1, "code": wrong}]
    jobs_dir.mkdir(parents=True)
    write_jsonl(jobs_dir / code_exec.JOBS, jobs)
    write_json(jobs_dir / code_exec.TASKS, {"humanevalplus": {"dataset": "humaneval", "tasks": {TASK: bench.tasks[TASK]}}})
    partial = f"s3://safetax-runs/{uuid.uuid4().hex[:10]}/partial/code/base"
    code_exec.plan_chunks(jobs_dir, partial, chunk_jobs=1)
    return Arena(jobs_dir, partial, forged)


@pytest.fixture(scope="module", params=["strongest", "without-namespaces"])
def iso(request: pytest.FixtureRequest) -> Isolation:
    return isolation() if request.param == "strongest" else probe(disable=["namespaces"])


@pytest.fixture()
def arena_root(s3_env, data_dir: Path, tmp_path: Path) -> Path:
    """A directory for the arenas, with the S3 server and the benchmark data set up."""
    return tmp_path


def chunk_objects(partial: str) -> dict[str, bytes]:
    store = S3Store()
    return {k: store.get_bytes(f"{partial}/{k}") or b"" for k in store.keys(partial) or []}


def test_programs_cannot_read_the_chunk_urls(arena_root: Path, iso: Isolation) -> None:
    arena = make_arena(arena_root, ATTACKS["read_urls"])
    assert code_exec.hidden_from_code(arena.jobs / code_exec.CHUNKS, iso)
    counts = code_exec.execute(arena.jobs, arena_root / "ran", iso=iso)
    rows = read_jsonl(arena_root / "ran" / code_exec.RESULTS)
    assert [r["value"] for r in rows] == [0.0, 0.0], [r["reason"] for r in rows]  # no false pass, none forged
    assert counts["executed"] == 2 and counts["resumed"] == 0
    raw = run_untrusted(attacker(ATTACKS["read_urls"], arena.targets()) + EPILOGUE, 10.0, iso=iso)
    signatures = [u.split("X-Amz-Signature=")[1] for c in arena.chunk_urls().values() for u in c.values()]
    assert not any(s in raw.stdout or s in raw.stderr for s in signatures)
    assert chunk_objects(arena.partial) == {}


def test_a_leaked_url_is_useless_inside_the_sandbox(arena_root: Path, iso: Isolation) -> None:
    arena = make_arena(arena_root, ATTACKS["leaked_url"])
    put = arena.chunk_urls()["00001"]["put"]
    raw = run_untrusted(attacker(ATTACKS["leaked_url"], arena.targets(put)) + "\nprint(PWNED)\n", 10.0, iso=iso)
    assert raw.stdout.strip().splitlines()[-1:] == ["False"], raw.stderr[-500:]
    assert chunk_objects(arena.partial) == {}  # nothing reached the store


def test_control_the_attacks_work_without_isolation(arena_root: Path) -> None:
    """Where nothing isolates the code, it reads the URLs and forges a chunk that a later run trusts: the sandbox is
    what stops it, and the code task does not use the URLs there."""
    if os.geteuid() != 0:
        pytest.skip("needs root: without isolation, a non-root test cannot tell the layers apart")
    arena = make_arena(arena_root, ATTACKS["read_urls"])
    bare = Isolation()
    assert not code_exec.hidden_from_code(arena.jobs / code_exec.CHUNKS, bare)
    raw = run_untrusted(attacker(ATTACKS["read_urls"], arena.targets()) + "\nprint(PWNED)\n", 10.0, iso=bare)
    assert raw.stdout.strip().splitlines()[-1:] == ["True"], raw.stderr[-500:]
    assert list(chunk_objects(arena.partial).values()) == [arena.forged.encode()]
    code_exec.execute(arena.jobs, arena_root / "ran", iso=isolation())
    assert [r["value"] for r in read_jsonl(arena_root / "ran" / code_exec.RESULTS)] == [0.0, 1.0]  # the false pass

    leaked = make_arena(arena_root, ATTACKS["leaked_url"])
    put = leaked.chunk_urls()["00001"]["put"]
    raw = run_untrusted(attacker(ATTACKS["leaked_url"], leaked.targets(put)) + "\nprint(PWNED)\n", 10.0, iso=bare)
    assert raw.stdout.strip().splitlines()[-1:] == ["True"], raw.stderr[-500:]
