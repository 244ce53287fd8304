"""Pre-signed URLs against a real S3 server (SeaweedFS): one method on one object, no credential, until they expire;
and the chunk store built on them (what the code task resumes through)."""

from __future__ import annotations

import time
import uuid

import pytest
import urllib3

from safetax.resume import ChunkUrls, UrlChunks
from safetax.store.local import StoreError
from safetax.store.s3 import PRESIGN_MAX_S, S3Settings, S3Store

HTTP = urllib3.PoolManager(retries=False)  # a plain client: no credential of its own


def _uri() -> str:
    return f"s3://safetax-runs/{uuid.uuid4().hex[:10]}/partial/code/base/00000.jsonl"


def _urls(store: S3Store, uri: str, ttl: int = 600) -> ChunkUrls:
    store.ensure_bucket("safetax-runs")  # a PUT URL writes into an existing bucket
    return ChunkUrls(**{m.lower(): store.presign(m, uri, ttl) for m in ("GET", "PUT", "DELETE")})


def test_each_url_allows_one_method_on_one_object(s3_env) -> None:
    store, uri = S3Store(), _uri()
    urls = _urls(store, uri)
    assert HTTP.request("GET", urls.get).status == 404  # not written yet
    assert HTTP.request("PUT", urls.put, body=b'{"a": 1}\n').status == 200
    assert store.get_bytes(uri) == b'{"a": 1}\n'  # the store sees what the URL wrote
    got = HTTP.request("GET", urls.get)
    assert (got.status, got.data) == (200, b'{"a": 1}\n')
    assert HTTP.request("PUT", urls.get, body=b"forged").status == 403  # the GET URL does not write
    assert HTTP.request("DELETE", urls.put).status == 403  # the PUT URL does not delete
    other = urls.put.replace("/00000.jsonl?", "/00001.jsonl?")  # the signature covers the key
    assert other != urls.put and HTTP.request("PUT", other, body=b"forged").status == 403
    assert store.get_bytes(uri.replace("00000", "00001")) is None
    assert HTTP.request("DELETE", urls.delete).status == 204
    assert store.get_bytes(uri) is None


def test_an_expired_url_is_refused(s3_env) -> None:
    store, uri = S3Store(), _uri()
    store.put_bytes(uri, b"x\n")
    url = store.presign("GET", uri, 1)
    time.sleep(2.5)
    assert HTTP.request("GET", url).status == 403


def test_presign_refuses_what_it_cannot_sign(s3_env) -> None:
    store = S3Store()
    with pytest.raises(ValueError, match="method 'POST' is not one of GET, PUT, DELETE"):
        store.presign("POST", _uri(), 60)
    for bad in (0, PRESIGN_MAX_S + 1, 1.5, True):
        with pytest.raises(ValueError, match="expires_s should be an integer in 1..604800"):
            store.presign("GET", _uri(), bad)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="names a bucket, not an object"):
        store.presign("GET", "s3://safetax-runs", 60)
    anonymous = S3Store(S3Settings(endpoint=store.settings.endpoint, secure=False))
    with pytest.raises(StoreError, match="no credentials to sign a URL"):
        anonymous.presign("GET", _uri(), 60)


def test_url_chunks_round_trip_and_lose_only_the_resume_on_failure(s3_env) -> None:
    store, uri = S3Store(), _uri()
    chunks = UrlChunks({"00000": _urls(store, uri)})
    assert chunks.get("00000") is None and chunks.failures == 0  # not written: no failure
    chunks.write("00000", [{"value": 1.0, "reason": "r"}])
    assert chunks.get("00000") == [{"value": 1.0, "reason": "r"}]
    chunks.clear()
    assert store.get_bytes(uri) is None and chunks.get("00000") is None
    with pytest.raises(KeyError, match="chunk '00001' has no URLs"):
        chunks.get("00001")

    expired = UrlChunks({"00000": _urls(store, uri, ttl=1), "00001": _urls(store, uri.replace("00000", "00001"))})
    time.sleep(2.5)
    expired.write("00000", [{"value": 1.0}])  # refused (403): logged, not raised; the store is not tried again
    assert expired.off.startswith("the store refused the URL") and store.get_bytes(uri) is None
    expired.write("00001", [{"value": 1.0}])  # a valid URL, but no longer tried
    assert expired.get("00000") is None and expired.failures == 1
    assert store.get_bytes(uri.replace("00000", "00001")) is None
    port = urllib3.util.parse_url(store.presign("GET", uri, 60)).port
    dead = ChunkUrls(*(u.replace(f":{port}/", ":9/") for u in (store.presign(m, uri, 60) for m in ("GET", "PUT", "DELETE"))))
    gone = UrlChunks({"00000": dead}, timeout_s=2)
    assert gone.get("00000") is None and gone.off.startswith("the store is unreachable")  # the chunk is made again
    start = time.perf_counter()
    gone.write("00000", [{"value": 1.0}])
    gone.clear()
    assert gone.failures == 1 and time.perf_counter() - start < 0.1  # no waiting on each chunk
