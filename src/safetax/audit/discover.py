"""Which checkpoints an audit run evaluates: complete models with no audit record yet.

Under a watched prefix, a checkpoint is a directory with a manifest (``safetax`` stages and
:func:`safetax.store.publish` write it last) whose files are a model that the audit's generate step loads:
``config.json`` and at least one ``*.safetensors`` file at its top level (:func:`not_a_model`, decided from the
manifest's file list, nothing downloaded). Any other published directory (a run store's generations, a
training output with ``checkpoints.json`` and ``epoch-N/``, a LoRA adapter, which the audit cannot load without
a base model) is skipped with its reason. A top-level entry without a manifest is still being written
(or was abandoned) and is skipped until its manifest appears. A local writer's temporary siblings
(``.<name>.tmp-<pid>-<nonce>``, ``.<name>.old-...``) are never listed, manifest or not. An explicit list of model URIs may name
published directories (digest from the manifest), plain local directories (digest of their files),
or hub ids (the digest of the commit the id's main branch names when the run is planned, the same digest as that
commit's snapshot directory in the HF cache: a new revision pushed under the id is a new checkpoint; the target's
URI is pinned to that commit, ``org/name@<commit>``, so the run evaluates what it records); a listed
directory that is not a model is an error naming the URI and what it lacks. A hub id's files are not checked
(that would need a download): the generate step loads it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from safetax.store.digest import ModelIdentity, identify
from safetax.store.local import StoreError
from safetax.store.objects import published_dirs
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
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason): published, but not a model


MODEL_CONFIG = "config.json"
WEIGHTS_SUFFIX = ".safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def not_a_model(files: Iterable[str]) -> str:
    """Why a directory with these files (paths relative to it) is not a model the audit loads; "" when it is one.

    >>> not_a_model(["config.json", "model-00001-of-00002.safetensors", "tokenizer.json"])
    ''
    >>> not_a_model(["checkpoints.json", "epoch-1/config.json", "epoch-1/model.safetensors"])
    'no config.json and no *.safetensors weights at its top level'
    >>> not_a_model(["adapter_config.json", "adapter_model.safetensors"])
    'no config.json at its top level (a LoRA adapter: the audit evaluates full models; merge it first)'
    """
    top = {f for f in files if "/" not in f}
    missing = ([] if MODEL_CONFIG in top else [MODEL_CONFIG]) + (
        [] if any(f.endswith(WEIGHTS_SUFFIX) for f in top) else [f"*{WEIGHTS_SUFFIX} weights"])
    if not missing:
        return ""
    adapter = " (a LoRA adapter: the audit evaluates full models; merge it first)" if ADAPTER_CONFIG in top else ""
    return f"no {' and no '.join(missing)} at its top level{adapter}"


def identify_model(uri: str, what: str = "checkpoints") -> ModelIdentity:
    """The identity of one model URI (:func:`safetax.store.digest.identify`, the caches' identity too: its digest, and
    its URI pinned to the identified commit for a hub id); a StoreError naming ``what`` (the parameter) and the URI
    when it is a directory that is not a model, or a hub id that cannot be resolved to a commit."""
    found = identify(uri, what)
    if found.files is not None:
        _require_model(what, uri, list(found.files))
    return found


def digest_of(uri: str, what: str = "checkpoints") -> str:
    """The digest of :func:`identify_model`."""
    return identify_model(uri, what).digest


def _require_model(what: str, uri: str, files: list[str]) -> None:
    reason = not_a_model(files)
    if reason:
        raise StoreError(f"{what}: {uri!r} is not a model directory the audit can load: {reason} "
                         f"(a full model needs {MODEL_CONFIG} and *{WEIGHTS_SUFFIX} weights)")


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
    skipped: list[tuple[str, str]] = []
    if prefix:
        dirs, incomplete = published_dirs(prefix, "checkpoint_prefix")
        for d in dirs:
            name, reason = d.name or model_label(d.uri), not_a_model(f.path for f in d.manifest.files)
            if reason:
                skipped.append((name, reason))
            else:
                found.append((name, d.uri, d.manifest.digest))
        if skipped:  # names only: a path under the prefix, never data
            log.info("checkpoint_prefix: %d published director(ies) are not models (config.json and *.safetensors at the "
                     "top level), skipped: %s", len(skipped), ", ".join(n for n, _ in skipped))
    for u in uris:  # a hub id becomes org/name@<commit>: the generate step loads the commit the ledger records
        model = identify_model(u)
        found.append((model_label(u), model.pinned, model.digest))
    targets, seen = [], set()
    for name, (_, uri, digest) in zip(_unique([f[0] for f in found]), found):
        if digest in seen:  # the same checkpoint twice (a copy): audit it once
            continue
        seen.add(digest)
        targets.append(Target(name, uri, digest))
    for name in incomplete:
        log.info("checkpoint_prefix: %s has no manifest yet (incomplete): skipped", name)
    return Discovery(new=[t for t in targets if t.digest not in audited],
                     already=[t for t in targets if t.digest in audited], incomplete=incomplete, skipped=skipped)
