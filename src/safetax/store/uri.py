"""The one parser of store URIs: every store entry point reads a location through :func:`parse_store_uri`.

Allowed forms: a local path (``runs/x``, ``/data/x``, ``~/x``), a ``file://`` path, and
``s3://bucket/prefix`` with a valid bucket name. Anything else that looks like a URI
(``ftp://host/x``, ``http://...``, ``s3:/bucket``, ``s3:bucket/x``), ``s3://`` without a bucket, and a
value with surrounding whitespace (``" s3://b/x"``) is an error naming the value and the allowed forms:
taken as a relative directory, such a value sends a cluster run's outputs to the pod's own disk, where
they are lost with the pod.

>>> parse_store_uri("s3://runs/demo/train/")
StoreURI(scheme='s3', bucket='runs', key='demo/train', path=None)
>>> parse_store_uri("file:///data/x").path
PosixPath('/data/x')
>>> parse_store_uri("ftp://host/x", "store_uri")
Traceback (most recent call last):
...
safetax.store.local.StoreError: store_uri: 'ftp://host/x' has an unknown scheme 'ftp'; expected a local path, file:///path or s3://bucket/prefix
>>> parse_store_uri("s3:safetax/runs", "store_uri")
Traceback (most recent call last):
...
safetax.store.local.StoreError: store_uri: 's3:safetax/runs' is not a valid s3:// URI; expected s3://bucket/prefix, e.g. s3://safetax/runs
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from safetax.store.local import StoreError

ALLOWED = "a local path, file:///path or s3://bucket/prefix"
# What a URI's scheme looks like (RFC 3986): "ftp:/", "s3:/", "http://"; a local path never starts so here.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/")
# The schemes of the store (and of URIs mistaken for one) also without a slash: "s3:bucket/x" is a typo, not a
# local directory named "s3:bucket".
_KNOWN_SCHEME = re.compile(r"^(s3|file|ftp|https?|gs|minio|hf):", re.IGNORECASE)
# S3 bucket naming rules: 3-63 lowercase letters, digits, '.' and '-', starting and ending alphanumeric.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class StoreURI:
    scheme: str  # "s3" or "file" (a plain local path too)
    bucket: str = ""  # s3 only
    key: str = ""  # s3 only: the prefix or object key inside the bucket, without surrounding "/"
    path: Path | None = None  # file only

    @property
    def is_s3(self) -> bool:
        return self.scheme == "s3"


def parse_store_uri(uri: str, what: str = "URI") -> StoreURI:
    """The parts of ``uri``; a StoreError naming ``what``, the value and the allowed forms when it is none of them."""
    if not isinstance(uri, str) or not uri.strip():
        raise StoreError(f"{what}: {uri!r} is empty; expected {ALLOWED}")
    if uri != uri.strip():
        raise StoreError(f"{what}: {uri!r} has whitespace around it; expected {ALLOWED}, without spaces or line breaks")
    m = _SCHEME.match(uri) or _KNOWN_SCHEME.match(uri)
    scheme = m.group(1).lower() if m else ""
    if scheme == "s3":
        if not uri.startswith("s3://"):
            raise StoreError(f"{what}: {uri!r} is not a valid s3:// URI; expected s3://bucket/prefix, e.g. s3://safetax/runs")
        bucket, _, key = uri[len("s3://"):].partition("/")
        if not bucket:
            raise StoreError(f"{what}: {uri!r} has no bucket; expected s3://bucket/prefix, e.g. s3://safetax/runs")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise StoreError(f"{what}: {uri!r}: {bucket!r} is not a valid bucket name (3-63 lowercase letters, digits, "
                             "'.' and '-'); expected s3://bucket/prefix")
        return StoreURI("s3", bucket=bucket, key=key.strip("/"))
    if scheme == "file":
        if not uri.startswith("file://") or not uri[len("file://"):]:
            raise StoreError(f"{what}: {uri!r} is not a valid file:// URI; expected file:///absolute/path")
        return StoreURI("file", path=Path(uri[len("file://"):]).expanduser())
    if scheme:
        raise StoreError(f"{what}: {uri!r} has an unknown scheme {scheme!r}; expected {ALLOWED}")
    return StoreURI("file", path=Path(uri).expanduser())


def local_path(uri: str, what: str = "URI") -> Path:
    """The local path of a ``file://`` URI or plain path; a StoreError for an ``s3://`` URI or a bad value."""
    parsed = parse_store_uri(uri, what)
    if parsed.path is None:
        raise StoreError(f"{what}: {uri!r} is an s3:// URI, not a local path")
    return parsed.path
