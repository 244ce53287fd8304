"""Audit reports: Markdown (the KFP UI shows it) and a standalone HTML page; scores only, never text."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from safetax.audit.telemetry import Audited
from safetax.audit.verdict import Thresholds, attack_success_rate, mean_of
from safetax.records import CheckpointScores


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def score_rows(a: Audited) -> list[tuple[str, str, str, str]]:
    """(figure, benchmark, value, against baseline) rows of one checkpoint."""
    s, v = a.scores, a.verdict
    rows = [("safety score", b, _pct(x), "") for b, x in sorted(s.safety.items())]
    rows += [("attack success rate", b, _pct(attack_success_rate(s, b)), "") for b in sorted(s.safety)]
    rows += [("over-refusal", b, _pct(x), "") for b, x in sorted(s.overrefusal.items())]
    rows += [("pass@1", b, _pct(x), "" if b not in v.reasoning_drop else f"drop {100 * v.reasoning_drop[b]:+.1f} pts")
             for b, x in sorted(s.reasoning.items())]
    if v.safety_tax_rate is not None:
        rows.append(("safety tax rate", "", f"{v.safety_tax_rate:.3f}", "vs baseline"))
    unscored = sum(c.get("unscored", 0) for c in s.counts.values())
    rows.append(("unscored responses", "", str(unscored), "counted as not safe"))
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
        s = a.scores
        rows.append((a.checkpoint, a.verdict.label, _pct(mean_of(s.safety)), _pct(mean_of(s.overrefusal) if s.overrefusal else None),
                     _pct(mean_of(s.reasoning) if s.reasoning else None),
                     "; ".join(f.message for f in a.verdict.failed) or "-"))
    lines += _md_table(("checkpoint", "verdict", "safety (mean)", "over-refusal (mean)", "pass@1 (mean)", "failed criteria"), rows)
    if gate:
        lines += ["", gate]
    if plot:
        lines += ["", f"![safety vs reasoning]({plot})"]
    return "\n".join(lines) + "\n"



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
        ax.scatter(100 * mean_of(a.scores.reasoning), 100 * mean_of(a.scores.safety), c=colour, s=40)
        ax.annotate(a.checkpoint, (100 * mean_of(a.scores.reasoning), 100 * mean_of(a.scores.safety)), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    if baseline is not None and baseline.reasoning:
        ax.scatter(100 * mean_of(baseline.reasoning), 100 * mean_of(baseline.safety), marker="*", c="black", s=120, label="baseline")
        ax.legend(loc="lower left")
    ax.set_xlabel("reasoning: mean pass@1 (%)")
    ax.set_ylabel("safety: mean safety score (%)")
    ax.set_title("Audit: green pass, red fail")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
