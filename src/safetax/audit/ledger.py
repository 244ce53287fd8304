"""The audit ledger: one record per (audit, checkpoint digest), in the bucket beside the reports.

Layout under ``<store_uri>/audits/<audit name>/``::

    ledger/<digest>.json        the audit record of one checkpoint (written last: the commit point)
    reports/<digest>.md|.html   its report
    baselines/<name>.json       the last audit record of the named baseline model
    runs/<run id>/report.md     what one audit run did (also when it found nothing new)
    promoted/<checkpoint>/      the safety gate's choice, published with its audit record

A checkpoint's digest is its manifest's content digest (:attr:`Manifest.digest`): the same files give
the same digest wherever they are copied, so a re-run, or a copy under another name, is not audited
twice, and a changed checkpoint under the same name is audited again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from safetax.config import Checks
from safetax.store.objects import list_keys, read_text, write_text

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

    def audited(self) -> set[str]:
        """Digests with a record."""
        return {k.removesuffix(".json") for k in list_keys(f"{self.root}/ledger") if k.endswith(".json") and "/" not in k}

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
