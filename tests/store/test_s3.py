"""The artifact store against a real S3 server (SeaweedFS on loopback)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch

from safetax.store import MANIFEST, StoreError, fetch, publish, resolve_model
from safetax.store.manifest import sha256_file
from safetax.store.s3 import S3Settings, S3Store, parse_uri


def _uri(bucket: str = "safetax-runs") -> str:
    return f"s3://{bucket}/{uuid.uuid4().hex[:10]}"


def _store(server, **kw) -> S3Store:
    return S3Store(S3Settings(endpoint=server.endpoint.removeprefix("http://"), secure=False, access_key=server.access_key,
                              secret_key=server.secret_key, region="us-east-1"), **kw)


def _random_file(path: Path, size: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(torch.randint(0, 256, (size,), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8).numpy().tobytes())
    return path


def test_model_directory_round_trip(s3_env, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("SAFETAX_CACHE", str(tmp_path / "cache"))
    uri = _uri() + "/models/tiny"
    manifest = publish(tiny_model, uri)
    assert {f.path for f in manifest.files} >= {"config.json", "model.safetensors", "tokenizer.json"}
    local = Path(resolve_model(uri))
    assert local.is_relative_to(tmp_path / "cache")
    for f in manifest.files:
        assert sha256_file(local / f.path) == sha256_file(tiny_model / f.path)
    a, b = AutoModelForCausalLM.from_pretrained(tiny_model), AutoModelForCausalLM.from_pretrained(local)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert resolve_model(uri) == str(local)  # the second fetch is served from the cache


def test_large_file_goes_up_in_multipart_parts(s3_server, tmp_path: Path) -> None:
    store = _store(s3_server)
    src = _random_file(tmp_path / "src" / "big.bin", 21 * 1024 * 1024)
    uri = _uri()
    m = store.publish(src.parent, uri)
    bucket, prefix = parse_uri(uri)
    etag = store.client.stat_object(bucket, f"{prefix}/{m.files[0].key}").etag
    assert "-" in etag and int(etag.rsplit("-", 1)[1]) >= 3  # a multipart ETag: "<md5 of md5s>-<parts>"
    got = store.fetch(uri, tmp_path / "cache")
    assert sha256_file(got / "big.bin") == sha256_file(src)


def test_wrong_credentials_error_names_the_variables_not_the_secret(s3_server, tmp_path: Path) -> None:
    secret = "not-the-right-secret-4711"
    bad = S3Store(S3Settings(endpoint=s3_server.endpoint.removeprefix("http://"), secure=False,
                             access_key=s3_server.access_key, secret_key=secret, region="us-east-1"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_text("x")
    with pytest.raises(StoreError) as err:
        bad.publish(tmp_path / "d", _uri())
    msg = str(err.value)
    assert "access denied" in msg and "SAFETAX_S3_SECRET_KEY" in msg
    assert secret not in msg and s3_server.access_key not in msg
    assert secret not in repr(bad.settings)


_KILLED_WRITER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from safetax.store.s3 import S3Settings, S3Store
    endpoint, access, secret, src, uri = sys.argv[1:6]
    store = S3Store(S3Settings(endpoint=endpoint, secure=False, access_key=access, secret_key=secret, region="us-east-1"))
    sent = 0
    def die_after_first_part(n):
        global sent
        sent += n
        if sent >= store.part_size:
            os._exit(17)  # the writer is killed between multipart parts
    store.publish(Path(src), uri, on_bytes=die_after_first_part)
""")


def test_reader_never_sees_a_half_written_upload(s3_server, tmp_path: Path) -> None:
    store = _store(s3_server)
    uri = _uri()
    v1 = tmp_path / "v1"
    (v1 / "weights").mkdir(parents=True)
    (v1 / "weights" / "a.txt").write_text("version 1")
    store.publish(v1, uri)

    v2 = tmp_path / "v2"
    (v2 / "weights").mkdir(parents=True)
    (v2 / "weights" / "a.txt").write_text("version 2")
    _random_file(v2 / "weights" / "b.bin", 20 * 1024 * 1024)
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, s3_server.endpoint.removeprefix("http://"),
                           s3_server.access_key, s3_server.secret_key, str(v2), uri], capture_output=True, timeout=120)
    assert proc.returncode == 17, proc.stderr.decode()[-2000:]

    # Some of v2 is in the bucket, but no manifest names it: readers still see exactly v1.
    bucket, prefix = parse_uri(uri)
    raw = [o.object_name for o in store.client.list_objects(bucket, prefix=prefix + "/", recursive=True)]
    assert any(name.endswith("weights/a.txt") for name in raw) and len(raw) > 2
    assert store.list(uri) == ["weights/a.txt"]
    got = store.fetch(uri, tmp_path / "cache")
    assert (got / "weights" / "a.txt").read_text() == "version 1" and not (got / "weights" / "b.bin").exists()

    # A prefix whose first upload died has nothing to read at all.
    fresh = _uri()
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, s3_server.endpoint.removeprefix("http://"),
                           s3_server.access_key, s3_server.secret_key, str(v2), fresh], capture_output=True, timeout=120)
    assert proc.returncode == 17
    assert store.list(fresh) == [] and store.manifest(fresh) is None
    with pytest.raises(StoreError, match=f"neither a published directory \\(no {MANIFEST}\\) nor an object"):
        store.fetch(fresh, tmp_path / "cache2")


def test_interrupted_download_resumes(s3_server, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = _store(s3_server)
    src = _random_file(tmp_path / "src" / "shard.bin", 12 * 1024 * 1024, seed=1)
    uri = _uri()
    m = store.publish(src.parent, uri)
    entry = m.files[0]
    cache = tmp_path / "cache"
    part = cache / "blobs" / entry.sha256[:2] / f".{entry.sha256}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(src.read_bytes()[: 5 * 1024 * 1024])  # what a download killed half-way leaves
    with caplog.at_level(logging.INFO, logger="safetax.store.s3"):
        got = store.fetch(uri, cache)
    assert f"resuming download at byte {5 * 1024 * 1024} of {entry.size}" in caplog.text
    assert sha256_file(got / "shard.bin") == entry.sha256 and not part.exists()


def test_corrupt_partial_download_is_discarded(s3_server, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = _store(s3_server)
    src = _random_file(tmp_path / "src" / "shard.bin", 3 * 1024 * 1024, seed=2)
    m = store.publish(src.parent, uri := _uri())
    entry = m.files[0]
    part = tmp_path / "cache" / "blobs" / entry.sha256[:2] / f".{entry.sha256}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 1024)  # not a prefix of the real content
    with caplog.at_level(logging.WARNING):
        got = store.fetch(uri, tmp_path / "cache")
    assert "sha256 mismatch" in caplog.text
    assert sha256_file(got / "shard.bin") == entry.sha256


def test_plain_objects_as_benchmark_and_refusal_data(s3_env, tmp_path: Path, refusal_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's data files put in a bucket by hand (no manifest) load like local ones: issue 3's s3:// inputs."""
    from safetax.benchmarks.registry import get_benchmark
    from safetax.data.refusal_sets import load_refusal_rows

    monkeypatch.setenv("SAFETAX_CACHE", str(tmp_path / "cache"))
    store = S3Store()
    bucket, prefix = parse_uri(_uri())
    store.ensure_bucket(bucket)
    data = Path(__file__).resolve().parents[3] / "shared" / "data"
    xstest = data / "xstest" / "xstest_prompts.csv"
    for name, path in (("refusals.jsonl", refusal_file), (xstest.name, xstest)):
        store.client.fput_object(bucket, f"{prefix}/{name}", str(path))
    rows = load_refusal_rows(fetch(f"s3://{bucket}/{prefix}/refusals.jsonl", "refusal_uri"))
    assert rows == load_refusal_rows(refusal_file)
    bench = get_benchmark("xstest")
    from_s3 = bench.load(f"s3://{bucket}/{prefix}/{xstest.name}", 0)
    assert [i.id for i in from_s3] == [i.id for i in bench.load(str(xstest), 0)] and len(from_s3) == 450
    with pytest.raises(StoreError, match="refusal_uri: s3://.*missing.jsonl is neither"):
        fetch(f"s3://{bucket}/{prefix}/missing.jsonl", "refusal_uri")


def test_transient_errors_are_retried_then_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from safetax.testing.seaweedfs import free_ports

    (port,) = free_ports(1)  # nothing listens there
    store = S3Store(S3Settings(endpoint=f"127.0.0.1:{port}", secure=False, access_key="k", secret_key="s3cr3t-value"),
                    retries=3, backoff_s=0.01)
    with caplog.at_level(logging.WARNING), pytest.raises(StoreError, match="unreachable after 3 attempt") as err:
        store.manifest("s3://bucket/prefix")
    assert caplog.text.count("retry") == 2 and "s3cr3t-value" not in str(err.value) + caplog.text


def test_local_publish_writes_a_manifest(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.txt").write_text("data")
    m = publish(src, f"file://{tmp_path / 'out'}")
    assert (tmp_path / "out" / MANIFEST).is_file() and (tmp_path / "out" / "COMPLETE").is_file()
    assert [(f.path, f.key, f.size) for f in m.files] == [("sub/f.txt", "sub/f.txt", 4)]


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.startswith(("SAFETAX_S3_", "AWS_")):
            monkeypatch.delenv(k)
    monkeypatch.setenv("SAFETAX_S3_ENDPOINT", "http://minio-service.kubeflow:9000/")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fallback")
    s = S3Settings.from_env()
    assert (s.endpoint, s.secure, s.secret_key, s.access_key) == ("minio-service.kubeflow:9000", False, "fallback", None)
    assert "fallback" not in repr(s)
    with pytest.raises(StoreError, match="has no bucket"):
        parse_uri("s3:///key")


def test_a_file_of_a_published_directory(s3_server, tmp_path: Path) -> None:
    store = _store(s3_server)
    src = tmp_path / "data"
    (src / "evals").mkdir(parents=True)
    (src / "evals" / "arith.jsonl").write_text('{"q": 1}\n')
    store.publish(src, uri := _uri())
    got = store.fetch(f"{uri}/evals/arith.jsonl", tmp_path / "cache")
    assert got.name == "arith.jsonl" and got.read_text() == '{"q": 1}\n'
    with pytest.raises(StoreError, match="neither"):
        store.fetch(f"{uri}/evals/other.jsonl", tmp_path / "cache")
