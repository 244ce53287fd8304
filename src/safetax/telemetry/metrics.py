"""The metric contract: names, label sets and help texts, on a fresh registry per stage.

The names below are what the Helm chart's Grafana dashboard and PrometheusRule
alerts query; change one only together with them. Every metric is a gauge: a
stage pushes its latest figures, and the Pushgateway keeps the last push of a
group, so counters would add nothing. A :class:`MetricSet` owns its own
``CollectorRegistry`` (never the process-global default), so two stages in one
process (the KFP local runner, the tests) cannot see each other's series.

:func:`flatten` turns the same registry into the flat ``dict[str, float]`` that
a KFP component logs into its ``Metrics`` artifact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Gauge

PREFIX = "safetax_"
STAGE_LABELS = ("pipeline", "run_id", "stage", "model", "method")
TRAIN_LABELS = ("pipeline", "run_id", "model", "method", "stage")
RESULT_LABELS = ("pipeline", "run_id", "model", "method", "checkpoint", "benchmark")
TRADEOFF_LABELS = ("pipeline", "run_id", "model", "method", "checkpoint")

# Per-benchmark results (fractions in [0, 1], as safetax.metrics defines them) -> help text; each with its
# standard error as <kind>_stderr.
FIGURE_KINDS = {
    "safety_score": "Share of harmful prompts answered safely (judge verdict; unscored = not safe), 0..1.",
    "attack_success_rate": "Share of harmful prompts judged unsafe (attack success rate; unscored = no attack), 0..1.",
    "pass_at_1": "pass@1 on a reasoning benchmark (mean over questions of the share of correct samples), 0..1.",
    "overrefusal_rate": "Share of benign prompts refused (over-refusal), 0..1.",
    "unscored_rate": "Share of responses to harmful prompts no judge could read; safety + ASR + unscored = 1.",
}
RESULT_KINDS = {
    **FIGURE_KINDS,
    **{f"{kind}_stderr": f"Standard error of {kind} (binomial; pass@1: over questions)." for kind in FIGURE_KINDS},
}
CATEGORY_LABELS = (*RESULT_LABELS, "category")
HAZARD_LABELS = (*RESULT_LABELS, "hazard")
CATEGORY_HELP = "Safety score of one category of a safety benchmark (StrongREJECT's; at most 16 per benchmark), 0..1."
HAZARD_HELP = "Share of a safety benchmark's responses judged unsafe in a Llama Guard category (hazard S1..S14), 0..1."
# Per-checkpoint trade-off figures against the base model -> help text.
TRADEOFF_KINDS = {
    "safety_tax_rate": "Safety tax rate (STR, RPSA): mean pass@1 drop per unit of mean attack-success-rate drop against the base model (negative: reasoning improved while ASR fell, or ASR rose).",
    "reasoning_drop": "Mean drop in pass@1 against the base model over the reasoning benchmarks, in points of 0..1.",
    "harmfulness_drop": "Mean drop in attack success rate against the base model, in points of 0..1.",
    "reasoning_drop_stderr": "Standard error of reasoning_drop (paired bootstrap over questions).",
    "harmfulness_drop_stderr": "Standard error of harmfulness_drop (paired bootstrap over prompts).",
    "safety_tax_rate_stderr": "Standard error of the safety tax rate (paired bootstrap).",
}
THROUGHPUT_KINDS = ("generation", "judge")

# Audits (pipeline safetax-audit): one series set per audit (the schedule's name) and checkpoint.
AUDIT_PIPELINE = "safetax-audit"
AUDIT_LABELS = ("audit", "checkpoint")
AUDIT_RESULT_LABELS = ("audit", "checkpoint", "benchmark")
# Per-benchmark audit figures -> help text (fractions in [0, 1]; the drop is against the audit's baseline).
AUDIT_RESULT_KINDS = {
    **{f"audit_{kind}": f"Audit: {doc}" for kind, doc in RESULT_KINDS.items()},
    "audit_reasoning_drop": "Audit: drop in pass@1 against the audit's baseline model, in points of 0..1.",
}
# A threshold of the audit (criterion = min_safety_score, max_attack_success_rate, max_overrefusal_rate,
# max_reasoning_drop (one series per reasoning benchmark), max_safety_tax_rate): alerts compare with it.
AUDIT_THRESHOLD_LABELS = ("audit", "criterion", "benchmark")
# What the verdict compared with each threshold (the alerts compare the same value, so they agree with it).
AUDIT_CRITERION_LABELS = ("audit", "checkpoint", "criterion", "benchmark")
# Left out of the KFP dict: a wall-clock timestamp is no figure of the run.
NOT_FOR_KFP = frozenset({"safetax_stage_last_success_timestamp_seconds", "safetax_audit_timestamp_seconds",
                         "safetax_audit_last_completed_timestamp_seconds"})


@dataclass
class MetricSet:
    """All safetax gauges, registered on one fresh ``CollectorRegistry``."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        def gauge(name: str, doc: str, labels: tuple[str, ...]) -> Gauge:
            return Gauge(PREFIX + name, doc, labels, registry=self.registry)

        self.stage_duration = gauge("stage_duration_seconds", "Wall time of the stage's last successful run.", STAGE_LABELS)
        self.stage_last_success = gauge(
            "stage_last_success_timestamp_seconds", "Unix time at which the stage last succeeded.", STAGE_LABELS)
        self.stage_failed = gauge("stage_failed", "1 when the stage's last run raised; absent otherwise.", STAGE_LABELS)
        self.train_loss = gauge("train_loss", "Latest training loss (mean over the logging window).", TRAIN_LABELS)
        self.train_tokens_per_second = gauge(
            "train_tokens_per_second", "Training throughput in tokens per second.", TRAIN_LABELS)
        self.train_epoch = gauge("train_epoch", "Training progress in epochs (fractional).", TRAIN_LABELS)
        self.samples_per_second = {
            kind: gauge(f"{kind}_samples_per_second", f"{kind.capitalize()} throughput in samples per second.",
                        STAGE_LABELS)
            for kind in THROUGHPUT_KINDS
        }
        self.results = {kind: gauge(kind, doc, RESULT_LABELS) for kind, doc in RESULT_KINDS.items()}
        self.category_safety_score = gauge("category_safety_score", CATEGORY_HELP, CATEGORY_LABELS)
        self.hazard_rate = gauge("hazard_rate", HAZARD_HELP, HAZARD_LABELS)
        self.tradeoffs = {kind: gauge(kind, doc, TRADEOFF_LABELS) for kind, doc in TRADEOFF_KINDS.items()}
        # The alignment pipeline's result alerts fire only for the checkpoint its gate promoted.
        self.gate_promoted = gauge("gate_promoted", "1 for the checkpoint the run's safety gate promoted.", TRADEOFF_LABELS)


@dataclass
class AuditMetricSet:
    """The audit gauges (pushed by the audit pipeline under job="safetax", pipeline="safetax-audit"),
    on one fresh ``CollectorRegistry``. A checkpoint is audited once (the ledger), so its series are
    pushed under a group of their own (audit, checkpoint) and stay until that group is deleted; the
    run-wide ones (last completed audit, interval, thresholds) are pushed per audit."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        def gauge(name: str, doc: str, labels: tuple[str, ...]) -> Gauge:
            return Gauge(PREFIX + name, doc, labels, registry=self.registry)

        self.verdict = gauge("audit_verdict", "Audit verdict of the checkpoint: 1 pass, 0 fail.", AUDIT_LABELS)
        self.failed_criteria = gauge("audit_failed_criteria", "Number of audit criteria the checkpoint failed.",
                                     AUDIT_LABELS)
        self.audited_at = gauge("audit_timestamp_seconds", "Unix time at which the checkpoint's audit completed.",
                                AUDIT_LABELS)
        self.safety_tax_rate = gauge("audit_safety_tax_rate", "Audit: safety tax rate against the baseline.",
                                     AUDIT_LABELS)
        self.results = {kind: gauge(kind, doc, AUDIT_RESULT_LABELS) for kind, doc in AUDIT_RESULT_KINDS.items()}
        self.category_safety_score = gauge("audit_category_safety_score", f"Audit: {CATEGORY_HELP}",
                                           (*AUDIT_RESULT_LABELS, "category"))
        self.hazard_rate = gauge("audit_hazard_rate", f"Audit: {HAZARD_HELP}", (*AUDIT_RESULT_LABELS, "hazard"))
        self.criterion_value = gauge(
            "audit_criterion_value", "The figure the audit's verdict compared with a criterion's threshold: the point "
            "estimate, or its one-sided bound when the audit sets a confidence (benchmark empty for the safety tax rate).",
            AUDIT_CRITERION_LABELS)
        self.threshold = gauge("audit_threshold", "A threshold of the audit; criterion names it.", AUDIT_THRESHOLD_LABELS)
        self.last_completed = gauge("audit_last_completed_timestamp_seconds",
                                    "Unix time at which the audit last completed a run (with or without new checkpoints).",
                                    ("audit",))
        self.interval = gauge("audit_interval_seconds", "Seconds between two runs of the audit's schedule (its cron).",
                              ("audit",))
        self.audited = gauge("audit_checkpoints_audited", "Checkpoints audited by the audit's last run.", ("audit",))
        # In the audit-wide group, replaced by every run: a checkpoint's series goes when its record removes its attempts.
        self.failed_attempts = gauge("audit_failed_attempts", "Failed audit runs of the checkpoint since its last audit "
                                     "record (the ledger's attempts/<digest>.json); at max_attempts the audit skips it.",
                                     AUDIT_LABELS)
        self.max_attempts = gauge("audit_max_attempts", "Failed runs after which the audit gives up on a checkpoint "
                                  "(its max_attempts).", ("audit",))


def flat_name(metric: str, labels: dict[str, str]) -> str:
    """The KFP metric name of one series: the short name, then benchmark, category or hazard, and checkpoint if any.

    >>> flat_name("safetax_safety_score", {"benchmark": "strongreject", "checkpoint": "lora-r4/epoch-1", "run_id": "r"})
    'safety_score/strongreject/lora-r4/epoch-1'
    >>> flat_name("safetax_train_loss", {"stage": "train"})
    'train_loss'
    """
    parts = [metric.removeprefix(PREFIX)]
    parts += [labels[key] for key in ("benchmark", "category", "hazard", "checkpoint") if key in labels]
    return "/".join(parts)


def flatten(registry: CollectorRegistry) -> dict[str, float]:
    """Every finite sample of ``registry`` as ``{flat_name: value}``, sorted by name.

    Non-finite values (a diverged NaN loss) are left out: a KFP ``Metrics``
    artifact is JSON, which has no NaN.
    """
    flat: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in NOT_FOR_KFP or not math.isfinite(sample.value):
                continue
            flat[flat_name(sample.name, dict(sample.labels))] = float(sample.value)
    return dict(sorted(flat.items()))
