"""Small objects and published directories under a prefix: what the audit ledger needs.

A prefix is a local path (``file://`` too) or ``s3://bucket/prefix``. :func:`write_text` replaces an
object in one step (a local rename, one S3 PUT), so a reader sees the old object or the new one,
never half of one. :func:`published_dirs` finds the directories under a prefix that carry a
manifest (:func:`~safetax.store.publish` writes it last: a directory without one is still being
written, or was abandoned) and the top-level entries that carry none.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

from safetax.store.local import StoreError
from safetax.store.manifest import MANIFEST, Manifest


def _local(uri: str) -> Path:
    return Path(uri.removeprefix("file://")).expanduser()


def _join(uri: str, key: str) -> str:
    return f"{uri.rstrip('/')}/{key}"


def read_text(uri: str) -> str | None:
    """The object's text, or None when there is none."""
    if uri.startswith("s3://"):
        from minio.error import S3Error

        from safetax.store.s3 import S3Store, parse_uri

        store, (bucket, key) = S3Store(), parse_uri(uri)

        def get() -> bytes | None:
            try:
                resp = store.client.get_object(bucket, key)
            except S3Error as e:
                if e.code in ("NoSuchKey", "NoSuchObject"):
                    return None
                raise
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        data = store._call("reading", uri, get)
        return None if data is None else data.decode("utf-8")
    path = _local(uri)
    return path.read_text(encoding="utf-8") if path.is_file() else None


def write_text(uri: str, text: str, content_type: str = "application/json") -> None:
    """Create or replace one object in one step (creating the bucket or directories it needs)."""
    data = text.encode("utf-8")
    if uri.startswith("s3://"):
        from safetax.store.s3 import S3Store, parse_uri

        store, (bucket, key) = S3Store(), parse_uri(uri)
        store.ensure_bucket(bucket)
        store._call("writing", uri, lambda: store.client.put_object(
            bucket, key, io.BytesIO(data), len(data), content_type=content_type))
        return
    path = _local(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    tmp.write_bytes(data)
    os.replace(tmp, path)


def list_keys(uri: str) -> list[str]:
    """Every object key under ``uri`` (recursive), relative to it, sorted; [] when there is nothing."""
    if uri.startswith("s3://"):
        from safetax.store.s3 import S3Store, parse_uri

        store, (bucket, prefix) = S3Store(), parse_uri(uri)
        if not store._call("checking bucket", uri, lambda: store.client.bucket_exists(bucket)):
            return []
        start = f"{prefix}/" if prefix else ""
        names = store._call("listing", uri, lambda: [o.object_name for o in store.client.list_objects(
            bucket, prefix=start, recursive=True)])
        return sorted(n[len(start):] for n in names if not n.endswith("/"))
    root = _local(uri)
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def check_reachable(uri: str, what: str) -> None:
    """Raise a StoreError naming ``what`` when the prefix cannot be listed (no bucket, no directory,
    endpoint down, credentials refused)."""
    if uri.startswith("s3://"):
        from safetax.store.s3 import S3Store, parse_uri

        store, (bucket, _) = S3Store(retries=2, backoff_s=0.2), parse_uri(uri)
        if not store._call(f"{what}: checking bucket", uri, lambda: store.client.bucket_exists(bucket)):
            raise StoreError(f"{what}: {uri!r}: bucket {bucket!r} does not exist on {store.settings.endpoint}")
        return
    if not _local(uri).is_dir():
        raise StoreError(f"{what}: {uri!r} is not an existing directory")


@dataclass(frozen=True)
class Published:
    uri: str  # the directory's URI
    name: str  # its path relative to the prefix
    manifest: Manifest


def published_dirs(prefix: str) -> tuple[list[Published], list[str]]:
    """(directories under ``prefix`` with a manifest, top-level names under ``prefix`` without any).

    A directory inside a published one (an upload id) is not a separate entry.
    """
    keys = list_keys(prefix)
    dirs = sorted(k[: -len(MANIFEST)].rstrip("/") for k in keys if k == MANIFEST or k.endswith("/" + MANIFEST))
    done: list[Published] = []
    for d in dirs:
        if any(d.startswith(p + "/") for p in [x.name for x in done]):
            continue
        uri = _join(prefix, d) if d else prefix.rstrip("/")
        text = read_text(_join(uri, MANIFEST))
        if text is None:  # replaced between listing and reading
            continue
        done.append(Published(uri=uri, name=d, manifest=Manifest.from_json(text, _join(uri, MANIFEST))))
    tops = {k.split("/", 1)[0] for k in keys if "/" in k}
    covered = {p.name.split("/", 1)[0] for p in done}
    return done, sorted(tops - covered)
