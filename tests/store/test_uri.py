"""Store URIs that are slightly wrong are errors naming the parameter and the expected form, never local paths (on a
cluster a local path is the pod's own disk: every output written there is lost with the pod)."""

from __future__ import annotations

from pathlib import Path

import pytest

from safetax.store import StoreError, fetch, publish
from safetax.store.uri import parse_store_uri


@pytest.mark.parametrize(("uri", "needle"), [
    (" s3://safetax/runs", "has whitespace around it"),
    ("s3://safetax/runs\n", "has whitespace around it"),
    ("\truns/x", "has whitespace around it"),
    ("s3:safetax/runs", "is not a valid s3:// URI; expected s3://bucket/prefix, e.g. s3://safetax/runs"),
    ("S3:safetax/runs", "is not a valid s3:// URI"),
    ("s3:/x", "is not a valid s3:// URI"),
    ("S3://safetax/runs", "is not a valid s3:// URI"),
    ("file:runs/x", "is not a valid file:// URI"),
    ("https:minio/runs", "unknown scheme 'https'"),
    ("ftp://host/x", "store_uri: 'ftp://host/x' has an unknown scheme 'ftp'; expected a local path, file:///path or s3://bucket/prefix"),
    ("s3://", "store_uri: 's3://' has no bucket; expected s3://bucket/prefix"),
    ("s3:///runs", "has no bucket"),
    ("s3:/bucket/runs", "is not a valid s3:// URI"),
    ("http://minio:9000/runs", "unknown scheme 'http'"),
    ("s3://My_Bucket/runs", "'My_Bucket' is not a valid bucket name"),
    ("file://", "is not a valid file:// URI"),
    ("", "is empty"),
])
def test_bad_uris_are_errors_naming_the_parameter(uri: str, needle: str) -> None:
    with pytest.raises(StoreError) as e:
        parse_store_uri(uri, "store_uri")
    assert str(e.value).startswith(f"store_uri: {uri!r}") and needle in str(e.value)


@pytest.mark.parametrize("uri", [" s3://safetax/runs", "s3:safetax/runs"])
def test_store_entry_points_write_nothing_locally_for_them(uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    for call in (lambda: publish(src, uri), lambda: fetch(uri, "input")):
        with pytest.raises(StoreError, match="whitespace|not a valid s3"):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_local_names_with_colons_after_the_first_part_are_still_paths() -> None:
    assert parse_store_uri("runs/s3:x").path == Path("runs/s3:x")
    assert parse_store_uri("my s3 runs/x").path == Path("my s3 runs/x")  # spaces inside a path are the user's to choose
