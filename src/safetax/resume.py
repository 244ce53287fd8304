"""Sample-level resume: a stage writes its finished samples in chunks as it goes, and a rerun continues from them.

The chunks of a stage run live under a URI of their own (a local directory, or an ``s3://`` prefix in the run
store, where a retried pod on another node finds them), in a subdirectory named by the run's *fingerprint*: the
digest of everything the samples depend on (models, eval sets and their items, sampling, backend, chunk size). A
rerun with the same fingerprint reads the chunks that exist and makes only the others; one with another fingerprint
starts over (and removes the stale chunks). Each chunk is written in one step (a local temp file renamed into
place, or one S3 PUT), so a kill leaves whole chunks only. Chunks are fixed by count (``chunk_prompts`` prompts in
the stage's order), never by time: a rerun then batches every remaining chunk exactly as the first run would
have, and its outputs are identical to an uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from safetax.store.objects import delete, list_keys, read_text, write_text

log = logging.getLogger(__name__)
FORMAT = 1


def fingerprint(parts: Any) -> str:
    """The digest of a stage run's inputs (any JSON-able value).

    >>> fingerprint({"a": 1}) == fingerprint({"a": 1}) != fingerprint({"a": 2})
    True
    """
    return hashlib.sha256(json.dumps({"format": FORMAT, "parts": parts}, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ChunkArea:
    """The chunks of one stage run: ``<uri>/<fingerprint[:16]>/<name>.jsonl``."""

    def __init__(self, uri: str, fingerprint_: str) -> None:
        self.uri = uri.rstrip("/")
        self.run = fingerprint_[:16]
        stale = [k for k in list_keys(self.uri) if not k.startswith(self.run + "/")]
        for key in stale:
            delete(f"{self.uri}/{key}")
        if stale:
            log.info("resume: removed %d chunk(s) of an earlier run with other inputs", len(stale))
        self.names = {k.split("/", 1)[1].removesuffix(".jsonl") for k in list_keys(self.uri) if k.endswith(".jsonl")}

    def _uri(self, name: str) -> str:
        return f"{self.uri}/{self.run}/{name}.jsonl"

    def has(self, name: str) -> bool:
        return name in self.names

    def read(self, name: str) -> list[dict[str, Any]]:
        text = read_text(self._uri(name))
        if text is None:
            raise FileNotFoundError(f"resume: chunk {name} vanished from {self.uri}")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def write(self, name: str, rows: list[dict[str, Any]]) -> None:
        write_text(self._uri(name), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "application/jsonl")
        self.names.add(name)

    def clear(self) -> None:
        """Remove every chunk (once the stage's output is written)."""
        for key in list_keys(self.uri):
            delete(f"{self.uri}/{key}")
