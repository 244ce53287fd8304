"""The retention policy of the Pushgateway: groups of finished runs are deleted after a while.

Every stage of every run pushes its own group (``job="safetax"``, pipeline, run_id, stage, method; an audit's
also its audit and target). The Pushgateway keeps a group until it is deleted, so without a policy it grows with
every run and re-exposes old runs' figures forever. ``safetax metrics prune`` deletes the per-run groups (those
with a ``run_id``) of ``safetax-alignment`` and ``safetax-audit`` runs whose last push is older than
``--older-than`` (default 7 days: Prometheus has scraped them long before, and its own retention keeps their
history). An audit's verdict groups (``{audit}``, ``{audit, checkpoint}``: no ``run_id``) are never pruned: every
audit run re-publishes them from the ledger, and deleting one would only silence a failed verdict until the next
run. The chart runs it as a CronJob (``pushgateway.prune``).

An audit run that finishes also deletes the per-run groups of the same audit's earlier runs
(:func:`clear_earlier_audit_runs`): a failed run's ``safetax_stage_failed`` series (the critical
``SafetaxAuditRunFailed``) then stands until the next run of that audit completes, not for the prune's week.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

log = logging.getLogger(__name__)
PRUNED_PIPELINES = ("safetax-alignment", "safetax-audit")
_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")


def parse_duration(text: str) -> float:
    """Seconds of ``30s``, ``15m``, ``12h`` or ``7d``; ValueError naming the forms otherwise.

    >>> parse_duration("7d"), parse_duration("90s")
    (604800.0, 90.0)
    """
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"--older-than {text!r} must be a number and one of s, m, h, d (e.g. 7d, 12h)")
    return float(int(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]])


@dataclass(frozen=True)
class Group:
    labels: dict[str, str]
    pushed_at: float


def _request(gateway: str, path: str, method: str = "GET", timeout: float = 10.0) -> bytes:
    url = gateway if "://" in gateway else f"http://{gateway}"
    parts = urlsplit(url)
    headers = {}
    if parts.username is not None:
        token = base64.b64encode(f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
        url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    req = urllib.request.Request(url.rstrip("/") + path, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the operator's own gateway
        return resp.read()


def groups(gateway: str) -> list[Group]:
    """Every group the gateway holds, with the time of its last push (``/api/v1/metrics``)."""
    body: dict[str, Any] = json.loads(_request(gateway, "/api/v1/metrics"))
    out = []
    for g in body.get("data", []):
        stamp = (g.get("push_time_seconds") or {}).get("metrics", [{}])[0].get("value", "0")
        out.append(Group({k: str(v) for k, v in g.get("labels", {}).items()}, float(stamp)))
    return out


def _per_run(labels: dict[str, str]) -> bool:
    """A group of one run of a safetax pipeline (not an audit's verdict group, which carries no run_id)."""
    return labels.get("job") == "safetax" and labels.get("pipeline") in PRUNED_PIPELINES and bool(labels.get("run_id"))


def _delete(gateway: str, doomed: list[dict[str, str]], dry_run: bool) -> None:
    for labels in doomed:
        path = "/metrics/job/safetax" + "".join(f"/{quote(k, safe='')}/{quote(v, safe='') or '@base64/='}"
                                                for k, v in sorted(labels.items()) if k != "job")
        if not dry_run:
            _request(gateway, path, method="DELETE")
        log.info("%s group %s", "would delete" if dry_run else "deleted", {k: v for k, v in labels.items() if k != "job"})


def prune(gateway: str, older_than_s: float, dry_run: bool = False, now: float | None = None) -> list[dict[str, str]]:
    """Delete the per-run groups last pushed more than ``older_than_s`` ago; return their labels."""
    now = time.time() if now is None else now
    doomed = [g.labels for g in groups(gateway) if _per_run(g.labels) and now - g.pushed_at > older_than_s]
    _delete(gateway, doomed, dry_run)
    return doomed


def clear_earlier_audit_runs(gateway: str, audit: str, run_id: str, started_at: float) -> list[dict[str, str]]:
    """Delete the per-run groups of audit ``audit``'s other runs last pushed before ``started_at`` (this run's start:
    a run still going on beside this one keeps its groups); return their labels."""
    doomed = [g.labels for g in groups(gateway) if _per_run(g.labels) and g.labels.get("pipeline") == "safetax-audit"
              and g.labels.get("audit") == audit and g.labels.get("run_id") != run_id and g.pushed_at < started_at]
    _delete(gateway, doomed, dry_run=False)
    return doomed
