"""The code benchmarks' expected-output cache: written by the scorer only, HMAC-verified on every read.

The file holds an HMAC-SHA256 line, then the JSON of the entries. The key is 32 random bytes in
``<dir>/.hmac-key`` (mode 0600, directory 0700, owned by the scorer's uid). A file whose HMAC does not
verify (tampered, truncated, written with another key) is ignored and recomputed, never trusted. The key
protects against writers who cannot read it; sandboxed code can do neither (the scorer writes this cache
only when :attr:`~safetax.scoring.sandbox.Isolation.protects_cache`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
KEY_FILE = ".hmac-key"
_KEY_BYTES = 32


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def cache_key(directory: Path) -> bytes:
    """The directory's HMAC key, created (or replaced, when not ours or readable by others) as needed."""
    _private_dir(directory)
    path = directory / KEY_FILE
    try:
        st = path.lstat()
        if (stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077
                and st.st_size == _KEY_BYTES):
            return path.read_bytes()
        log.warning("%s: not a private key file of this user: replaced (existing caches will be recomputed)", path)
    except FileNotFoundError:
        pass
    tmp = path.with_name(f"{KEY_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(_KEY_BYTES))
    os.replace(tmp, path)
    return path.read_bytes()


def _mac(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def load(path: Path) -> dict[str, Any]:
    """The verified entries of ``path``; {} when it is missing or does not verify (with a warning)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    mac, _, body = raw.partition(b"\n")
    if not hmac.compare_digest(mac.decode("ascii", "replace"), _mac(cache_key(path.parent), body)):
        log.warning("%s: expected-output cache failed its integrity check: ignored, recomputing", path)
        return {}
    entries = json.loads(body)
    return entries if isinstance(entries, dict) else {}


def save(path: Path, entries: dict[str, Any]) -> None:
    """Write ``entries`` with their HMAC (atomically, mode 0600)."""
    body = json.dumps(entries, sort_keys=True).encode()
    key = cache_key(path.parent)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(_mac(key, body).encode() + b"\n" + body)
    os.replace(tmp, path)
