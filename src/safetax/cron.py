"""Cron expressions as KFP reads them: parsing with errors that name the field, KFP's 6-field form, the interval.

Cron follows robfig/cron v1, which KFP's API server validates with and its ScheduledWorkflow
controller fires by (in the controller's time zone, UTC on most clusters): numbers, ``*`` and ``?``,
ranges ``a-b``, steps ``*/n``, ``a-b/n`` and ``a/n`` (= ``a-max/n``), lists, month names JAN-DEC,
day names SUN-SAT, and @yearly/@annually/@monthly/@weekly/@daily/@midnight/@hourly. Day of week is
0-6 (0 = Sunday; robfig has no 7). When both day of month and day of week are restricted a day
matches either (standard cron); when one is ``*`` or ``?`` both must match. KFP is always sent six
fields: a 5-field cron gets ``0`` seconds prefixed (KFP would read five fields as seconds-first).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

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
