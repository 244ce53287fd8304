"""Report sections beyond the results table: RPSA's frozen-ratio history and the verdicts of the safety gate
(or of audits), as report blocks."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from safetax.analysis.document import Block, Heading, Image, Table, Text
from safetax.rpsa.plots import plot_dynamic_ratio


def _history(rows: Sequence[Mapping[str, Any]]) -> list[tuple[int, float, float]]:
    """``(step, conflict, k)`` of an ``rpsa.json`` history (rows ``{"step", "conflict", "k", ...}``)."""
    return [(int(r["step"]), float(r["conflict"]), float(r["k"])) for r in rows]


def rpsa_section(histories: Mapping[str, Mapping[str, Any]], out_dir: Path) -> list[Block]:
    """RPSA's gradient conflict and frozen ratio over training, one plot per RPSA method; ``histories`` maps a
    method's label to its train output's ``rpsa.json`` (``{"history": [...], "final_k", "frozen_share"}``).
    Methods that are not RPSA (``{"rpsa": false}``) or logged no step are left out."""
    blocks: list[Block] = []
    rows: list[tuple[str, ...]] = []
    for label, record in sorted(histories.items()):
        history = _history(record.get("history") or [])
        if not history:
            continue
        plot = plot_dynamic_ratio(history, out_dir / f"rpsa-ratio-{_safe(label)}.png")
        blocks.append(Image(plot, f"RPSA {label}: gradient conflict c and frozen ratio k per optimiser step"))
        rows.append((label, str(len(history)), _num(record.get("final_k")), _num(record.get("frozen_share"))))
    if not blocks:
        return []
    intro = Text("Per RPSA method: the share of parameters whose reasoning and safety gradients disagree in sign "
                 "(conflict c) and the share of parameters frozen by the Fisher mask (k), at each update of the ratio.")
    table = Table(("method", "updates", "final k", "frozen share"), tuple(rows), (False, True, True, True), "rpsa")
    return [Heading("RPSA's frozen ratio"), intro, table, *blocks]


def verdict_section(verdicts: Mapping[str, Mapping[str, Any]], gate: Mapping[str, Any] | None = None,
                    title: str = "Safety gate verdicts") -> list[Block]:
    """One row per checkpoint: pass / fail, what the verdict decided on and every failed criterion.

    ``verdicts`` maps a checkpoint to a verdict record (:meth:`safetax.audit.verdict.Verdict.to_dict`, or an
    audit ledger record); ``gate`` is the gate's ``gate.json`` (which checkpoint it promoted, where)."""
    if not verdicts and not gate:
        return []
    blocks: list[Block] = [Heading(title)]
    if gate:
        if gate.get("gate") == "promoted":
            from safetax.audit.gate import choice

            how = (f" It has {choice(str(gate['ranked_on']))}; the `pareto` column above is on means, over every "
                   "checkpoint.") if gate.get("ranked_on") else ""
            blocks.append(Text(f"Promoted `{gate.get('checkpoint')}` to `{gate.get('uri')}`.{how}"))
        elif gate.get("gate") == "off":
            blocks.append(Text("No gate: the run had no `gate_thresholds`."))
    rows = []
    for checkpoint, v in sorted(verdicts.items()):
        failed = v.get("failed") or []
        label = str(v.get("verdict") or ("pass" if not failed else "fail"))
        reasons = "; ".join(str(f.get("message") or f.get("criterion")) for f in failed) or "-"
        rows.append((checkpoint, label.upper(), str(v.get("decided_on") or "point estimates"), _num(v.get("safety_tax_rate")), reasons))
    if rows:
        blocks.append(Table(("checkpoint", "verdict", "decided on", "str", "failed criteria"), tuple(rows),
                            (False, False, False, True, False), "verdicts"))
    return blocks


def _num(value: object) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{float(value):.2f}" if isinstance(value, (int, float)) else str(value)


def _safe(label: str) -> str:
    """A file-name-safe form of a method label.

    >>> _safe("rpsa-lora+ortho/x")
    'rpsa-lora-ortho-x'
    """
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in label)
