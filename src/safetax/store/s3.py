"""``s3://bucket/prefix`` on MinIO or any S3 API, through the ``minio`` client.

Connection settings come from the environment (the Helm chart fills them from a
Kubernetes Secret): ``SAFETAX_S3_ENDPOINT`` (``http://host:port``, ``https://...``
or ``host:port``; default ``s3.amazonaws.com``), ``SAFETAX_S3_ACCESS_KEY``,
``SAFETAX_S3_SECRET_KEY``, ``SAFETAX_S3_REGION`` and, for a self-signed endpoint,
``SAFETAX_S3_INSECURE=1``. The ``AWS_*`` names are read as fallbacks.

Publishing a directory to ``s3://b/p`` uploads every file under a fresh upload id
(``p/<upload-id>/<path>``, large files in 8 MiB multipart parts) and then writes
``p/MANIFEST.json`` with each file's key, sha256 and size. The manifest is the
commit point: a reader lists and downloads only what it names, so a writer that
dies half-way leaves nothing a reader can see, and a republish replaces the
manifest in one PUT. Downloads resume from a partial file, are checked against
the manifest, and are cached by digest. Transient errors are retried with
exponential backoff; credentials never appear in logs or errors.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from safetax.store.local import COMPLETE, StoreError, atomic_dir, file_lock
from safetax.store.manifest import MANIFEST, FileEntry, Manifest, ManifestError, sha256_file
from safetax.store.uri import parse_store_uri
from safetax.timing import progress_bar

log = logging.getLogger(__name__)
T = TypeVar("T")
PART_SIZE = 8 << 20
_RETRYABLE_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "ServerError", "OperationAborted"}
_CONDITION_FAILED = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "NoSuchObject"}
_CONDITIONAL_OK: set[tuple[str, str]] = set()  # (endpoint, bucket) that passed the conditional-write probe
_AUTH_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
PRESIGN_METHODS = ("GET", "PUT", "DELETE")
PRESIGN_MAX_S = 7 * 86400  # SigV4 query signatures are valid for at most 7 days


def parse_uri(uri: str, what: str = "URI") -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix").

    >>> parse_uri("s3://runs/demo/train/")
    ('runs', 'demo/train')
    """
    parsed = parse_store_uri(uri, what)
    if not parsed.is_s3:
        raise StoreError(f"{what}: {uri!r} is not an s3:// URI; expected s3://bucket/prefix")
    return parsed.bucket, parsed.key


def _env(*names: str) -> str | None:
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    return None


@dataclass(frozen=True)
class S3Settings:
    endpoint: str = "s3.amazonaws.com"
    secure: bool = True
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    region: str | None = None
    cert_check: bool = True

    @classmethod
    def from_env(cls) -> S3Settings:
        raw = _env("SAFETAX_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL") or "https://s3.amazonaws.com"
        secure = not raw.startswith("http://")
        endpoint = raw.removeprefix("http://").removeprefix("https://").rstrip("/")
        return cls(
            endpoint=endpoint,
            secure=secure,
            access_key=_env("SAFETAX_S3_ACCESS_KEY", "AWS_ACCESS_KEY_ID"),
            secret_key=_env("SAFETAX_S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY"),
            region=_env("SAFETAX_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
            cert_check=os.environ.get("SAFETAX_S3_INSECURE", "") not in ("1", "true"),
        )

    def redact(self, text: str) -> str:
        """``text`` with the credentials blanked, for any message that could echo them."""
        for secret in (self.secret_key, self.access_key):
            if secret:
                text = text.replace(secret, "***")
        return text


class _Progress:
    """The progress protocol of the minio client (``set_meta``/``update``), forwarding byte counts."""

    def __init__(self, on_bytes: Callable[[int], None]) -> None:
        self.on_bytes = on_bytes

    def set_meta(self, object_name: str, total_length: int) -> None:
        pass

    def update(self, size: int) -> None:
        self.on_bytes(size)


class S3Store:
    """Publish and fetch directories and files under ``s3://`` URIs."""

    def __init__(self, settings: S3Settings | None = None, retries: int = 5, backoff_s: float = 0.5, part_size: int = PART_SIZE) -> None:
        import urllib3
        from minio import Minio

        self.settings = settings or S3Settings.from_env()
        self.retries, self.backoff_s, self.part_size = retries, backoff_s, part_size
        s = self.settings
        # Our own retry loop (below) handles transient errors; the pool only times out.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=10, read=300), retries=urllib3.Retry(total=0, redirect=0), maxsize=8,
            cert_reqs="CERT_REQUIRED" if s.cert_check else "CERT_NONE",
        )
        self.client = Minio(s.endpoint, access_key=s.access_key, secret_key=s.secret_key, secure=s.secure,
                            region=s.region, http_client=http, cert_check=s.cert_check)

    # -- errors and retries -------------------------------------------------------------
    def _call(self, what: str, uri: str, fn: Callable[[], T]) -> T:
        from minio.error import S3Error, ServerError
        from urllib3.exceptions import HTTPError

        for attempt in range(1, self.retries + 1):
            try:
                return fn()
            except S3Error as e:
                if e.code in _AUTH_CODES:
                    raise StoreError(
                        f"{what} {uri}: access denied by {self.settings.endpoint} ({e.code}); check the credentials in "
                        "SAFETAX_S3_ACCESS_KEY / SAFETAX_S3_SECRET_KEY (values not shown)"
                    ) from None
                if e.code == "NoSuchBucket":
                    raise StoreError(f"{what} {uri}: bucket does not exist on {self.settings.endpoint}") from None
                if e.code not in _RETRYABLE_CODES or attempt == self.retries:
                    raise StoreError(self.settings.redact(f"{what} {uri}: {e.code}: {e.message}")) from None
                reason = e.code
            except (ServerError, HTTPError, ConnectionError, TimeoutError) as e:
                if attempt == self.retries:
                    raise StoreError(self.settings.redact(
                        f"{what} {uri}: {self.settings.endpoint} unreachable after {attempt} attempt(s): {type(e).__name__}: {e}"
                    )) from None
                reason = type(e).__name__
            delay = self.backoff_s * 2 ** (attempt - 1)
            log.warning("%s %s: %s, retry %d/%d in %.1fs", what, uri, reason, attempt, self.retries - 1, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")

    # -- publishing -----------------------------------------------------------------------
    def ensure_bucket(self, bucket: str) -> None:
        uri = f"s3://{bucket}"
        if not self._call("checking bucket", uri, lambda: self.client.bucket_exists(bucket)):
            self._call("creating bucket", uri, lambda: self.client.make_bucket(bucket))

    def publish(self, local_dir: Path, uri: str, on_bytes: Callable[[int], None] | None = None) -> Manifest:
        """Upload every file of ``local_dir`` under ``uri``, then its manifest (the commit point)."""
        bucket, prefix = parse_uri(uri)
        if not Path(local_dir).is_dir():
            raise StoreError(f"publish: {local_dir} is not a directory")
        upload_id = f"u{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        manifest = Manifest.of_dir(Path(local_dir), upload_id)
        self.ensure_bucket(bucket)
        start = time.perf_counter()
        with progress_bar(manifest.total_bytes, f"upload {uri}", unit="B") as bar:
            def count(n: int) -> None:
                bar.update(n)
                if on_bytes is not None:
                    on_bytes(n)

            for f in manifest.files:
                key = _join(prefix, f.key)
                self._call("uploading", f"s3://{bucket}/{key}", lambda f=f, key=key: self.client.fput_object(
                    bucket, key, str(Path(local_dir) / f.path), part_size=self.part_size, progress=_Progress(count)))
        data = manifest.to_json().encode()
        self._call("publishing manifest", uri, lambda: self.client.put_object(
            bucket, _join(prefix, MANIFEST), io.BytesIO(data), len(data), content_type="application/json"))
        log.info("published %d file(s), %.1f MB to %s in %.2fs", len(manifest.files), manifest.total_bytes / 1e6, uri,
                 time.perf_counter() - start)
        return manifest

    # -- reading --------------------------------------------------------------------------
    def get_bytes(self, uri: str, what: str = "reading") -> bytes | None:
        """One object's content, or None when there is no such object."""
        got = self.get_versioned(uri, what)
        return None if got is None else got[0]

    def put_bytes(self, uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Create or replace one object in one PUT (creating the bucket if needed)."""
        bucket, key = parse_uri(uri)
        self.ensure_bucket(bucket)
        self._call("writing", uri, lambda: self.client.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type))

    def get_versioned(self, uri: str, what: str = "reading") -> tuple[bytes, str] | None:
        """One object's content and ETag, or None when there is no such object."""
        from minio.error import S3Error

        bucket, key = parse_uri(uri)

        def get() -> tuple[bytes, str] | None:
            try:
                resp = self.client.get_object(bucket, key)
            except S3Error as e:
                if e.code in ("NoSuchKey", "NoSuchObject"):
                    return None
                raise
            try:
                return resp.read(), resp.headers.get("ETag", "").strip('"')
            finally:
                resp.close()
                resp.release_conn()

        return self._call(what, uri, get)

    def put_if(self, uri: str, data: bytes, etag: str | None = None, content_type: str = "application/json") -> str | None:
        """One conditional PUT: with ``etag`` None, create the object only if there is none (``If-None-Match: *``);
        else replace it only while its ETag is ``etag`` (``If-Match``). Returns the new ETag, or None when the
        condition failed (another writer was first). The bucket must exist."""
        from minio.error import S3Error

        bucket, key = parse_uri(uri)
        headers = {"Content-Type": content_type, "If-None-Match": "*"} if etag is None else \
            {"Content-Type": content_type, "If-Match": f'"{etag}"'}

        def put() -> str | None:
            try:  # the public put_object sends unknown headers as user metadata: the raw PutObject call
                return str(self.client._put_object(bucket, key, data, headers).etag)
            except S3Error as e:
                if e.code in _CONDITION_FAILED:
                    return None
                raise

        return self._call("writing (conditional)", uri, put)

    def delete(self, uri: str) -> None:
        """Remove one object (no error when there is none)."""
        bucket, key = parse_uri(uri)
        self._call("deleting", uri, lambda: self.client.remove_object(bucket, key))

    def presign(self, method: str, uri: str, expires_s: int) -> str:
        """A URL that allows one kind of request (``GET``, ``PUT`` or ``DELETE``) on the one object ``uri`` for
        ``expires_s`` seconds (1 .. 7 days, SigV4's limit), to whoever holds it, with no credential of its own.

        The URL is a capability: never log it. The signature covers the method, the bucket and the key, so it
        reaches no other object and allows no other request; the server refuses it once expired. A PUT needs the
        bucket to exist (:meth:`ensure_bucket`)."""
        from datetime import timedelta

        if method not in PRESIGN_METHODS:
            raise ValueError(f"presign: method {method!r} is not one of {', '.join(PRESIGN_METHODS)}")
        if isinstance(expires_s, bool) or not isinstance(expires_s, int) or not 1 <= expires_s <= PRESIGN_MAX_S:
            raise ValueError(f"presign: expires_s should be an integer in 1..{PRESIGN_MAX_S} (seconds), got {expires_s!r}")
        bucket, key = parse_uri(uri)
        if not key:
            raise StoreError(f"presign: {uri} names a bucket, not an object")
        if not (self.settings.access_key and self.settings.secret_key):
            raise StoreError(f"presign: no credentials to sign a URL for {uri} with (SAFETAX_S3_ACCESS_KEY / SAFETAX_S3_SECRET_KEY)")
        return self._call("signing a URL for", uri, lambda: self.client.get_presigned_url(
            method, bucket, key, expires=timedelta(seconds=expires_s)))

    def require_conditional_writes(self, uri: str) -> None:
        """Raise a StoreError unless the server honours ``If-None-Match`` on PUT (checked once per process,
        endpoint and bucket, with a probe object beside ``uri``): a server that ignores it would let two
        writers both win."""
        bucket, key = parse_uri(uri)
        ident = (self.settings.endpoint, bucket)
        if ident in _CONDITIONAL_OK:
            return
        probe = f"s3://{bucket}/{_join(key.rpartition('/')[0], f'.probe-{uuid.uuid4().hex}')}"
        try:
            first, second = self.put_if(probe, b"1"), self.put_if(probe, b"2")
        finally:
            self.delete(probe)
        if first is None or second is not None:
            raise StoreError(f"{uri}: s3://{bucket} on {self.settings.endpoint} does not honour conditional writes "
                             "(PUT with If-None-Match: *), which audit claims need; use a store that does "
                             "(AWS S3, MinIO, SeaweedFS 4.x: tested)")
        _CONDITIONAL_OK.add(ident)

    def keys(self, uri: str) -> list[str] | None:
        """Every object key under ``uri`` (recursive), relative to it; None when the bucket does not exist."""
        bucket, prefix = parse_uri(uri)
        if not self._call("checking bucket", uri, lambda: self.client.bucket_exists(bucket)):
            return None
        start = f"{prefix}/" if prefix else ""
        names = self._call("listing", uri, lambda: [o.object_name for o in self.client.list_objects(bucket, prefix=start, recursive=True)])
        return [n[len(start):] for n in names if not n.endswith("/")]

    def manifest(self, uri: str) -> Manifest | None:
        """The manifest published at ``uri``, or None when there is none (nothing complete there)."""
        text = self.get_bytes(f"{uri.rstrip('/')}/{MANIFEST}", "reading manifest")
        return None if text is None else Manifest.from_json(text, f"{uri}/{MANIFEST}")

    def list(self, uri: str) -> list[str]:
        """The paths a reader may see under ``uri``: those of its manifest (none while an upload is in flight)."""
        m = self.manifest(uri)
        return [f.path for f in m.files] if m else []

    def fetch(self, uri: str, cache: Path, what: str = "input") -> Path:
        """A local path for ``uri``: a published directory (by manifest) or a single object, cached by digest."""
        m = self.manifest(uri)
        if m is not None:
            return self._fetch_dir(uri, m, cache)
        return self._fetch_object(uri, cache, what)

    def check(self, uri: str, what: str) -> None:
        """Raise a StoreError naming ``what`` unless ``uri`` is a published directory, an object or a file
        of a published directory (small GETs and a HEAD; nothing is downloaded)."""
        try:
            if self.manifest(uri) is not None or self._stat(uri) is not None or self._published_entry(uri) is not None:
                return
        except StoreError as e:
            raise StoreError(f"{what}: {e}") from None
        raise StoreError(f"{what}: {uri} is neither a published directory (no {MANIFEST}) nor an object")

    def fetch_published(self, uri: str, digest: str, cache: Path, what: str, only: Sequence[str] | None = None) -> Path:
        """The published directory at ``uri``, whose manifest must have ``digest`` (what a store pointer
        names). With ``only`` (paths or directory prefixes), just those files, in a directory shared by
        every subset of the same content; each file is checked against the manifest."""
        m = self.manifest(uri)
        if m is None:
            raise StoreError(f"{what}: {uri} has no {MANIFEST}: the published output is gone")
        if m.digest != digest:
            raise StoreError(f"{what}: {uri} was republished with other content since the pointer was written "
                             f"(manifest digest {m.digest[:12]}..., the pointer's {digest[:12]}...)")
        if only is None or (cache / "dirs" / m.digest / COMPLETE).is_file():
            return self._fetch_dir(uri, m, cache)
        return self._fetch_files(uri, m, cache, only)

    def _published_entry(self, uri: str) -> tuple[str, FileEntry] | None:
        """(parent prefix, entry) of a file inside a published directory (``s3://b/run/data/x.jsonl``
        with ``s3://b/run/data/MANIFEST.json``), or None."""
        bucket, key = parse_uri(uri)
        parts = key.split("/")
        for cut in range(len(parts) - 1, 0, -1):
            parent, rel = "/".join(parts[:cut]), "/".join(parts[cut:])
            m = self.manifest(f"s3://{bucket}/{parent}")
            if m is None:
                continue
            entry = next((f for f in m.files if f.path == rel), None)
            return None if entry is None else (parent, entry)
        return None

    def _fetch_published_file(self, uri: str, cache: Path) -> Path | None:
        """A file inside a published directory, cached by digest under its own name (loaders go by suffix)."""
        found = self._published_entry(uri)
        if found is None:
            return None
        parent, entry = found
        bucket, _ = parse_uri(uri)
        blob = self._blob(f"s3://{bucket}/{_join(parent, entry.key)}", entry.sha256, entry.size, cache)
        final = cache / "files" / entry.sha256 / Path(entry.path).name
        if not final.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            _place(blob, final)
        return final

    def _fetch_dir(self, uri: str, m: Manifest, cache: Path) -> Path:
        final = cache / "dirs" / m.digest
        if (final / COMPLETE).is_file():
            log.info("%s: cached at %s", uri, final)
            return final
        with file_lock(_lock_of(cache, final)):  # one process fills a cache entry; the others wait, then reuse it
            if (final / COMPLETE).is_file():
                log.info("%s: cached at %s (fetched by another process)", uri, final)
                return final
            return self._fill_dir(uri, m, final, cache)

    def _fill_dir(self, uri: str, m: Manifest, final: Path, cache: Path) -> Path:
        bucket, prefix = parse_uri(uri)
        start = time.perf_counter()
        with atomic_dir(final) as tmp:
            for f in m.files:
                blob = self._blob(f"s3://{bucket}/{_join(prefix, f.key)}", f.sha256, f.size, cache)
                dest = tmp / f.path
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(blob, dest)
                except OSError:
                    shutil.copyfile(blob, dest)
        log.info("fetched %s (%d files, %.1f MB) in %.2fs", uri, len(m.files), m.total_bytes / 1e6, time.perf_counter() - start)
        return final

    def _fetch_files(self, uri: str, m: Manifest, cache: Path, only: Sequence[str]) -> Path:
        """The files of ``m`` that ``only`` selects, placed one by one (each atomically) in ``parts/<digest>``."""
        root = cache / "parts" / m.digest
        bucket, prefix = parse_uri(uri)
        chosen = [f for f in m.files if selected(f.path, only)]
        start = time.perf_counter()
        for f in chosen:
            dest = root / f.path
            if dest.is_file():  # placed earlier from a verified blob
                continue
            blob = self._blob(f"s3://{bucket}/{_join(prefix, f.key)}", f.sha256, f.size, cache)
            dest.parent.mkdir(parents=True, exist_ok=True)
            _place(blob, dest)
        # The marker says what it says for a full copy: these files belong to a complete published output.
        (root / COMPLETE).write_text("")
        log.info("fetched %d of %d file(s) of %s (%.1f MB) in %.2fs", len(chosen), len(m.files), uri,
                 sum(f.size for f in chosen) / 1e6, time.perf_counter() - start)
        return root

    def _stat(self, uri: str) -> Any:
        """The object's metadata, or None when there is no such object (or the URI names a bucket)."""
        from minio.error import S3Error

        bucket, key = parse_uri(uri)

        def stat() -> Any:
            try:
                return self.client.stat_object(bucket, key)
            except S3Error as e:
                if e.code in ("NoSuchKey", "NoSuchObject"):
                    return None
                raise

        return self._call("reading", uri, stat) if key else None

    def _fetch_object(self, uri: str, cache: Path, what: str) -> Path:
        bucket, key = parse_uri(uri)
        info = self._stat(uri)
        if info is None and (published := self._fetch_published_file(uri, cache)) is not None:
            return published
        if info is None:
            raise StoreError(f"{what}: {uri} is neither a published directory (no {MANIFEST}) nor an object")
        # A plain object (a data file put there by a user) has no manifest: key its cache entry by ETag and size.
        ident = hashlib.sha256(f"{uri}\n{info.etag}\n{info.size}".encode()).hexdigest()
        final = cache / "objects" / ident / Path(key).name
        if final.is_file() and final.stat().st_size == info.size:
            return final
        with file_lock(_lock_of(cache, final)):
            if not (final.is_file() and final.stat().st_size == info.size):
                part = self._download(bucket, key, final.parent / f".{final.name}.part", info.size)
                os.replace(part, final)
        return final

    def _blob(self, object_uri: str, sha256: str, size: int, cache: Path) -> Path:
        """The content-addressed cache file of one manifest entry, downloaded (and resumed) if missing."""
        final = cache / "blobs" / sha256[:2] / sha256
        if final.is_file():
            return final
        # Two processes downloading into one .part file append to each other ("got 360 bytes, expected 180").
        with file_lock(_lock_of(cache, final)):
            return final if final.is_file() else self._download_blob(object_uri, sha256, size, final)

    def _download_blob(self, object_uri: str, sha256: str, size: int, final: Path) -> Path:
        bucket, key = parse_uri(object_uri)
        part = final.parent / f".{sha256}.part"
        for attempt in (1, 2):
            self._download(bucket, key, part, size)
            actual = sha256_file(part)
            if actual == sha256:
                os.replace(part, final)
                return final
            part.unlink()  # a corrupt partial file or a changed object: start over once
            log.warning("%s: sha256 mismatch (attempt %d), downloading again", object_uri, attempt)
        raise ManifestError(f"{object_uri}: content does not match its manifest (sha256 {actual[:12]}... != {sha256[:12]}...)")

    def _download(self, bucket: str, key: str, part: Path, size: int) -> Path:
        """Download into ``part``, resuming from its current length; the caller verifies the content."""
        uri = f"s3://{bucket}/{key}"
        part.parent.mkdir(parents=True, exist_ok=True)
        if part.exists() and part.stat().st_size > size:
            part.unlink()
        part.touch()
        offset = part.stat().st_size
        if offset:
            log.info("%s: resuming download at byte %d of %d", uri, offset, size)

        def get() -> None:
            done = part.stat().st_size
            if done >= size:
                return
            resp = self.client.get_object(bucket, key, offset=done)
            try:
                with part.open("ab") as out:
                    for chunk in resp.stream(1 << 20):
                        out.write(chunk)
            finally:
                resp.close()
                resp.release_conn()

        self._call("downloading", uri, get)  # each retry resumes where the last attempt stopped
        if part.stat().st_size != size:
            raise StoreError(f"downloading {uri}: got {part.stat().st_size} bytes, expected {size}")
        return part


def _join(prefix: str, key: str) -> str:
    return f"{prefix}/{key}" if prefix else key


def _lock_of(cache: Path, entry: Path) -> Path:
    """The lock file of a cache entry: ``<cache>/locks/<its path in the cache>.lock`` (outside the entries,
    so that listing them never shows a lock)."""
    return cache / "locks" / f"{entry.relative_to(cache).as_posix()}.lock"


def selected(path: str, only: Sequence[str]) -> bool:
    """Whether ``only`` (paths or directory prefixes of a published directory) selects ``path``.

    >>> [selected(p, ["epoch-2", "checkpoints.json"]) for p in ("epoch-2/model.safetensors", "epoch-20/x", "checkpoints.json")]
    [True, False, True]
    """
    return any(path == o.rstrip("/") or path.startswith(o.rstrip("/") + "/") for o in only)


def _place(blob: Path, dest: Path) -> None:
    """Put a verified cache blob at ``dest`` in one step (a hard link, else a copy), so that a reader
    never sees half a file and concurrent placements of the same file agree."""
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)  # left by a process of the same id that died here
    try:
        os.link(blob, tmp)
    except OSError:
        shutil.copyfile(blob, tmp)
    os.replace(tmp, dest)
