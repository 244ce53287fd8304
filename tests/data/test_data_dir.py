"""SAFETAX_DATA_DIR as an s3:// prefix on a real S3 server: seeded with ``safetax data upload``, read
through the store, each file downloaded once and then served from the digest cache."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from safetax.benchmarks.registry import BenchmarkDataError, get_benchmark
from safetax.store.s3 import S3Store


def test_benchmarks_load_from_an_s3_data_dir_once(s3_env, shared_data: Path, tmp_path: Path, data_cli: Callable[..., int],
                                                  monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SAFETAX_CACHE", str(tmp_path / "cache"))
    uri = f"s3://safetax-data/{uuid.uuid4().hex[:10]}/benchmarks"
    assert data_cli("upload", str(shared_data), uri, "--benchmark", "xstest", "--benchmark", "aime24") == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"set SAFETAX_DATA_DIR={uri}"

    downloads: list[str] = []
    real = S3Store._download

    def counting(self: S3Store, bucket: str, key: str, part: Path, size: int) -> Path:
        downloads.append(key)
        return real(self, bucket, key, part, size)

    monkeypatch.setattr(S3Store, "_download", counting)
    monkeypatch.setenv("SAFETAX_DATA_DIR", uri + "/")
    for name in ("xstest", "aime24"):
        bench = get_benchmark(name)
        local = bench.load(str(shared_data / bench.default_path))
        first, again = bench.load(), get_benchmark(name).load()
        assert len(first) == len(again) == len(local) == {"xstest": 450, "aime24": 30}[name]
        assert [it.id for it in first] == [it.id for it in local]
    assert len(downloads) == 2 and all(k.endswith(("xstest_prompts.csv", "aime24.jsonl")) for k in downloads)

    with pytest.raises(BenchmarkDataError, match=rf"math500: cannot read {uri}/math500/math500.jsonl \(SAFETAX_DATA_DIR={uri}/, "
                                                 r"expected <SAFETAX_DATA_DIR>/math500/math500.jsonl\)"):
        get_benchmark("math500").load()
