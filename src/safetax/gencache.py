"""The content-addressed cache of generations and judge verdicts, shared by runs and audits.

An entry is stored at ``<root>/generations/<key[:2]>/<key>.json`` (verdicts: ``<root>/judgements/...``), where
``root`` is a local directory or an ``s3://`` prefix (:mod:`safetax.store.objects`: one atomic write per entry,
a local rename or one S3 PUT, so a reader never sees half an entry). The key is the sha256 of everything the
output depends on:

- generations: the model's identity (:func:`model_identity`: the weights' digest, or base digest + adapter
  digest), the rendered prompt, the sampling settings (temperature, top_p, n, max_new_tokens, seed), the backend's
  name and version (engine and library versions, dtype), and :data:`FORMAT`;
- verdicts: the judge's name (it names the mode and the scope), the judge model's identity, the ``require_think``
  setting, the prompt and the response, and :data:`FORMAT`.

A changed key part gives another key, so a wrong hit needs a sha256 collision. A hub id is keyed by the commit
the stage loads: with the cache on, generate and judge resolve it to its snapshot directory in the HF cache first
(the hub's current revision, downloaded if missing) and load that directory, so a new revision under the same id
misses. What the key cannot see: a change of the generating or judging code that keeps its outputs' format (bump
:data:`FORMAT`). Clearing the cache is deleting the prefix.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from safetax.generation.base import Completion, SamplingConfig
from safetax.store import cache_root
from safetax.store.objects import read_text, write_text

log = logging.getLogger(__name__)
FORMAT = 1  # bump when what an entry holds, or what an output depends on, changes
KINDS = ("generations", "judgements")
_READERS = 8  # parallel reads of an s3:// cache (each a small GET)


def default_root(store_uri: str = "") -> str:
    """The cache root a run uses unless told otherwise: ``<store>/cache`` with a run store (shared by every run and
    audit on that store), else ``$SAFETAX_CACHE`` (``~/.cache/safetax``).

    >>> default_root("s3://runs/safetax/")
    's3://runs/safetax/cache'
    """
    return f"{store_uri.rstrip('/')}/cache" if store_uri else str(cache_root())


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def model_identity(model: str, adapter: str | None = None) -> str:
    """The digest of a model's weights (:func:`safetax.store.digest.content_digest`: a published manifest's, a hub
    snapshot's commit, or a directory's files), combined with the adapter's when there is one."""
    from safetax.store.digest import content_digest

    base = content_digest(model, "model")
    return base if adapter is None else _digest({"base": base, "adapter": content_digest(adapter, "adapter")})


def generation_key(model: str, prompt: str, sampling: SamplingConfig, backend: str, version: str) -> str:
    """The cache key of one prompt's ``n`` samples (``model``: :func:`model_identity`).

    >>> s = SamplingConfig(max_new_tokens=8)
    >>> generation_key("m", "p", s, "hf", "1") == generation_key("m", "p", s, "hf", "1") != generation_key("m", "p", s, "hf", "2")
    True
    """
    return _digest({"format": FORMAT, "kind": "generation", "model": model, "prompt": prompt,
                    "sampling": asdict(sampling), "backend": backend, "version": version})


def judgement_key(judge: str, judge_model: str, require_think: bool, prompt: str, response: str) -> str:
    """The cache key of one verdict (``judge``: the judge's name, which names its mode and scope)."""
    return _digest({"format": FORMAT, "kind": "judgement", "judge": judge, "model": judge_model,
                    "require_think": require_think, "prompt": prompt, "response": response})


@dataclass
class Cache:
    """Entries of one kind under a root; counts its hits and misses. ``root`` "" disables it (every lookup misses,
    nothing is written, nothing is counted)."""

    root: str
    kind: str = "generations"
    hits: int = 0
    misses: int = 0
    _bucket_ok: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"cache kind must be one of {list(KINDS)}, got {self.kind!r}")

    @property
    def enabled(self) -> bool:
        return bool(self.root)

    def uri(self, key: str) -> str:
        return f"{self.root.rstrip('/')}/{self.kind}/{key[:2]}/{key}.json"

    def get_many(self, keys: Sequence[str]) -> list[Any | None]:
        """The stored value of each key (None for a miss), counting hits and misses."""
        if not self.enabled:
            return [None] * len(keys)
        if self.root.startswith("s3://"):
            self._ensure_bucket()
            with ThreadPoolExecutor(_READERS) as pool:
                texts = list(pool.map(lambda k: read_text(self.uri(k)), keys))
        else:
            texts = [read_text(self.uri(k)) for k in keys]
        values = [None if t is None else json.loads(t)["value"] for t in texts]
        found = sum(v is not None for v in values)
        self.hits, self.misses = self.hits + found, self.misses + len(keys) - found
        return values

    def _ensure_bucket(self) -> None:
        """A cache whose bucket does not exist yet is empty: create it (the first put would) rather than fail reads."""
        from safetax.store.s3 import S3Store, parse_uri

        if not self._bucket_ok:
            S3Store().ensure_bucket(parse_uri(self.root, "cache root")[0])
            self._bucket_ok = True

    def put(self, key: str, value: Any) -> None:
        if self.enabled:
            write_text(self.uri(key), json.dumps({"format": FORMAT, "key": key, "value": value}, ensure_ascii=False))

    @property
    def hit_rate(self) -> float:
        looked_up = self.hits + self.misses
        return self.hits / looked_up if looked_up else 0.0


def completions_to_json(comps: Sequence[Completion]) -> list[dict[str, Any]]:
    return [asdict(c) for c in comps]


def completions_from_json(value: list[dict[str, Any]]) -> list[Completion]:
    return [Completion(str(c["text"]), int(c["n_tokens"]), bool(c["finished"])) for c in value]
