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
        experiment: safetax-audits    # default; created when missing
        description: nightly audit    # optional

Cron follows robfig/cron v1, which KFP's API server validates with and its ScheduledWorkflow
controller fires by (in the controller's time zone, UTC on most clusters): numbers, ``*`` and ``?``,
ranges ``a-b``, steps ``*/n``, ``a-b/n`` and ``a/n`` (= ``a-max/n``), lists, month names JAN-DEC,
day names SUN-SAT, and @yearly/@annually/@monthly/@weekly/@daily/@midnight/@hourly. Day of week is
0-6 (0 = Sunday; robfig has no 7). When both day of month and day of week are restricted a day
matches either (standard cron); when one is ``*`` or ``?`` both must match. KFP is always sent six
fields: a 5-field cron gets ``0`` seconds prefixed (KFP would read five fields as seconds-first).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from safetax.config import Checks, ConfigError

DEFAULT_OWNER = "safetax"
DEFAULT_EXPERIMENT = "safetax-audits"
KFP_MAX_CONCURRENCY = 10  # KFP's API server rejects max_concurrency outside 1-10
NAME_RULE = ("a DNS-1123 label: 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit "
             "(KFP derives the ScheduledWorkflow resource name from it)")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_OWNER = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_MARKER = re.compile(r"\[managed-by: safetax/([^\]\s]+)\]")
_KEYS = ("name", "cron", "pipeline", "version", "parameters", "maxConcurrency", "enabled", "experiment", "description")

# --- cron -------------------------------------------------------------------------------------------

_FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
           ("day of week", 0, 6))
_NAMES = {4: {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
          5: {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}}
_DESCRIPTORS = {"@yearly": "0 0 0 1 1 *", "@annually": "0 0 0 1 1 *", "@monthly": "0 0 0 1 * *",
                "@weekly": "0 0 0 * * 0", "@daily": "0 0 0 * * *", "@midnight": "0 0 0 * * *", "@hourly": "0 0 * * * *"}
CYCLE_START = date(2001, 1, 1)  # a Monday; any start works, the cycle below repeats exactly
CYCLE_DAYS = 10227  # 28 Gregorian years = 1461 weeks: weekdays and leap years repeat (exact for 1901-2099)


class CronError(ValueError):
    """A malformed cron expression; the message names the field position."""


@dataclass(frozen=True)
class Cron:
    """A parsed cron: the matching values of each field, and the 6-field form KFP is sent."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month is * or ?: robfig then requires both day fields to match
    any_weekday: bool
    kfp: str

    def fires_on(self, day: date) -> bool:
        """Whether the schedule fires at some time on ``day`` (robfig's dayMatches)."""
        if day.month not in self.months:
            return False
        dom, dow = day.day in self.days, (day.weekday() + 1) % 7 in self.weekdays
        return dom and dow if self.any_day or self.any_weekday else dom or dow


def _value(text: str, index: int, lo: int, hi: int) -> int:
    number = _NAMES.get(index, {}).get(text.lower()) if not text.isdigit() else int(text)
    if number is None:
        names = f" or a name ({', '.join(n.upper() for n in _NAMES[index])})" if index in _NAMES else ""
        raise CronError(f"{text!r} is not a number{names}")
    if not lo <= number <= hi:
        raise CronError(f"{number} is out of range {lo}-{hi}" + (" (0 = Sunday)" if index == 5 else ""))
    return number


def _field(text: str, index: int) -> tuple[frozenset[int], bool]:
    """The values of one field (index into _FIELDS) and whether it is unrestricted (robfig's star bit)."""
    _, lo, hi = _FIELDS[index]
    values: set[int] = set()
    star = False
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        if part.count("/") > 1 or not span or (part.count("/") == 1 and not step_text.isdigit()):
            raise CronError(f"{part!r} is not a value, range or step")
        step = int(step_text) if step_text else 1
        if step == 0:
            raise CronError(f"{part!r}: the step must be > 0")
        if span in ("*", "?"):
            start, end = lo, hi
            star = star or step == 1
        else:
            first, dash, last = span.partition("-")
            if dash and not last:
                raise CronError(f"{part!r}: the range has no end")
            start = _value(first, index, lo, hi)
            end = _value(last, index, lo, hi) if last else (hi if step_text else start)  # "a/n" means a-max/n
            if start > end:
                raise CronError(f"{part!r}: the range starts after it ends")
        values.update(range(start, end + 1, step))
    return frozenset(values), star


@lru_cache(maxsize=256)
def parse_cron(text: str) -> Cron:
    """Parse a 5-field, 6-field (seconds first) or @descriptor cron; raise :class:`CronError` naming the field.

    >>> parse_cron("*/15 * * * *").kfp
    '0 */15 * * * *'
    >>> parse_cron("@daily").kfp
    '0 0 0 * * *'
    """
    if not isinstance(text, str) or not text.strip():
        raise CronError("empty: expected 5 fields (minute hour day-of-month month day-of-week) or 6 (second first)")
    spec = text.strip()
    if spec.startswith("@"):
        if spec.lower() not in _DESCRIPTORS:
            raise CronError(f"unknown descriptor {spec!r}; known: {', '.join(_DESCRIPTORS)} (@every is not supported)")
        spec = _DESCRIPTORS[spec.lower()]
    fields = spec.split()
    if len(fields) not in (5, 6):
        raise CronError(f"{len(fields)} field(s): expected 5 (minute hour day-of-month month day-of-week) "
                        "or 6 (second minute hour day-of-month month day-of-week, KFP's form)")
    if len(fields) == 5:
        fields = ["0", *fields]
    offset = 1 if len(spec.split()) == 5 else 0  # report positions as the user wrote them
    parsed = []
    for index, value in enumerate(fields):
        try:
            parsed.append(_field(value, index))
        except CronError as e:
            position, count = index + 1 - offset, 6 - offset
            raise CronError(f"field {position} of {count} ({_FIELDS[index][0]}): {e}") from None
    (sec, _), (minute, _), (hour, _), (dom, any_day), (month, _), (dow, any_weekday) = parsed
    return Cron(sec, minute, hour, dom, month, dow, any_day, any_weekday, " ".join(fields))


def to_kfp_cron(text: str) -> str:
    """The 6-field (seconds first) form KFP's robfig/cron parser reads.

    >>> to_kfp_cron("0 2 * * 1-5")
    '0 0 2 * * 1-5'
    """
    return parse_cron(text).kfp


@lru_cache(maxsize=256)
def cron_interval_seconds(cron: str) -> float:
    """The longest gap between consecutive firings of ``cron`` (5- or 6-field), in seconds.

    Evaluated over one 28-year cycle from 2001-01-01 00:00 UTC (``CYCLE_START``), after which weekdays
    and leap years repeat, so the result is exact for every schedule (for 1901-2099) and the gap that
    wraps into the next cycle is included. A schedule that never fires (``0 0 30 2 *``) is an error.
    The audit pipeline's stale-audit alert fires when ``time() - last > 2 * cron_interval_seconds(cron)``.

    >>> cron_interval_seconds("0 2 * * *"), cron_interval_seconds("0 9,17 * * *")
    (86400.0, 57600.0)
    """
    c = parse_cron(cron)
    times = sorted(h * 3600 + m * 60 + s for h in c.hours for m in c.minutes for s in c.seconds)
    days = [n for n in range(CYCLE_DAYS) if c.fires_on(CYCLE_START + timedelta(days=n))]
    if not days:
        raise CronError("never fires: no date matches its day of month, month and day of week")
    days.append(days[0] + CYCLE_DAYS)
    within_day = max((b - a for a, b in zip(times, times[1:])), default=0)
    across_days = max((d2 - d1) * 86400 - times[-1] + times[0] for d1, d2 in zip(days, days[1:]))
    return float(max(within_day, across_days))


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
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        checks.fail(f"{at}.enabled", enabled, "true or false")
    description = entry.get("description", "")
    if not isinstance(description, str) or "[managed-by:" in description:
        checks.fail(f"{at}.description", description, "a string without '[managed-by:' (safetax appends its owner marker)")
    if len(checks.errors) > errors_before:
        return None
    return RecurringRun(name=name, cron=cron, pipeline=entry["pipeline"], version=entry.get("version", "latest"),
                        parameters=parameters, max_concurrency=concurrency, enabled=enabled,
                        experiment=entry.get("experiment", DEFAULT_EXPERIMENT), description=description)


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
    return f"{d.spec.pipeline}@{version}{latest}, experiment {d.spec.experiment}" + ("" if d.spec.enabled else ", disabled")


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
