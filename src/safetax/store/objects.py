"""Small objects and published directories under a prefix: what the audit ledger needs.

A prefix is a local path (``file://`` too) or ``s3://bucket/prefix`` (parsed by
:func:`safetax.store.uri.parse_store_uri`). :func:`write_text` replaces an object in one step (a
local rename, one S3 PUT), so a reader sees the old object or the new one, never half of one.
:func:`create_text` and :func:`replace_text` are the conditional writes that claims are made of: create
only if absent (S3 ``If-None-Match: *``; locally a hard link, which fails when the name exists) and
replace only the version read (S3 ``If-Match`` on the ETag; locally a compare-and-swap of the content
digest under a lock file). :func:`published_dirs` finds the directories under a prefix that carry a
manifest (:func:`~safetax.store.publish` writes it last: a directory without one is still being
written, or was abandoned) and the top-level entries that carry none; temporary siblings and lock
files (:func:`~safetax.store.local.is_temp_name`) are never listed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from safetax.store.local import StoreError, file_lock, is_temp_name, temp_sibling
from safetax.store.manifest import MANIFEST, Manifest
from safetax.store.uri import parse_store_uri


def _local(uri: str) -> Path | None:
    """The local path of ``uri``, or None for an ``s3://`` URI (a StoreError for anything else)."""
    return parse_store_uri(uri).path


def _join(uri: str, key: str) -> str:
    return f"{uri.rstrip('/')}/{key}"


def _token(data: bytes) -> str:
    """A local object's version token (the S3 ETag's counterpart): its content digest."""
    return hashlib.sha256(data).hexdigest()


def read_text(uri: str) -> str | None:
    """The object's text, or None when there is none."""
    path = _local(uri)
    if path is None:
        from safetax.store.s3 import S3Store

        data = S3Store().get_bytes(uri)
        return None if data is None else data.decode("utf-8")
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _write_local(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_text(uri: str, text: str, content_type: str = "application/json") -> None:
    """Create or replace one object in one step (creating the bucket or directories it needs)."""
    data = text.encode("utf-8")
    path = _local(uri)
    if path is None:
        from safetax.store.s3 import S3Store

        S3Store().put_bytes(uri, data, content_type)
        return
    _write_local(path, data)


def read_versioned(uri: str) -> tuple[str, str] | None:
    """(text, version) of the object, or None when there is none: ``version`` is what :func:`replace_text` takes."""
    path = _local(uri)
    if path is None:
        from safetax.store.s3 import S3Store

        got = S3Store().get_versioned(uri)
        return None if got is None else (got[0].decode("utf-8"), got[1])
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return data.decode("utf-8"), _token(data)


def create_text(uri: str, text: str) -> str | None:
    """Create the object only if there is none; its version, or None when it exists already."""
    data = text.encode("utf-8")
    path = _local(uri)
    if path is None:
        from safetax.store.s3 import S3Store, parse_uri

        store = S3Store()
        store.ensure_bucket(parse_uri(uri)[0])
        store.require_conditional_writes(uri)
        return store.put_if(uri, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    tmp.write_bytes(data)
    try:
        os.link(tmp, path)  # fails when the name exists: an exclusive create that never shows half a file
    except FileExistsError:
        return None
    finally:
        tmp.unlink(missing_ok=True)
    return _token(data)


def replace_text(uri: str, text: str, version: str) -> str | None:
    """Replace the object only while it is still at ``version`` (from :func:`read_versioned`); the new
    version, or None when it changed or vanished in between."""
    data = text.encode("utf-8")
    path = _local(uri)
    if path is None:
        from safetax.store.s3 import S3Store

        return S3Store().put_if(uri, data, etag=version)
    with file_lock(path.parent / f".{path.name}.lock"):
        try:
            current = path.read_bytes()
        except FileNotFoundError:
            return None
        if _token(current) != version:
            return None
        _write_local(path, data)
    return _token(data)


def delete(uri: str) -> None:
    """Remove the object if it is there."""
    path = _local(uri)
    if path is None:
        from safetax.store.s3 import S3Store

        S3Store().delete(uri)
        return
    with file_lock(path.parent / f".{path.name}.lock"):
        path.unlink(missing_ok=True)


def list_keys(uri: str, must_exist: str = "") -> list[str]:
    """Every object key under ``uri`` (recursive), relative to it, sorted; [] when there is nothing.

    With ``must_exist`` (what the URI is, for the message), a missing bucket or directory, a dead
    endpoint or refused credentials raise a StoreError instead (a dead endpoint always does).
    """
    root = _local(uri) if not must_exist else parse_store_uri(uri, must_exist).path
    if root is None:
        from safetax.store.s3 import S3Store, parse_uri

        store = S3Store(retries=2, backoff_s=0.2) if must_exist else S3Store()
        keys = store.keys(uri)
        if keys is None and must_exist:
            raise StoreError(f"{must_exist}: {uri!r}: bucket {parse_uri(uri)[0]!r} does not exist on {store.settings.endpoint}")
        return sorted(keys or [])
    if not root.is_dir():
        if must_exist:
            raise StoreError(f"{must_exist}: {uri!r} is not an existing directory")
        return []
    keys = (p.relative_to(root) for p in root.rglob("*") if p.is_file())
    return sorted(k.as_posix() for k in keys if not any(is_temp_name(part) for part in k.parts))


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
