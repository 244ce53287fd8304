"""Where inputs come from and how outputs are published.

Inputs are given as URIs: a local path or ``file://`` path (the embedded
default), or a model hub id such as ``deepseek-ai/DeepSeek-R1-Distill-Qwen-7B``
(loaded by transformers on a cluster that is online). ``s3://`` comes with the
platform's artifact store.

Outputs are published atomically: a stage writes into a temporary sibling
directory and only a finished directory, with a ``COMPLETE`` marker written
last, is moved into place. A reader trusts only directories with the marker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

COMPLETE = "COMPLETE"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class StoreError(ValueError):
    """A URI that does not resolve to anything usable."""


def local_path(uri: str, what: str) -> Path:
    """A ``file://`` URI or path that must exist; ``what`` names the parameter in the error."""
    path = Path(uri.removeprefix("file://")).expanduser()
    if not path.exists():
        raise StoreError(f"{what}: {uri!r} does not exist")
    return path


def is_hub_id(uri: str) -> bool:
    """True for ``org/name`` that is not an existing local path (paths starting with /, ., ~ or
    file:// never match the pattern)."""
    return bool(HUB_ID.match(uri)) and not Path(uri).expanduser().exists()


def resolve_model(uri: str, what: str = "model") -> str:
    """A model reference that ``from_pretrained`` accepts: an existing local directory or a hub id."""
    if uri.startswith("s3://"):
        raise StoreError(f"{what}: s3:// URIs need the artifact store (not configured); got {uri!r}")
    path = Path(uri.removeprefix("file://")).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise StoreError(f"{what}: {uri!r} is a directory without config.json or adapter_config.json")
        return str(path)
    if not is_hub_id(uri):
        raise StoreError(f"{what}: {uri!r} does not exist (expected a model directory or a hub id 'org/name')")
    return uri


def is_complete(path: Path) -> bool:
    return (path / COMPLETE).is_file()


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary directory; on success mark it complete and move it to ``final``.

    On failure the temporary directory is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        (tmp / COMPLETE).write_text("")
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def require_complete(path: Path, what: str) -> Path:
    """An input directory written by an earlier stage; refuse a half-written one."""
    if not is_complete(path):
        raise StoreError(f"{what}: {path} is not a complete stage output (no {COMPLETE} marker)")
    return path


def cache_root() -> Path:
    """``$SAFETAX_CACHE`` if set, else ``~/.cache/safetax``: the demo model and other derived data."""
    env = os.environ.get("SAFETAX_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "safetax"
