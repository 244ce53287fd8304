"""Faults and paths of the store: kills during a local republish, temporary siblings, two processes
fetching into one cache, and URIs that are not store locations (issue 14, item 4)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from safetax.store import MANIFEST, StoreError, atomic_dir, check_reachable, fetch, input_dir, local_model_dir, publish
from safetax.store.local import FAILED, mark_failed, require_complete
from safetax.store.manifest import Manifest, sha256_file
from safetax.store.objects import list_keys, published_dirs, read_text, write_text
from safetax.store.s3 import parse_uri
from safetax.store.uri import parse_store_uri

CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def _tree(root: Path, n: int, tag: str) -> Path:
    """``n`` small files (distinct content per ``tag``) in a few subdirectories."""
    for i in range(n):
        f = root / f"d{i % 7}" / f"f{i}.txt"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"{tag} {i} " * 20)
    return root


def _assert_complete(final: Path) -> Manifest:
    """Every file the manifest names is there with its digest: a whole copy, never half of one."""
    m = Manifest.from_json((final / MANIFEST).read_text(), str(final))
    assert (final / "COMPLETE").is_file()
    for f in m.files:
        assert sha256_file(final / f.path) == f.sha256, f.path
    return m


# A republish of `dest` killed (SIGKILL) in the middle of removing a directory: whichever directory
# the code removes while `dest` matters, half of its files are gone when the process dies.
_KILLED_REPUBLISH = textwrap.dedent("""
    import os, shutil, signal, sys
    from pathlib import Path
    from safetax.store import publish
    src, dest = Path(sys.argv[1]), Path(sys.argv[2])
    real = shutil.rmtree
    def rmtree_then_die(path, *a, **kw):
        files = sorted(p for p in Path(path).rglob("*") if p.is_file())
        if len(files) > 10:
            for p in files[: len(files) // 2]:
                p.unlink()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, *a, **kw)
    shutil.rmtree = rmtree_then_die
    publish(src, str(dest))
""")


def test_a_kill_during_a_local_republish_leaves_a_complete_copy(tmp_path: Path) -> None:
    dest = tmp_path / "store" / "run" / "ckpt"
    publish(_tree(tmp_path / "v1", 200, "v1"), str(dest))
    v2 = _tree(tmp_path / "v2", 200, "v2")
    proc = subprocess.run([sys.executable, "-c", _KILLED_REPUBLISH, str(v2), str(dest)], env=CHILD_ENV,
                          capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    m = _assert_complete(dest)  # the old or the new copy, whole
    assert {f.path for f in m.files} == {p.relative_to(v2).as_posix() for p in v2.rglob("*") if p.is_file()}
    # Leftovers of the killed writer are never listed as checkpoints.
    done, incomplete = published_dirs(str(tmp_path / "store" / "run"))
    assert [d.name for d in done] == ["ckpt"] and incomplete == []


def test_a_kill_between_the_steps_of_a_swap_leaves_old_or_new(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each step of the swap fails in turn (what a kill there leaves): the old copy or the new one is at
    `final`, whole; on the two-rename fallback, a kill between the renames leaves both beside it."""
    import safetax.store.local as local

    dest = tmp_path / "store" / "out"
    publish(_tree(tmp_path / "v1", 30, "v1"), str(dest))
    v2 = _tree(tmp_path / "v2", 30, "v2")

    class Killed(BaseException):
        pass

    def die(*_a: object, **_kw: object) -> None:
        raise Killed

    for step in ("exchange", "_remove"):  # before the swap; after it, while the old copy is being removed
        with monkeypatch.context() as mp:
            mp.setattr(local, step, die)
            with pytest.raises(Killed):
                publish(v2, str(dest))
        _assert_complete(dest)
    assert "v2" in (dest / "d0" / "f0.txt").read_text()  # the swap had happened before the removal died

    def leftovers() -> set[str]:
        return {p.name for p in dest.parent.iterdir() if p.name.startswith(".")}

    killed = leftovers()  # what the simulated kills left beside it (never listed: see below)
    monkeypatch.setattr(local, "exchange", lambda a, b: False)  # a filesystem without RENAME_EXCHANGE
    publish(_tree(tmp_path / "v3", 30, "v3"), str(dest))
    assert "v3" in (dest / "d0" / "f0.txt").read_text() and _assert_complete(dest)
    assert leftovers() == killed  # a republish that is not killed leaves nothing beside it
    with monkeypatch.context() as mp:
        real_rename = os.rename
        mp.setattr(local.os, "rename", lambda a, b: die() if Path(b) == dest else real_rename(a, b))
        with pytest.raises(Killed):  # killed between renaming the old copy aside and the new one in
            publish(_tree(tmp_path / "v4", 30, "v4"), str(dest))
    assert not dest.exists()
    [aside] = [dest.parent / n for n in leftovers() - killed if ".old-" in n]
    assert "v3" in (aside / "d0" / "f0.txt").read_text() and _assert_complete(aside)
    assert published_dirs(str(dest.parent)) == ([], [])  # neither copy is listed; the next publish puts one back


def test_temporary_siblings_are_never_listed(tmp_path: Path) -> None:
    prefix = tmp_path / "ckpts"
    publish(_tree(tmp_path / "a", 3, "a"), str(prefix / "ckpt-a"))
    leftover = prefix / ".ckpt-b.tmp-4242-0a1b2c3d"  # what a killed writer leaves (its manifest included)
    publish(_tree(tmp_path / "b", 3, "b"), str(leftover))
    (prefix / ".ckpt-a.old-77-deadbeef").mkdir()
    (prefix / ".ckpt-a.old-77-deadbeef" / "x").write_text("x")
    (prefix / ".report.json.tmp-5").write_text("{")
    done, incomplete = published_dirs(str(prefix))
    assert [d.name for d in done] == ["ckpt-a"] and incomplete == []
    assert all(not k.startswith(".") for k in list_keys(str(prefix)))


def test_a_failed_stage_output_is_marked_and_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "generations.jsonl").write_text("partial\n")
    (out / "metrics.prom").write_text("safetax_stage_failed 1\n")
    mark_failed(out, "stage generate failed: RuntimeError: CUDA out of memory", keep=["metrics.prom"])
    assert sorted(p.name for p in out.iterdir()) == [FAILED, "metrics.prom"]
    with pytest.raises(StoreError, match="output of a stage that failed \\(stage generate failed: RuntimeError"):
        require_complete(out, "generations")


# -- URIs (their parsing: tests/store/test_uri.py) ----------------------------------------------------

@pytest.mark.parametrize("uri", ["ftp://host/x", "s3://"])
def test_every_store_entry_point_refuses_them(uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    src = _tree(tmp_path / "src", 2, "x")
    calls = [lambda: publish(src, uri), lambda: fetch(uri, "input"), lambda: local_model_dir(uri),
             lambda: check_reachable(uri, "input"), lambda: write_text(f"{uri}/a.json", "{}"),
             lambda: read_text(f"{uri}/a.json"), lambda: list_keys(uri), lambda: parse_uri(uri)]
    for call in calls:
        with pytest.raises(StoreError, match="unknown scheme|no bucket"):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # nothing written under ./ftp:/ or ./s3:/

    ptr = tmp_path / "artifact"
    ptr.mkdir()
    (ptr / "STORE_POINTER.json").write_text(json.dumps({"format": 1, "uri": uri, "digest": "0", "files": 0, "bytes": 0, "kept": []}))
    with pytest.raises(StoreError, match="unknown scheme|no bucket"):
        input_dir(ptr, "generations")


def test_good_uris_still_parse(tmp_path: Path) -> None:
    assert parse_store_uri("s3://safetax-runs/a/b/").key == "a/b"
    assert parse_store_uri(f"file://{tmp_path}").path == tmp_path
    assert parse_store_uri("org/model").path == Path("org/model")  # a hub id is a relative name here
    assert parse_store_uri("runs/demo").path == Path("runs/demo")


# -- two processes, one cache -----------------------------------------------------------------------

_FETCHER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from safetax.store.s3 import S3Settings, S3Store
    endpoint, access, secret, uri, cache, go = sys.argv[1:7]
    store = S3Store(S3Settings(endpoint=endpoint, secure=False, access_key=access, secret_key=secret, region="us-east-1"),
                    retries=1)
    while not Path(go).exists():
        time.sleep(0.002)
    print(store.fetch(uri, Path(cache)))
""")


def test_two_processes_fetch_one_directory_into_one_cache(s3_env, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(60):  # 180 bytes each, as in the report
        (src / f"f{i:02d}.bin").parent.mkdir(parents=True, exist_ok=True)
        (src / f"f{i:02d}.bin").write_bytes(bytes([i]) * 180)
    uri = f"s3://safetax-runs/{uuid.uuid4().hex[:10]}/data"
    publish(src, uri)
    cache, go = tmp_path / "cache", tmp_path / "go"
    args = [s3_env.endpoint.removeprefix("http://"), s3_env.access_key, s3_env.secret_key, uri, str(cache), str(go)]
    procs = [subprocess.Popen([sys.executable, "-c", _FETCHER, *args], env=CHILD_ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(2)]
    time.sleep(3.0)  # both have imported and wait for the start signal
    go.write_text("")
    results = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err.decode()[-2000:]
    paths = {out.decode().strip() for out, _ in results}
    assert len(paths) == 1
    got = Path(paths.pop())
    assert sorted(p.name for p in got.iterdir() if p.name != "COMPLETE") == sorted(p.name for p in src.iterdir())
    assert all((got / p.name).read_bytes() == p.read_bytes() for p in src.iterdir())


# -- a failed stage -----------------------------------------------------------------------------------

def test_a_failed_stage_leaves_only_a_failed_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetax.stages.runtime import RunContext, stage_run

    monkeypatch.delenv("SAFETAX_PUSHGATEWAY", raising=False)  # metrics.prom goes into the output directory
    out = tmp_path / "generations"
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        with stage_run("generate", RunContext("run-1"), out, "lora-r4"):
            out.mkdir()
            (out / "generations.jsonl").write_text('{"response": "partial"}\n')  # a stage that writes in place
            raise RuntimeError("CUDA out of memory\nTried to allocate: a second line that is not kept")
    assert sorted(p.name for p in out.iterdir()) == [FAILED, "metrics.prom"]
    assert (out / FAILED).read_text() == "stage generate failed: RuntimeError: CUDA out of memory\n"
    assert "safetax_stage_failed" in (out / "metrics.prom").read_text()
    with pytest.raises(StoreError, match="output of a stage that failed"):
        input_dir(out, "generations")
    assert [p.name for p in tmp_path.iterdir()] == ["generations"]  # no temporary sibling left


def test_a_failed_publication_fails_the_stage_and_its_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetax.stages.runtime import RunContext, stage_run

    monkeypatch.delenv("SAFETAX_PUSHGATEWAY", raising=False)
    out = tmp_path / "scores"
    with pytest.raises(StoreError, match="unknown scheme 'ftp'"):
        with stage_run("score", RunContext("run-1", store_uri="ftp://host/x"), out, "full"):
            with atomic_dir(out) as tmp:
                (tmp / "scores.json").write_text("[]")
    assert sorted(p.name for p in out.iterdir()) == [FAILED, "metrics.prom"]
    prom = (out / "metrics.prom").read_text()
    assert "safetax_stage_failed{" in prom and "safetax_stage_last_success_timestamp_seconds{" not in prom
