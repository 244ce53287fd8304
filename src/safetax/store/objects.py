"""Small objects and published directories under a prefix: what the audit ledger needs.

A prefix is a local path (``file://`` too) or ``s3://bucket/prefix``. :func:`write_text` replaces an
object in one step (a local rename, one S3 PUT), so a reader sees the old object or the new one,
never half of one. :func:`published_dirs` finds the directories under a prefix that carry a
manifest (:func:`~safetax.store.publish` writes it last: a directory without one is still being
written, or was abandoned) and the top-level entries that carry none.
"""

from __future__ import annotations

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
        from safetax.store.s3 import S3Store

        data = S3Store().get_bytes(uri)
        return None if data is None else data.decode("utf-8")
    path = _local(uri)
    return path.read_text(encoding="utf-8") if path.is_file() else None


def write_text(uri: str, text: str, content_type: str = "application/json") -> None:
    """Create or replace one object in one step (creating the bucket or directories it needs)."""
    data = text.encode("utf-8")
    if uri.startswith("s3://"):
        from safetax.store.s3 import S3Store

        S3Store().put_bytes(uri, data, content_type)
        return
    path = _local(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    tmp.write_bytes(data)
    os.replace(tmp, path)


def list_keys(uri: str, must_exist: str = "") -> list[str]:
    """Every object key under ``uri`` (recursive), relative to it, sorted; [] when there is nothing.

    With ``must_exist`` (what the URI is, for the message), a missing bucket or directory, a dead
    endpoint or refused credentials raise a StoreError instead (a dead endpoint always does).
    """
    if uri.startswith("s3://"):
        from safetax.store.s3 import S3Store, parse_uri

        store = S3Store(retries=2, backoff_s=0.2) if must_exist else S3Store()
        keys = store.keys(uri)
        if keys is None and must_exist:
            raise StoreError(f"{must_exist}: {uri!r}: bucket {parse_uri(uri)[0]!r} does not exist on {store.settings.endpoint}")
        return sorted(keys or [])
    root = _local(uri)
    if not root.is_dir():
        if must_exist:
            raise StoreError(f"{must_exist}: {uri!r} is not an existing directory")
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@dataclass(frozen=True)
class Published:
    uri: str  # the directory's URI
    name: str  # its path relative to the prefix
    manifest: Manifest


def published_dirs(prefix: str, what: str = "prefix") -> tuple[list[Published], list[str]]:
    """(directories under ``prefix`` with a manifest, top-level names under ``prefix`` without any).

    A directory inside a published one (an upload id) is not a separate entry. A prefix that cannot be
    listed raises a StoreError naming ``what``.
    """
    keys = list_keys(prefix, must_exist=what)
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
