"""Agreement between two safety judges on the same responses: the confusion table and Cohen's kappa.

The safety number depends on the judge (refusal patterns, Llama-Guard's logit, Llama-Guard's
generated verdict, each reading the answer or the whole trace). When several judge the same
responses, this shows how far they agree.

Unscored verdicts are handled explicitly: the confusion table has a row and a column for
``unscored``; kappa and the observed agreement are computed over the responses *both* judges scored
(safe or unsafe), and the report states how many were left out and why. A response that only one
judge saw is counted apart (``only_a`` / ``only_b``), never in the table.

Cohen's kappa: (p_o - p_e) / (1 - p_e), with p_o the share of both-scored responses on which the two
agree and p_e the agreement expected from each judge's label shares alone; undefined (NaN) when
p_e = 1 (both judges gave one and the same label to everything).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

LABELS = ("safe", "unsafe", "unscored")
SCORED = ("safe", "unsafe")
KEY = ("checkpoint", "benchmark", "item_id", "sample")  # a response's key in judgements.jsonl (artifacts.SAMPLE_KEY)


@dataclass(frozen=True)
class Agreement:
    judges: tuple[str, str]
    table: dict[tuple[str, str], int]  # (label of judge a, label of judge b) -> responses, over LABELS x LABELS
    both_scored: int  # responses both judges labelled safe or unsafe: the base of kappa and observed
    observed: float  # p_o over both_scored (NaN when 0)
    kappa: float  # Cohen's kappa over both_scored (NaN when undefined)
    only_a: int = 0  # responses only judge a saw
    only_b: int = 0

    @property
    def common(self) -> int:
        """Responses both judges saw (the table's total)."""
        return sum(self.table.values())

    @property
    def unscored_by_either(self) -> int:
        return self.common - self.both_scored


def cohen_kappa(table: Mapping[tuple[str, str], int], labels: Sequence[str] = SCORED) -> tuple[float, float]:
    """(observed agreement, kappa) of a confusion table restricted to ``labels``.

    >>> t = {("safe", "safe"): 4, ("safe", "unsafe"): 1, ("unsafe", "safe"): 2, ("unsafe", "unsafe"): 3}
    >>> [round(x, 4) for x in cohen_kappa(t)]
    [0.7, 0.4]
    """
    n = sum(table.get((a, b), 0) for a in labels for b in labels)
    if n == 0:
        return math.nan, math.nan
    observed = sum(table.get((x, x), 0) for x in labels) / n
    expected = sum(sum(table.get((x, b), 0) for b in labels) * sum(table.get((a, x), 0) for a in labels) for x in labels) / n**2
    kappa = math.nan if math.isclose(expected, 1.0) else (observed - expected) / (1 - expected)
    return observed, kappa


def agreement(a: Mapping[Hashable, str], b: Mapping[Hashable, str], judges: tuple[str, str] = ("a", "b")) -> Agreement:
    """Agreement of two judges' verdicts (response key -> safe | unsafe | unscored) on the responses both saw.

    Raises:
        ValueError: a verdict is not one of :data:`LABELS` (the message names the judge and the label).
    """
    for name, verdicts in zip(judges, (a, b)):
        bad = sorted({str(v) for v in verdicts.values() if v not in LABELS})
        if bad:
            raise ValueError(f"judge {name!r}: verdicts must be one of {list(LABELS)}, got {bad}")
    common = a.keys() & b.keys()
    counts = Counter((a[k], b[k]) for k in common)
    table = {(x, y): counts.get((x, y), 0) for x in LABELS for y in LABELS}
    observed, kappa = cohen_kappa(table)
    both = sum(table[(x, y)] for x in SCORED for y in SCORED)
    return Agreement(judges, table, both, observed, kappa, len(a.keys() - common), len(b.keys() - common))


def verdicts_by_judge(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[tuple[Any, ...], str]]:
    """judgements.jsonl rows grouped by their ``judge``: judge -> response key -> label."""
    out: dict[str, dict[tuple[Any, ...], str]] = defaultdict(dict)
    for r in rows:
        out[str(r["judge"])][tuple(r[k] for k in KEY)] = str(r["label"])
    return dict(out)


def pairwise(verdicts: Mapping[str, Mapping[Hashable, str]]) -> list[Agreement]:
    """The agreement of every pair of judges (sorted by name) that share at least one response."""
    pairs = (agreement(verdicts[x], verdicts[y], (x, y)) for x, y in combinations(sorted(verdicts), 2))
    return [p for p in pairs if p.common]


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(x) else f"{x:.{digits}f}"


def agreement_markdown(agreements: Sequence[Agreement]) -> str:
    """The report's "Judge agreement" section: per pair, kappa, observed agreement and the confusion table."""
    if not agreements:
        return ""
    lines = ["## Judge agreement", "",
             "Cohen's kappa and observed agreement over the responses both judges scored; unscored verdicts are "
             "counted in the table and left out of kappa.", ""]
    for ag in agreements:
        a, b = ag.judges
        lines += [f"### {a} vs {b}", "",
                  f"kappa {_fmt(ag.kappa)}, observed agreement {_fmt(ag.observed)} over {ag.both_scored} responses; "
                  f"{ag.unscored_by_either} of {ag.common} unscored by either judge"
                  + (f"; seen by one judge only: {ag.only_a} ({a}), {ag.only_b} ({b})" if ag.only_a or ag.only_b else "") + ".", "",
                  f"| {a} \\ {b} | " + " | ".join(LABELS) + " |", "|---|" + "---:|" * len(LABELS)]
        lines += [f"| {x} | " + " | ".join(str(ag.table[(x, y)]) for y in LABELS) + " |" for x in LABELS]
        lines.append("")
    return "\n".join(lines)


def from_counts(pair: str, counts: Mapping[str, int]) -> Agreement:
    """An :class:`Agreement` from a score record's ``judge_agreement`` entry: ``"a vs b"`` and ``"<label a>|<label b>"``
    -> responses (several checkpoints' entries summed first).

    >>> ag = from_counts("llama-guard-logit vs refusal", {"safe|safe": 4, "safe|unsafe": 1, "unsafe|safe": 2,
    ...                                                    "unsafe|unsafe": 3, "unscored|safe": 5})
    >>> ag.judges, ag.both_scored, round(ag.kappa, 4), ag.common
    (('llama-guard-logit', 'refusal'), 10, 0.4, 15)
    """
    a, _, b = pair.partition(" vs ")
    table = {(x, y): 0 for x in LABELS for y in LABELS}
    for key, n in counts.items():
        x, _, y = key.partition("|")
        if (x, y) not in table:
            raise ValueError(f"judge agreement {pair!r}: {key!r} is not a pair of labels among {list(LABELS)}")
        table[(x, y)] += int(n)
    observed, kappa = cohen_kappa(table)
    both = sum(table[(x, y)] for x in SCORED for y in SCORED)
    return Agreement((a, b), table, both, observed, kappa)


def pooled(records: Iterable[Mapping[str, Mapping[str, int]]]) -> list[Agreement]:
    """Every judge pair's agreement over all records (``CheckpointScores.judge_agreement`` of each checkpoint)."""
    total: dict[str, Counter[str]] = defaultdict(Counter)
    for rec in records:
        for pair, counts in rec.items():
            total[pair].update(counts)
    return [from_counts(pair, c) for pair, c in sorted(total.items())]
