"""``safetax data fetch | upload``: the pinned sources against the shared files, downloads from a loopback
server (never the internet), the layout check, and every option's help.

The files hold harmful prompts: assertions compare digests and counts, never text.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from safetax.benchmarks.gpqa import ZIP_PASSWORD
from safetax.data.benchmark_files import SOURCE_OF, SOURCES, STORE_AS, Source, benchmark_paths, check_layout
from safetax.data.cli import add_parser
from safetax.store import MANIFEST
from safetax.testing.seaweedfs import free_ports

# The copy StrongREJECT is fetched from names its prompt column `meli_query` (see SOURCES).
UPSTREAM_HEADER = {"strongreject/strongreject_dataset.csv": b"category,source,meli_query"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upstream_bytes(src: Source, shared: Path) -> bytes:
    """What the source serves, rebuilt from the shared copy (in memory: GPQA is never written out plain)."""
    path = shared / src.path
    if src.store_as == "gzip":
        return gzip.decompress(path.read_bytes())
    if src.store_as == "encrypted-zip":
        with zipfile.ZipFile(path) as z:
            return z.open(Path(src.file).name, pwd=ZIP_PASSWORD).read()
    data = path.read_bytes()
    if src.header:
        assert data.split(b"\n", 1)[0] == src.header.encode()
        data = UPSTREAM_HEADER[src.path] + data[data.index(b"\n"):]
    return data


def serve_sources(files: dict[str, bytes], shared: Path) -> None:
    for src in SOURCES:
        files[f"/{src.repo}/{src.revision}/{src.file}"] = upstream_bytes(src, shared)


def test_every_benchmark_file_has_one_pinned_source() -> None:
    assert sorted(benchmark_paths()) == sorted(SOURCE_OF) and len(SOURCE_OF) == len(SOURCES)
    for src in SOURCES:
        assert re.fullmatch(r"[0-9a-f]{40}", src.revision) and re.fullmatch(r"[0-9a-f]{64}", src.sha256), src.path
        assert src.store_as in STORE_AS
        assert src.url() == f"https://raw.githubusercontent.com/{src.repo}/{src.revision}/{src.file}"
    assert benchmark_paths(["wildjailbreak-benign", "wildjailbreak", "xstest"]) == {
        "wildjailbreak/wildjailbreak_eval.tsv.gz": ["wildjailbreak-benign", "wildjailbreak"],
        "xstest/xstest_prompts.csv": ["xstest"]}


def test_pinned_digests_match_the_shared_files(shared_data: Path) -> None:
    assert {src.path: sha256(upstream_bytes(src, shared_data)) for src in SOURCES} == {s.path: s.sha256 for s in SOURCES}


def test_fetch_from_a_mirror_rebuilds_the_shared_data(shared_data: Path, tmp_path: Path, data_cli: Callable[..., int],
                                                      http_files: tuple[str, dict[str, bytes]]) -> None:
    base, files = http_files
    serve_sources(files, shared_data)
    assert data_cli("fetch", "--to", str(tmp_path / "data"), "--mirror", base) == 0
    got = tmp_path / "data"
    for src in SOURCES:  # stored as downloaded (header restored): the very bytes of the shared copy
        if src.store_as == "as-is":
            assert sha256((got / src.path).read_bytes()) == sha256((shared_data / src.path).read_bytes()), src.path
    with zipfile.ZipFile(got / "gpqa" / "gpqa_diamond.zip") as z:
        assert [i.flag_bits & 1 for i in z.infolist()] == [1]  # encrypted, as GPQA asks
    assert check_layout(got) == check_layout(shared_data)  # every benchmark loads, with the same counts
    assert sorted(p.relative_to(got).as_posix() for p in got.rglob("*") if p.is_file()) == sorted(SOURCE_OF)


def test_fetch_refuses_a_file_with_another_checksum(tmp_path: Path, data_cli: Callable[..., int],
                                                    http_files: tuple[str, dict[str, bytes]],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    base, files = http_files
    src = SOURCE_OF["xstest/xstest_prompts.csv"]
    files[f"/{src.repo}/{src.revision}/{src.file}"] = b"id,prompt,type,label\n1,placeholder,x,safe\n"
    assert data_cli("fetch", "--to", str(tmp_path), "--benchmark", "xstest", "--mirror", base) == 1
    err = capsys.readouterr().err
    assert f"expected {src.sha256}" in err and "nothing was written" in err
    assert list(tmp_path.iterdir()) == []


def test_fetch_offline_is_one_clear_message(tmp_path: Path, data_cli: Callable[..., int],
                                            capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    (port,) = free_ports(1)  # nothing listens there: what an offline machine sees
    assert data_cli("fetch", "--to", str(tmp_path), "--benchmark", "aime24", "--mirror", f"http://127.0.0.1:{port}") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("safetax data fetch: cannot download aime24/aime24.jsonl from ")
    assert "YihaoXue/lora-safety-reasoning@7950048:lm-evaluation-harness/math_eval_data/aime24/test.jsonl" in err
    assert "safetax data upload DIR s3://bucket/prefix" in err and "SAFETAX_DATA_DIR" in err


def test_upload_names_every_missing_file_first(tmp_path: Path, shared_data: Path, data_cli: Callable[..., int],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "data"
    (src / "xstest").mkdir(parents=True)
    (src / "xstest" / "xstest_prompts.csv").write_bytes((shared_data / "xstest" / "xstest_prompts.csv").read_bytes())
    assert data_cli("upload", str(src), str(tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert f"missing {len(SOURCES) - 1} of {len(SOURCES)} expected file(s)" in err
    assert "aime24/aime24.jsonl (aime24)" in err and "wildjailbreak/wildjailbreak_eval.tsv.gz (wildjailbreak, wildjailbreak-benign)" in err
    assert "xstest/xstest_prompts.csv" not in err and not (tmp_path / "out").exists()
    assert data_cli("upload", str(src), "s3://bucket-only") == 1
    assert "give a prefix inside the bucket, e.g. s3://bucket-only/benchmarks" in capsys.readouterr().err
    assert data_cli("upload", str(src), str(tmp_path / "out"), "--benchmark", "no-such") == 1
    assert "unknown benchmark 'no-such'" in capsys.readouterr().err
    assert data_cli("upload", str(tmp_path / "none"), str(tmp_path / "out")) == 1
    assert f"{tmp_path / 'none'} is not a directory" in capsys.readouterr().err


def test_upload_a_subset_to_a_local_directory(tmp_path: Path, shared_data: Path, data_cli: Callable[..., int],
                                              capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    assert data_cli("upload", str(shared_data), str(out), "--benchmark", "xstest", "--benchmark", "aime24") == 0
    assert capsys.readouterr().out.splitlines() == [
        "aime24: 30 items", "xstest: 450 items", f"published 2 file(s), 0.20 MB to {out}", f"set SAFETAX_DATA_DIR={out}"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "COMPLETE", MANIFEST, "aime24/aime24.jsonl", "xstest/xstest_prompts.csv"]
    from safetax.benchmarks.registry import get_benchmark

    monkeypatch.setenv("SAFETAX_DATA_DIR", str(out))
    assert len(get_benchmark("xstest").load()) == 450


def test_every_option_has_help() -> None:
    parser = argparse.ArgumentParser(prog="safetax")
    data = add_parser(parser.add_subparsers(dest="command"))
    commands = next(a for a in data._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(commands.choices) == ["fetch", "upload"]
    for name, sub in commands.choices.items():
        assert sub.description, name
        for action in sub._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
