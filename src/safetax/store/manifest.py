"""Manifests: the list of files of a published directory, with the sha256 and size of each.

A manifest is written last, after every file it lists is stored; a reader trusts
only what a manifest lists and checks each downloaded file against it.

>>> import tempfile
>>> d = Path(tempfile.mkdtemp())
>>> _ = (d / "a.txt").write_text("hello")
>>> m = Manifest.of_dir(d, upload_id="u1")
>>> [(f.path, f.size, f.sha256[:8]) for f in m.files]
[('a.txt', 5, '2cf24dba')]
>>> Manifest.from_json(m.to_json(), "s3://b/p/MANIFEST.json") == m
True
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from safetax.store.local import COMPLETE

MANIFEST = "MANIFEST.json"
FORMAT = 1
_CHUNK = 1 << 20


class ManifestError(ValueError):
    """A manifest that does not parse, or a file that does not match it."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the published directory, "/"-separated
    key: str  # the object key it is stored under, relative to the prefix
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    upload_id: str
    created: str
    files: tuple[FileEntry, ...]

    @property
    def digest(self) -> str:
        """Identifies the content: the same files give the same digest, whatever the upload."""
        listing = "\n".join(f"{f.path}\t{f.sha256}\t{f.size}" for f in self.files)
        return hashlib.sha256(listing.encode()).hexdigest()

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @classmethod
    def of_dir(cls, root: Path, upload_id: str) -> Manifest:
        """Every regular file under ``root`` (the local COMPLETE marker excluded: the manifest replaces it)."""
        files = []
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if p.is_symlink() or not p.is_file() or rel == COMPLETE:
                continue
            files.append(FileEntry(path=rel, key=f"{upload_id}/{rel}", sha256=sha256_file(p), size=p.stat().st_size))
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return cls(upload_id=upload_id, created=created, files=tuple(files))

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> Manifest:
        try:
            d = json.loads(text)
            if d.get("format") != FORMAT:
                raise ManifestError(f"{where}: manifest format {d.get('format')!r} is not {FORMAT}")
            files = tuple(FileEntry(**f) for f in d["files"])
            return cls(upload_id=d["upload_id"], created=d["created"], files=files)
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ManifestError(f"{where}: not a safetax manifest ({type(e).__name__}: {e})") from None
