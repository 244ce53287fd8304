"""Sample-level resume: a stage writes its finished samples in chunks as it goes, and a rerun continues from them.

The chunks of a stage run live under a URI of their own (a local directory, or an ``s3://`` prefix in the run
store, where a retried pod on another node finds them), in a subdirectory named by the run's *fingerprint*: the
digest of everything the samples depend on (models, eval sets and their items, sampling, backend, chunk size). A
rerun with the same fingerprint reads the chunks that exist and makes only the others; one with another fingerprint
starts over (and removes the stale chunks). Each chunk is written in one step (a local temp file renamed into
place, or one S3 PUT), so a kill leaves whole chunks only. Chunks are fixed by count (:func:`chunk_size`: the stage's
setting, and at most a tenth of its items, so a kill loses at most one chunk: <= 10 % of the work), never by time: a
rerun then batches every remaining chunk exactly as the first run would have, and its outputs are identical to an
uninterrupted run's.

A task that must hold no store credential (the code task, which runs model-written programs) reaches its chunks
through :class:`UrlChunks` instead: one pre-signed URL per chunk and method, made by a task that holds the credential.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from safetax.store.objects import delete, list_keys, read_text, write_text

log = logging.getLogger(__name__)
T = TypeVar("T")
FORMAT = 1


LOSS_SHARE = 10  # a stage's items are cut into at least this many chunks (a kill redoes at most one)


def chunk_size(n: int, limit: int) -> int:
    """Items per chunk for ``n`` items: at most ``limit`` and at most ``ceil(n / 10)``, so that a kill at any point
    redoes at most a tenth of the stage's items; ``limit`` 0 keeps one chunk of all (no resume inside the stage).

    >>> chunk_size(910, 256), chunk_size(50, 128), chunk_size(5000, 256), chunk_size(3, 256), chunk_size(910, 0)
    (91, 5, 256, 1, 0)
    """
    if limit <= 0:
        return 0
    return max(1, min(limit, -(-n // LOSS_SHARE)))


def chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """Consecutive runs of ``size`` items in their order (all of them in one when ``size`` is 0): a stage's chunks.

    >>> list(chunks([1, 2, 3, 4, 5], 2)), list(chunks([1, 2], 0)), list(chunks([], 3))
    ([[1, 2], [3, 4], [5]], [[1, 2]], [])
    """
    step = size or max(len(items), 1)
    for i in range(0, len(items), step):
        yield list(items[i : i + step])


def fingerprint(parts: Any) -> str:
    """The digest of a stage run's inputs (any JSON-able value).

    >>> fingerprint({"a": 1}) == fingerprint({"a": 1}) != fingerprint({"a": 2})
    True
    """
    return hashlib.sha256(json.dumps({"format": FORMAT, "parts": parts}, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class Chunks(Protocol):
    """Where a stage run keeps its finished chunks: :class:`ChunkArea` or :class:`UrlChunks`."""

    def get(self, name: str) -> list[dict[str, Any]] | None: ...

    def write(self, name: str, rows: list[dict[str, Any]]) -> None: ...

    def clear(self) -> None: ...


class ChunkArea:
    """The chunks of one stage run: ``<uri>/<fingerprint[:16]>/<name>.jsonl``, and beside them each attempt's seconds
    up to its last chunk (``attempt-<id>.json``): a retry counts what a killed attempt spent (:meth:`earlier_seconds`)."""

    def __init__(self, uri: str, fingerprint_: str) -> None:
        self.uri = uri.rstrip("/")
        self.run = fingerprint_[:16]
        self.attempt, self._started = uuid.uuid4().hex[:12], time.monotonic()
        stale = [k for k in list_keys(self.uri) if not k.startswith(self.run + "/")]
        for key in stale:
            delete(f"{self.uri}/{key}")
        if stale:
            log.info("resume: removed %d chunk(s) of an earlier run with other inputs", len(stale))
        self.names = {k.split("/", 1)[1].removesuffix(".jsonl") for k in list_keys(self.uri) if k.endswith(".jsonl")}

    def uri_of(self, name: str) -> str:
        """The object (or file) that holds chunk ``name``."""
        return f"{self.uri}/{self.run}/{name}.jsonl"

    def has(self, name: str) -> bool:
        return name in self.names

    def get(self, name: str) -> list[dict[str, Any]] | None:
        """The rows of chunk ``name``, or None when it was not written or is not JSON lines (made again)."""
        if not self.has(name):
            return None
        try:
            return self.read(name)
        except (UnicodeDecodeError, json.JSONDecodeError):
            log.warning("resume: chunk %s is not JSON lines: made again", name)
            return None

    def read(self, name: str) -> list[dict[str, Any]]:
        text = read_text(self.uri_of(name))
        if text is None:
            raise FileNotFoundError(f"resume: chunk {name} vanished from {self.uri}")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def write(self, name: str, rows: list[dict[str, Any]]) -> None:
        write_text(self.uri_of(name), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "application/jsonl")
        self.names.add(name)
        seconds = time.monotonic() - self._started  # this attempt's time so far, kept in case it is killed next
        write_text(f"{self.uri}/{self.run}/attempt-{self.attempt}.json", json.dumps({"seconds": seconds}), "application/json")

    def earlier_seconds(self) -> float:
        """Seconds that earlier attempts of this stage run spent up to their last chunk (0 without a restart)."""
        total = 0.0
        for key in list_keys(self.uri):
            if key.startswith(f"{self.run}/attempt-") and key != f"{self.run}/attempt-{self.attempt}.json":
                try:
                    total += float(json.loads(read_text(f"{self.uri}/{key}") or "{}").get("seconds", 0.0))
                except (ValueError, AttributeError):
                    log.warning("resume: %s is not an attempt record: not counted", key)
        return total

    def clear(self) -> None:
        """Remove every chunk (once the stage's output is written)."""
        for key in list_keys(self.uri):
            delete(f"{self.uri}/{key}")


@dataclass(frozen=True)
class ChunkUrls:
    """Pre-signed URLs of one chunk's object: each allows one method on that object only, until it expires."""

    get: str = field(repr=False)
    put: str = field(repr=False)
    delete: str = field(repr=False)


class UrlChunks:
    """The chunks of a stage run, reached through :class:`ChunkUrls` alone: no credential, no listing, no other object.

    The task that made the URLs (holding the store credential) chose the objects; this side can read, replace and
    remove those and nothing else. A failure to reach them costs the resume, never the stage: a chunk that cannot be
    read is made again, one that cannot be written is logged. Once the store is unreachable or refuses the URLs
    (expired), the remaining chunks are neither read nor kept (one warning, no waiting on each). URLs are never logged.
    """

    def __init__(self, urls: Mapping[str, ChunkUrls], timeout_s: float = 30.0, verify_tls: bool = True) -> None:
        import urllib3

        self.urls = dict(urls)
        self.http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=10, read=timeout_s),
                                        cert_reqs="CERT_REQUIRED" if verify_tls else "CERT_NONE",
                                        retries=urllib3.Retry(total=3, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504),
                                                              allowed_methods=None, raise_on_status=False))
        self.failures = 0  # requests that failed (each logged)
        self.off = ""  # why the store is no longer tried ("" = it is)

    def _request(self, method: str, name: str, body: bytes | None = None) -> tuple[int, bytes]:
        """(HTTP status, body); status 0 when the store was not reached, or is no longer tried."""
        import urllib3

        urls = self.urls.get(name)
        if urls is None:
            raise KeyError(f"resume: chunk {name!r} has no URLs (known: {len(self.urls)} chunk(s))")
        if self.off:
            return 0, b""
        url = {"GET": urls.get, "PUT": urls.put, "DELETE": urls.delete}[method]
        try:
            resp = self.http.request(method, url, body=body, headers={"Content-Type": "application/jsonl"} if body else None)
        except urllib3.exceptions.HTTPError as e:
            self._fail(method, name, f"the store is unreachable ({type(e).__name__})", stop=True)
            return 0, b""
        if resp.status == 403:
            self._fail(method, name, "the store refused the URL (HTTP 403: expired or revoked)", stop=True)
        elif resp.status >= 300 and not (method == "GET" and resp.status == 404):
            self._fail(method, name, f"HTTP {resp.status}", stop=False)
        return resp.status, resp.data

    def _fail(self, method: str, name: str, why: str, stop: bool) -> None:
        self.failures += 1
        if stop:
            self.off = why
        log.warning("resume: %s of chunk %s failed: %s%s", method, name, why,
                    "; the remaining chunks are neither read nor kept" if stop else "")

    def get(self, name: str) -> list[dict[str, Any]] | None:
        status, data = self._request("GET", name)
        if status != 200:
            return None
        try:
            return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
        except (UnicodeDecodeError, json.JSONDecodeError):
            log.warning("resume: chunk %s is not JSON lines: made again", name)
            return None

    def write(self, name: str, rows: list[dict[str, Any]]) -> None:
        self._request("PUT", name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))

    def clear(self) -> None:
        for name in self.urls:
            self._request("DELETE", name)
