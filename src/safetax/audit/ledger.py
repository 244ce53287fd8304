"""The audit ledger: one record per (audit, checkpoint digest), in the bucket beside the reports.

Layout under ``<store_uri>/audits/<audit name>/``::

    ledger/<digest>.json        the audit record of one checkpoint (written last: the commit point)
    reports/<digest>.md|.html   its report
    claims/<digest>.json        the claim of the run auditing it now (owner, lease); removed when it is recorded
    acknowledged/<digest>.json  written by an operator: its verdict is no longer re-published (alerts stop)
    attempts/<digest>.json      failed runs of a checkpoint since its last record; removed by its record
    baselines/<name>.json       the last audit record of the named baseline model
    runs/<run id>/report.md     what one audit run did (also when it found nothing new)
    promoted/<checkpoint>/      the safety gate's choice, published with its audit record

A checkpoint's digest is its manifest's content digest (:attr:`Manifest.digest`): the same files give
the same digest wherever they are copied, so a re-run, or a copy under another name, is not audited
twice, and a changed checkpoint under the same name is audited again.

Claims keep two concurrent runs from auditing one checkpoint twice. A run's plan creates
``claims/<digest>.json`` with a conditional create (S3 ``If-None-Match: *``; locally an exclusive
link) before any generation starts, and skips a digest whose claim another run holds. A claim
carries a lease (``expires_at``): one whose owner died is taken over after it expires, with a
conditional replace of exactly the version read (S3 ``If-Match`` on its ETag), so of two runs
taking it over, one wins. The finishing run writes the record first and then removes its claim;
a planner re-reads the record after winning a claim, so a run that finished in between is seen.

A claim still held when its run ends (the exit handler) or released without a record (a failed
``finish``) is a failed attempt: ``attempts/<digest>.json`` counts them (count, last run id, last
time), updated with the same conditional writes, once per run however often the handler is retried.
A plan skips ("gives up on") a checkpoint whose count reached the audit's ``max_attempts``; its record
removes the file, and an operator retries it by deleting the file.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from safetax.config import Checks
from safetax.store.local import StoreError
from safetax.store.objects import create_text, delete, list_keys, read_text, read_versioned, replace_text, write_text

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def check_audit_name(checks: Checks, name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        checks.fail("audit_name", name, "a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters")


@dataclass(frozen=True)
class Ledger:
    store_uri: str
    audit: str

    @property
    def root(self) -> str:
        return f"{self.store_uri.rstrip('/')}/audits/{self.audit}"

    def record_uri(self, digest: str) -> str:
        return f"{self.root}/ledger/{digest}.json"

    def report_uri(self, digest: str, ext: str = "md") -> str:
        return f"{self.root}/reports/{digest}.{ext}"

    def _digests(self, folder: str) -> list[str]:
        """The digests of the ``<digest>.json`` objects directly under ``folder`` (ledger, claims, attempts, ...)."""
        return [k.removesuffix(".json") for k in list_keys(f"{self.root}/{folder}") if k.endswith(".json") and "/" not in k]

    def audited(self) -> set[str]:
        """Digests with a record."""
        return set(self._digests("ledger"))

    def write_record(self, digest: str, record: dict[str, Any]) -> str:
        uri = self.record_uri(digest)
        write_text(uri, json.dumps(record, indent=2, sort_keys=True) + "\n")
        return uri

    def baseline(self, name: str) -> dict[str, Any] | None:
        text = read_text(f"{self.root}/baselines/{name}.json")
        return None if text is None else json.loads(text)

    def write_baseline(self, name: str, record: dict[str, Any]) -> None:
        write_text(f"{self.root}/baselines/{name}.json", json.dumps(record, indent=2, sort_keys=True) + "\n")

    def write_report(self, digest: str, markdown: str, html: str) -> str:
        write_text(self.report_uri(digest, "html"), html, content_type="text/html")
        uri = self.report_uri(digest, "md")
        write_text(uri, markdown, content_type="text/markdown")
        return uri

    def write_run_report(self, run_id: str, markdown: str) -> str:
        uri = f"{self.root}/runs/{run_id}/report.md"
        write_text(uri, markdown, content_type="text/markdown")
        return uri

    # -- claims ------------------------------------------------------------------------------------
    def claim_uri(self, digest: str) -> str:
        return f"{self.root}/claims/{digest}.json"

    def has_record(self, digest: str) -> bool:
        return read_text(self.record_uri(digest)) is not None

    def claim(self, digest: str, owner: str, checkpoint: str, lease_s: float, now: float | None = None) -> dict[str, Any] | None:
        """Claim the audit of ``digest`` for ``owner``; None when ``owner`` holds it now, else the claim
        of the run that holds it (unexpired)."""
        now = time.time() if now is None else now
        mine = {"owner": owner, "checkpoint": checkpoint, "digest": digest, "claimed_at": now, "expires_at": now + lease_s}
        text = json.dumps(mine, indent=2, sort_keys=True) + "\n"
        uri = self.claim_uri(digest)
        for _ in range(3):  # a claim released between our create and our read: create again
            if create_text(uri, text) is not None:
                return None
            current = read_versioned(uri)
            if current is None:
                continue
            held = _parse_entry(current[0])
            if held.get("owner") == owner:  # ours: a retried plan of the same run, or a PUT retried after a timeout
                return None
            if float(held.get("expires_at", 0)) > now:
                return held
            if replace_text(uri, text, current[1]) is not None:
                log.warning("audit %s: took over the expired claim of %s on %s (owner %s, expired %s)", self.audit,
                            held.get("checkpoint", "?"), digest[:12], held.get("owner", "?"), iso_utc(held.get("expires_at")))
                return None
        current = read_versioned(uri)
        return _parse_entry(current[0]) if current else {"owner": "?", "expires_at": now}

    def release(self, digest: str, owner: str) -> bool:
        """Remove ``owner``'s claim on ``digest``, if it still holds it (a claim taken over is left alone); True
        when one was removed."""
        uri = self.claim_uri(digest)
        current = read_versioned(uri)
        if current is None or _parse_entry(current[0]).get("owner") != owner:
            return False
        delete(uri)
        return True

    def release_all(self, owner: str) -> list[dict[str, Any]]:
        """Remove every claim ``owner`` still holds (the audit run's exit handler), counting a failed attempt of each
        first; return those claims."""
        released = []
        for digest in self._digests("claims"):
            current = read_text(self.claim_uri(digest))
            claim = _parse_entry(current) if current is not None else {}
            if claim.get("owner") != owner:
                continue
            self.record_failure(digest, str(claim.get("checkpoint", digest)), owner)
            if self.release(digest, owner):
                released.append(claim)
        return released

    # -- failed attempts ---------------------------------------------------------------------------
    def attempts_uri(self, digest: str) -> str:
        return f"{self.root}/attempts/{digest}.json"

    def attempts(self) -> dict[str, dict[str, Any]]:
        """Every checkpoint's failed attempts since its last record, by digest (see the module docstring)."""
        out = {}
        for digest in self._digests("attempts"):
            text = read_text(self.attempts_uri(digest))
            entry = _parse_entry(text) if text is not None else {}
            if isinstance(entry.get("count"), int):
                out[digest] = entry
        return out

    def record_failure(self, digest: str, checkpoint: str, run_id: str, now: float | None = None) -> dict[str, Any]:
        """Count a failed attempt of run ``run_id`` at ``digest`` (once per run); return the updated entry."""
        uri = self.attempts_uri(digest)
        current: tuple[str, str] | None = None  # the first write is a create (it makes the bucket if need be)
        for _ in range(5):  # a concurrent update between our read and our write: read again
            entry = _parse_entry(current[0]) if current is not None else {}
            if entry.get("last_run_id") == run_id:  # a retried exit handler: counted already
                return entry
            count = entry.get("count") if isinstance(entry.get("count"), int) else 0
            new = {"digest": digest, "checkpoint": checkpoint, "count": count + 1, "last_run_id": run_id,
                   "last_at": time.time() if now is None else now}
            text = json.dumps(new, indent=2, sort_keys=True) + "\n"
            written = create_text(uri, text) if current is None else replace_text(uri, text, current[1])
            if written is not None:
                log.warning("audit %s: %s (%s) failed in run %s: attempt %d", self.audit, checkpoint, digest[:12], run_id,
                            new["count"])
                return new
            current = read_versioned(uri)
        raise StoreError(f"audit {self.audit}: {uri} kept changing while counting a failed attempt of run {run_id}")

    def clear_attempts(self, digest: str) -> None:
        """Forget ``digest``'s failed attempts (its record is written)."""
        delete(self.attempts_uri(digest))

    # -- verdicts to re-publish -------------------------------------------------------------------
    def acknowledged(self) -> set[str]:
        """Digests whose verdict an operator acknowledged (``acknowledged/<digest>.json``): not re-published."""
        return set(self._digests("acknowledged"))

    def acknowledge(self, digest: str, note: str) -> str:
        uri = f"{self.root}/acknowledged/{digest}.json"
        write_text(uri, json.dumps({"digest": digest, "note": note, "at": time.time()}, indent=2, sort_keys=True) + "\n")
        return uri

    def latest_records(self) -> list[dict[str, Any]]:
        """The latest checkpoint record of each checkpoint name (by ``completed_at``), acknowledged ones left out:
        what every run re-publishes, so that the alerts follow from the ledger alone."""
        skip = self.acknowledged()
        latest: dict[str, dict[str, Any]] = {}
        for digest in sorted(self.audited() - skip):
            text = read_text(self.record_uri(digest))
            if text is None:
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError:
                log.warning("audit %s: ledger record %s is not JSON: not re-published", self.audit, digest[:12])
                continue
            if record.get("role", "checkpoint") != "checkpoint":
                continue
            name = str(record.get("checkpoint", digest))
            if name not in latest or completed_at(record) > completed_at(latest[name]):
                latest[name] = record
        return [latest[k] for k in sorted(latest)]


def completed_at(record: dict[str, Any]) -> float:
    """A record's ``completed_at`` (ISO 8601) as unix time; 0 when it has none."""
    try:
        return datetime.fromisoformat(str(record["completed_at"])).timestamp()
    except (KeyError, ValueError):
        return 0.0


def _parse_entry(text: str) -> dict[str, Any]:
    """A claim's or an attempts entry's fields; {} when unreadable (a writer died mid-way on a store without atomic
    PUTs): such a claim counts as expired, such an attempts entry as no failed run."""
    try:
        d = json.loads(text)
        return d if isinstance(d, dict) else {}
    except json.JSONDecodeError:
        return {}


def iso_utc(t: Any) -> str:
    """Unix time as ISO 8601 UTC, for messages; '?' for anything else."""
    try:
        return datetime.fromtimestamp(float(t), timezone.utc).isoformat(timespec="seconds")
    except (TypeError, ValueError):
        return "?"
