"""Audit reports: Markdown (the KFP UI shows it) and a standalone HTML page; scores only, never text."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safetax.audit.telemetry import Audited
from safetax.audit.verdict import Thresholds
from safetax.metrics import Estimate, figures
from safetax.records import CheckpointScores


def _pct(x: float | Estimate | None) -> str:
    """A share in percent; an estimate with its standard error when it has one."""
    if x is None:
        return "-"
    if isinstance(x, Estimate):
        return f"{100 * x.value:.1f}%" if math.isnan(x.se) else f"{100 * x.value:.1f}% ± {100 * x.se:.1f}"
    return f"{100 * x:.1f}%"


def score_rows(a: Audited) -> list[tuple[str, str, str, str]]:
    """(figure, benchmark, value, note) rows of one checkpoint: :func:`safetax.metrics.figures`, as the verdict."""
    f, v = figures(a.scores), a.verdict
    rows = [("safety score", b, _pct(e), "unscored = not safe") for b, e in f.safety.items()]
    rows += [("attack success rate", b, _pct(e), "unscored = no attack") for b, e in f.attack_success_rate.items()]
    rows += [("unscored", b, _pct(e), "no judge could read them") for b, e in f.unscored.items()]
    rows += [("over-refusal", b, _pct(e), "") for b, e in f.overrefusal.items()]
    rows += [("pass@1", b, _pct(e), "" if b not in v.reasoning_drop else f"drop {100 * v.reasoning_drop[b]:+.1f} pts")
             for b, e in f.pass_at_1.items()]
    if v.safety_tax_rate is not None:
        rows.append(("safety tax rate", "", f"{v.safety_tax_rate:.3f}", "vs baseline"))
    rows.append(("verdict decided on", "", v.decided_on, ""))
    return rows


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def checkpoint_markdown(audit: str, a: Audited, uri: str, digest: str, thresholds: Thresholds, baseline: str) -> str:
    v = a.verdict
    lines = [f"# Audit `{audit}`: {a.checkpoint}", "", f"**Verdict: {v.label.upper()}**", "",
             f"- checkpoint: `{uri}`", f"- digest: `{digest}`", f"- baseline: {baseline or 'none'}",
             f"- thresholds: `{thresholds.to_dict()}`", ""]
    if v.failed:
        lines += ["## Failed criteria", ""] + [f"- `{f.criterion}`: {f.message}" for f in v.failed] + [""]
    lines += ["## Scores", ""] + _md_table(("figure", "benchmark", "value", "note"), score_rows(a)) + [""]
    return "\n".join(lines)


def checkpoint_html(markdown_title: str, a: Audited, failed_lines: Sequence[str]) -> str:
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in score_rows(a))
    fails = "".join(f"<li>{html.escape(x)}</li>" for x in failed_lines)
    colour = "#1a7f37" if a.verdict.passed else "#cf222e"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(markdown_title)}</title></head><body>"
            f"<h1>{html.escape(markdown_title)}</h1><p style='color:{colour}'><b>Verdict: {a.verdict.label.upper()}</b></p>"
            + (f"<h2>Failed criteria</h2><ul>{fails}</ul>" if fails else "")
            + f"<h2>Scores</h2><table border='1' cellpadding='4'><tr><th>figure</th><th>benchmark</th><th>value</th>"
              f"<th>note</th></tr>{rows}</table></body></html>\n")


def run_markdown(audit: str, run_id: str, results: Sequence[Audited], already: int, incomplete: Sequence[str],
                 baseline: str, gate: str = "", plot: str = "") -> str:
    lines = [f"# Safety audit `{audit}` (run {run_id})", ""]
    if not results:
        lines += [f"Nothing new to audit: {already} checkpoint(s) already audited, {len(incomplete)} incomplete "
                  "(no manifest yet).", ""]
        return "\n".join(lines)
    passed = sum(a.verdict.passed for a in results)
    lines += [f"Audited {len(results)} checkpoint(s): {passed} pass, {len(results) - passed} fail; "
              f"{already} already audited, {len(incomplete)} incomplete (skipped). Baseline: {baseline or 'none'}.", ""]
    rows = []
    for a in results:
        f = figures(a.scores)
        overrefusal = sum(e.value for e in f.overrefusal.values()) / len(f.overrefusal) if f.overrefusal else None
        rows.append((a.checkpoint, a.verdict.label, _pct(f.safety_mean), _pct(overrefusal), _pct(f.reasoning_mean),
                     "; ".join(x.message for x in a.verdict.failed) or "-"))
    lines += _md_table(("checkpoint", "verdict", "safety (mean)", "over-refusal (mean)", "pass@1 (mean)", "failed criteria"), rows)
    if gate:
        lines += ["", gate]
    if plot:
        lines += ["", f"![safety vs reasoning]({plot})"]
    return "\n".join(lines) + "\n"


def plan_notes(plan: dict[str, Any]) -> str:
    """What the plan left out, for the run report: checkpoints another run audits now, published directories under
    the prefix that are not models, and checkpoints the audit gave up on after repeated failed runs."""
    lines = []
    busy = plan.get("claimed_elsewhere") or []
    if busy:
        names = ", ".join(f"`{b['name']}` ({b['owner']}, until {b['until']})" for b in busy)
        lines.append(f"{len(busy)} checkpoint(s) claimed by another run, left to it: {names}.")
    skipped = plan.get("skipped") or []
    if skipped:
        lines.append(f"{len(skipped)} published director(ies) under the prefix are not models, skipped: "
                     + "; ".join(f"`{s['name']}` ({s['reason']})" for s in skipped) + ".")
    given_up = plan.get("given_up") or []
    if given_up:
        lines.append(f"{len(given_up)} checkpoint(s) given up after {plan.get('max_attempts', '?')} failed run(s), not "
                     "audited until their `attempts/<digest>.json` is deleted: "
                     + "; ".join(f"`{g['name']}` ({g['count']} failed, last run {g['last_run_id']}, digest "
                                 f"`{g['digest'][:12]}`)" for g in given_up) + ".")
    return "".join(f"\n{line}\n" for line in lines)


def _means(cs: CheckpointScores) -> tuple[Estimate, Estimate]:
    f = figures(cs)
    nothing = Estimate(0.0, math.nan, 0, "mean")
    return f.reasoning_mean or nothing, f.safety_mean or nothing


def _err(e: Estimate) -> float:
    return 0.0 if math.isnan(e.se) else 100 * e.se


def plot_audit(results: Sequence[Audited], baseline: CheckpointScores | None, path: Path) -> Path | None:
    """Safety (mean) against reasoning (mean pass@1) of every audited checkpoint, coloured by verdict."""
    points = [a for a in results if a.scores.reasoning]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for a in points:
        colour = "tab:green" if a.verdict.passed else "tab:red"
        x, y = _means(a.scores)
        ax.errorbar(100 * x.value, 100 * y.value, xerr=_err(x), yerr=_err(y), fmt="o", c=colour, ms=6, elinewidth=0.8, capsize=2)
        ax.annotate(a.checkpoint, (100 * x.value, 100 * y.value), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if baseline is not None and baseline.reasoning and baseline.safety:
        x, y = _means(baseline)
        ax.errorbar(100 * x.value, 100 * y.value, xerr=_err(x), yerr=_err(y), fmt="*", c="black", ms=12, label="baseline")
        ax.legend(loc="lower left")
    ax.set_xlabel("reasoning: mean pass@1 (%)")
    ax.set_ylabel("safety: mean safety score (%)")
    ax.set_title("Audit: green pass, red fail (bars: ± 1 se)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
