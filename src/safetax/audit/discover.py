"""Which checkpoints an audit run evaluates: complete ones with no audit record yet.

Under a watched prefix, a checkpoint is a directory with a manifest (``safetax`` stages and
:func:`safetax.store.publish` write it last); a top-level entry without one is still being written
(or was abandoned) and is skipped until its manifest appears. A local writer's temporary siblings
(``.<name>.tmp-<pid>-<nonce>``, ``.<name>.old-...``) are never listed, manifest or not. An explicit list of model URIs may name
published directories (digest from the manifest), plain local directories (digest of their files),
or hub ids (digest of the id: a hub model is audited once per id).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass

from safetax.store import is_hub_id, parse_store_uri
from safetax.store.local import StoreError
from safetax.store.manifest import MANIFEST, Manifest
from safetax.store.objects import published_dirs, read_text
from safetax.telemetry.labels import model_label

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    name: str  # label in reports and metrics: the path under the prefix, or the URI's last component
    uri: str
    digest: str
    role: str = "checkpoint"  # checkpoint | baseline

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Discovery:
    new: list[Target]  # complete, not yet audited
    already: list[Target]  # complete, audited before
    incomplete: list[str]  # entries under the prefix with no manifest


def digest_of(uri: str) -> str:
    """The content digest of one model URI (see the module docstring)."""
    parsed = parse_store_uri(uri, "checkpoints")
    if parsed.path is None:
        text = read_text(f"{uri.rstrip('/')}/{MANIFEST}")
        if text is None:
            raise StoreError(f"checkpoints: {uri!r} has no {MANIFEST} (not a complete published directory)")
        return Manifest.from_json(text, uri).digest
    path = parsed.path
    if path.is_dir():
        if (path / MANIFEST).is_file():
            return Manifest.from_json((path / MANIFEST).read_text(), str(path / MANIFEST)).digest
        return Manifest.of_dir(path, upload_id="local").digest
    if is_hub_id(uri):
        return hashlib.sha256(f"hub:{uri}".encode()).hexdigest()
    raise StoreError(f"checkpoints: {uri!r} is neither a directory, an s3:// published directory nor a hub id")


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return out


def discover(prefix: str, uris: list[str], audited: set[str]) -> Discovery:
    """Complete checkpoints under ``prefix`` and in ``uris``, split into new and already audited."""
    found: list[tuple[str, str, str]] = []  # (name, uri, digest)
    incomplete: list[str] = []
    if prefix:
        dirs, incomplete = published_dirs(prefix, "checkpoint_prefix")
        found += [(d.name or model_label(d.uri), d.uri, d.manifest.digest) for d in dirs]
    found += [(model_label(u), u, digest_of(u)) for u in uris]
    targets, seen = [], set()
    for name, (_, uri, digest) in zip(_unique([f[0] for f in found]), found):
        if digest in seen:  # the same checkpoint twice (a copy): audit it once
            continue
        seen.add(digest)
        targets.append(Target(name, uri, digest))
    for name in incomplete:
        log.info("checkpoint_prefix: %s has no manifest yet (incomplete): skipped", name)
    return Discovery(new=[t for t in targets if t.digest not in audited],
                     already=[t for t in targets if t.digest in audited], incomplete=incomplete)
