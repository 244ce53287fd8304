"""Recurring runs as code: a schedules file, its cron expressions, and the plan that brings KFP in line with it.

Pure: no kfp import. :mod:`safetax.runner.schedules` lists what KFP holds and applies the :class:`Plan`.

A schedules file (YAML)::

    recurringRuns:
      - name: nightly-7b              # KFP display name: a DNS-1123 label
        cron: "0 2 * * *"             # 5 fields (min hour dom month dow) or KFP's 6 (seconds first)
        pipeline: safetax-audit       # a registered pipeline's display name
        version: latest               # default; or a version's name
        parameters: {audit_name: nightly-7b}
        maxConcurrency: 1             # default; KFP allows 1-10
        enabled: true                 # default
        catchup: false                # default: after a pause, start only the latest missed run (KFP's no_catchup)
        experiment: safetax-audits    # default; created when missing
        description: nightly audit    # optional

Cron expressions: :mod:`safetax.cron` (robfig/cron v1, as KFP reads them; KFP is always sent six fields).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from safetax.config import Checks, ConfigError
from safetax.cron import CronError, cron_interval_seconds, to_kfp_cron

DEFAULT_OWNER = "safetax"
DEFAULT_EXPERIMENT = "safetax-audits"
KFP_MAX_CONCURRENCY = 10  # KFP's API server rejects max_concurrency outside 1-10
NAME_RULE = ("a DNS-1123 label: 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit "
             "(KFP derives the ScheduledWorkflow resource name from it)")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_OWNER = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_MARKER = re.compile(r"\[managed-by: safetax/([^\]\s]+)\]")
_KEYS = ("name", "cron", "pipeline", "version", "parameters", "maxConcurrency", "enabled", "catchup", "experiment",
         "description")

# --- the schedules file ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RecurringRun:
    """One declared recurring run of a schedules file."""

    name: str
    cron: str
    pipeline: str
    version: str = "latest"  # "latest" = the pipeline's newest version (by created_at) at every sync
    parameters: Mapping[str, Any] = field(default_factory=dict)
    max_concurrency: int = 1
    enabled: bool = True
    # False = KFP's no_catchup: after a pause or a scheduler outage only the latest missed run starts, not one per
    # missed interval (an audit covers every new checkpoint in one run, so a backfill only queues duplicate work)
    catchup: bool = False
    experiment: str = DEFAULT_EXPERIMENT
    description: str = ""

    @property
    def kfp_cron(self) -> str:
        return to_kfp_cron(self.cron)


def load_schedules(path: str | Path) -> list[RecurringRun]:
    """Read and validate a schedules file; raise :class:`ConfigError` listing every problem."""
    path = Path(path)
    where = f"schedules file {path}"
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(where, [f"the file cannot be read: {e.strerror or e}"]) from None
    except yaml.YAMLError as e:
        raise ConfigError(where, [f"the file is not valid YAML: {e}"]) from None
    return parse_schedules(data, source=str(path))


def parse_schedules(data: Any, source: str = "<schedules>") -> list[RecurringRun]:
    """Validate the parsed YAML of a schedules file (see the module docstring)."""
    checks = Checks(f"schedules file {source}")
    if not isinstance(data, dict) or not isinstance(data.get("recurringRuns"), list):
        checks.fail("recurringRuns", data if not isinstance(data, dict) else data.get("recurringRuns"),
                    "a list of recurring runs under the top-level key `recurringRuns` ([] for none)")
        checks.raise_if_any()
    if unknown := sorted(set(data) - {"recurringRuns"}):
        checks.errors.append(f"unknown top-level key(s) {unknown}; allowed: ['recurringRuns']")
    runs, first_index = [], {}
    for i, entry in enumerate(data["recurringRuns"]):
        if run := _entry(entry, i, checks):
            runs.append(run)
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and name in first_index:
            checks.errors.append(f"`recurringRuns[{i}].name` {name!r} is also the name of "
                                 f"recurringRuns[{first_index[name]}]: names must be unique")
        elif isinstance(name, str):
            first_index[name] = i
    checks.raise_if_any()
    return runs


def _entry(entry: Any, i: int, checks: Checks) -> RecurringRun | None:
    """One entry as a RecurringRun, or None when it has problems (recorded in ``checks``)."""
    if not isinstance(entry, dict):
        checks.fail(f"recurringRuns[{i}]", entry, "a mapping with name, cron, pipeline, ...")
        return None
    errors_before = len(checks.errors)
    name = entry.get("name")
    at = f"recurringRuns[{i}]" + (f" ({name!r})" if isinstance(name, str) and name else "")
    if unknown := sorted(set(entry) - set(_KEYS)):
        checks.errors.append(f"`{at}` has unknown key(s) {unknown}; allowed: {list(_KEYS)}")
    if not isinstance(name, str) or not _LABEL.fullmatch(name):
        checks.fail(f"{at}.name", name, NAME_RULE)
    cron = entry.get("cron")
    if not isinstance(cron, str):
        checks.fail(f"{at}.cron", cron, "a cron string: 5 fields, 6 fields (seconds first) or an @descriptor")
    else:
        try:
            cron_interval_seconds(cron)  # parses, and rejects a schedule that never fires
        except CronError as e:
            checks.errors.append(f"`{at}.cron` {cron!r} is not a valid cron: {e}")
    for key, default in (("pipeline", None), ("version", "latest"), ("experiment", DEFAULT_EXPERIMENT)):
        value = entry.get(key, default)
        if not isinstance(value, str) or not value.strip():
            checks.fail(f"{at}.{key}", value, "a non-empty string" + (" (a registered pipeline's name)" if key == "pipeline" else ""))
    parameters = entry.get("parameters", {})
    if not isinstance(parameters, dict) or not all(isinstance(k, str) for k in parameters):
        checks.fail(f"{at}.parameters", parameters, "a mapping of pipeline parameter names to values")
    else:
        for key, value in parameters.items():
            if problem := _json_problem(value):
                checks.fail(f"{at}.parameters.{key}", value, f"a KFP parameter value (string, number, boolean, list or mapping; {problem})")
    concurrency = entry.get("maxConcurrency", 1)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= KFP_MAX_CONCURRENCY:
        checks.fail(f"{at}.maxConcurrency", concurrency, f"an integer in [1, {KFP_MAX_CONCURRENCY}] (KFP's limit)")
    enabled, catchup = entry.get("enabled", True), entry.get("catchup", False)
    for key, value in (("enabled", enabled), ("catchup", catchup)):
        if not isinstance(value, bool):
            checks.fail(f"{at}.{key}", value, "true or false")
    description = entry.get("description", "")
    if not isinstance(description, str) or "[managed-by:" in description:
        checks.fail(f"{at}.description", description, "a string without '[managed-by:' (safetax appends its owner marker)")
    if len(checks.errors) > errors_before:
        return None
    return RecurringRun(name=name, cron=cron, pipeline=entry["pipeline"], version=entry.get("version", "latest"),
                        parameters=parameters, max_concurrency=concurrency, enabled=enabled, catchup=catchup,
                        experiment=entry.get("experiment", DEFAULT_EXPERIMENT), description=description)


def root_inputs(pipeline_spec: Any) -> frozenset[str] | None:
    """The root input names (parameters and artifacts) of a compiled pipeline spec as KFP's API returns a version's
    ``pipeline_spec``: the PipelineSpec itself, or ``{"pipeline_spec": ..., "platform_spec": ...}`` for a pipeline
    compiled with a platform spec (safetax's are). None when it is neither (nothing to check against)."""
    if isinstance(pipeline_spec, Mapping) and "root" not in pipeline_spec:
        pipeline_spec = pipeline_spec.get("pipeline_spec")
    root = pipeline_spec.get("root") if isinstance(pipeline_spec, Mapping) else None
    if not isinstance(root, Mapping):
        return None
    inputs = root.get("inputDefinitions") or {}
    return frozenset(inputs.get("parameters") or {}) | frozenset(inputs.get("artifacts") or {})


def unknown_parameters(run: RecurringRun, allowed: Collection[str], version: str = "") -> str:
    """Why ``run``'s parameters do not fit its pipeline (names not among ``allowed``, its root inputs), "" when they do.

    KFP would start every scheduled run and fail it at the first task; a typo such as ``judge_batch_size`` for a
    parameter the pipeline does not have is caught here, before a recurring run is created.
    """
    unknown = sorted(set(run.parameters) - set(allowed))
    if not unknown:
        return ""
    where = f"{run.pipeline!r}" + (f" version {version!r}" if version else "")
    return (f"{run.name}: parameter(s) {unknown} are not inputs of pipeline {where}; "
            f"allowed: {sorted(allowed)}")


def _json_problem(value: Any) -> str:
    """Why ``value`` cannot cross the KFP API as a parameter ("" when it can)."""
    if value is None:
        return "null is not allowed"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not allowed"
    if isinstance(value, (str, bool, int, float)):
        return ""
    if isinstance(value, list):
        return next((p for p in map(_json_problem, value) if p), "")
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return "mapping keys must be strings"
        return next((p for p in map(_json_problem, value.values()) if p), "")
    return f"{type(value).__name__} is not allowed"


# --- ownership and the plan ---------------------------------------------------------------------------

def owner_marker(owner: str) -> str:
    """The tag every recurring run we create carries in its description."""
    return f"[managed-by: safetax/{owner}]"


def owner_of(description: str | None) -> str | None:
    """The safetax owner recorded in a description, or None for a run safetax does not manage.

    >>> owner_of("nightly audit [managed-by: safetax/prod]"), owner_of("made by hand")
    ('prod', None)
    """
    match = _MARKER.search(description or "")
    return match.group(1) if match else None


def check_owner(owner: str) -> None:
    """An owner must fit the marker: a Helm release name (a DNS-1123 subdomain, 53 characters at most) or "safetax"."""
    if not isinstance(owner, str) or len(owner) > 53 or not _OWNER.fullmatch(owner):
        raise ConfigError("owner", [f"`owner` must be a Helm release name: 1-53 lowercase letters, digits, '-' or '.', "
                                    f"starting and ending with a letter or digit, got {owner!r}"])


@dataclass(frozen=True)
class ExistingRun:
    """A recurring run as KFP holds it."""

    name: str
    id: str
    cron: str  # "" for a periodic (interval) trigger
    pipeline_id: str
    version_id: str
    parameters: Mapping[str, Any]
    max_concurrency: int
    enabled: bool
    description: str
    experiment_id: str = ""
    no_catchup: bool = False  # KFP's default: backfill every missed interval

    @property
    def owner(self) -> str | None:
        return owner_of(self.description)


@dataclass(frozen=True)
class DesiredRun:
    """A declared run with its pipeline, version and experiment resolved to KFP ids."""

    spec: RecurringRun
    pipeline_id: str
    version_id: str
    experiment_id: str = ""  # "" while the experiment does not exist yet (created on apply)
    version_name: str = ""  # for the plan's text only

    def description(self, owner: str) -> str:
        return f"{self.spec.description} {owner_marker(owner)}".strip()


@dataclass(frozen=True)
class Replacement:
    existing: ExistingRun
    desired: DesiredRun
    reasons: tuple[str, ...]


@dataclass
class Plan:
    """What a sync does: KFP cannot update a recurring run, so a changed one is deleted and created again."""

    owner: str
    create: list[DesiredRun] = field(default_factory=list)
    replace: list[Replacement] = field(default_factory=list)
    delete: list[tuple[ExistingRun, str]] = field(default_factory=list)  # (run, reason)
    unchanged: list[ExistingRun] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return len(self.create) + len(self.replace) + len(self.delete)

    def render(self) -> str:
        """The plan as lines: ``+ create``, ``~ replace (what changed)``, ``- delete``, ``= unchanged``, ``! conflict``."""
        names = [d.spec.name for d in self.create] + [r.desired.spec.name for r in self.replace] + [
            run.name for run, _ in self.delete] + [run.name for run in self.unchanged]
        w = max(map(len, names), default=0)
        lines = [f"recurring runs managed by safetax/{self.owner}:"]
        lines += [f"  + create    {d.spec.name:<{w}}  [{d.spec.kfp_cron}] {_target(d)}" for d in self.create]
        lines += [f"  ~ replace   {r.desired.spec.name:<{w}}  ({'; '.join(r.reasons)})" for r in self.replace]
        lines += [f"  - delete    {run.name:<{w}}  (id {run.id}; {reason})" for run, reason in self.delete]
        lines += [f"  = unchanged {run.name}" for run in self.unchanged]
        lines += [f"  ! conflict  {text}" for text in self.conflicts]
        lines.append(f"{len(self.create)} to create, {len(self.replace)} to replace, {len(self.delete)} to delete, "
                     f"{len(self.unchanged)} unchanged" + (f", {len(self.conflicts)} conflict(s)" if self.conflicts else ""))
        return "\n".join(lines)


def _target(d: DesiredRun) -> str:
    version = d.version_name or d.version_id
    latest = " (latest)" if d.spec.version == "latest" else ""
    return (f"{d.spec.pipeline}@{version}{latest}, experiment {d.spec.experiment}" + ("" if d.spec.enabled else ", disabled")
            + (", catchup" if d.spec.catchup else ""))


def differences(existing: ExistingRun, desired: DesiredRun, owner: str) -> tuple[str, ...]:
    """What a replace would change, in words; empty when the run already matches."""
    spec, reasons = desired.spec, []
    if existing.cron.split() != spec.kfp_cron.split():
        reasons.append(f"cron {existing.cron!r} -> {spec.kfp_cron!r}")
    if existing.pipeline_id != desired.pipeline_id:
        reasons.append(f"pipeline {existing.pipeline_id} -> {desired.pipeline_id} ({spec.pipeline})")
    elif existing.version_id != desired.version_id:
        reasons.append(f"pipeline version {existing.version_id} -> {desired.version_name or desired.version_id}")
    if dict(existing.parameters) != dict(spec.parameters):
        reasons.append("parameters: " + _parameter_changes(existing.parameters, spec.parameters))
    if existing.max_concurrency != spec.max_concurrency:
        reasons.append(f"maxConcurrency {existing.max_concurrency} -> {spec.max_concurrency}")
    if existing.enabled != spec.enabled:
        reasons.append(f"enabled {str(existing.enabled).lower()} -> {str(spec.enabled).lower()}")
    if existing.no_catchup == spec.catchup:
        reasons.append(f"catchup {str(not existing.no_catchup).lower()} -> {str(spec.catchup).lower()}")
    if existing.experiment_id != desired.experiment_id:
        reasons.append(f"experiment -> {spec.experiment}" + ("" if desired.experiment_id else " (to be created)"))
    if existing.description != desired.description(owner):
        reasons.append("description")
    return tuple(reasons)


def _parameter_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    changed = {k for k in old.keys() & new.keys() if old[k] != new[k]}
    return ", ".join(f"{k} {'changed' if k in changed else 'added' if k in new else 'removed'}"
                     for k in sorted(changed | (new.keys() ^ old.keys())))


def plan(declared: Sequence[DesiredRun], existing: Sequence[ExistingRun], owner: str = DEFAULT_OWNER) -> Plan:
    """Compare the declared runs with what KFP holds.

    Only runs whose description carries ``owner``'s marker are ours: one the file no longer lists is
    deleted, one that differs is replaced. A run without the marker, or with another owner's, is
    never touched; when it has the name of a declared run that is a conflict (the sync stops).
    Two of our runs with one name (an interrupted sync) keep the first and delete the others.
    """
    check_owner(owner)
    result = Plan(owner)
    by_name: dict[str, list[ExistingRun]] = {}
    for run in existing:
        by_name.setdefault(run.name, []).append(run)
    for desired in declared:
        runs = by_name.get(desired.spec.name, [])
        foreign = [r for r in runs if r.owner != owner]
        ours = [r for r in runs if r.owner == owner]
        if foreign:
            who = ", ".join(f"id {r.id}, " + (f"owner safetax/{r.owner}" if r.owner else "no safetax marker") for r in foreign)
            result.conflicts.append(f"{desired.spec.name}: a recurring run of that name exists that safetax/{owner} "
                                    f"does not manage ({who}); rename the entry or delete that run by hand")
            continue
        if not ours:
            result.create.append(desired)
            continue
        result.delete += [(extra, "duplicate of the same name") for extra in ours[1:]]
        reasons = differences(ours[0], desired, owner)
        if reasons:
            result.replace.append(Replacement(ours[0], desired, reasons))
        else:
            result.unchanged.append(ours[0])
    declared_names = {d.spec.name for d in declared}
    result.delete += [(run, "no longer in the file") for run in existing
                      if run.owner == owner and run.name not in declared_names]
    return result
