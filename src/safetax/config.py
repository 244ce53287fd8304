"""Config validation shared by every stage: collect all problems, raise once.

Each stage has a frozen dataclass whose ``__post_init__`` builds a
:class:`Checks`, records every problem, and calls :meth:`Checks.raise_if_any`,
so a user sees all mistakes of a config at once, before a model is loaded
(torchtune's ``ConfigError`` does the same).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


def is_number(value: Any) -> bool:
    """A real number, not a bool (``True > 0`` holds in Python) and not text such as ``"1e-4"``.

    >>> is_number(1e-4), is_number(3), is_number(True), is_number("1e-4")
    (True, True, False, False)
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class ConfigError(ValueError):
    """One or more invalid config values; ``errors`` lists each message."""

    def __init__(self, where: str, errors: list[str]) -> None:
        self.where = where
        self.errors = errors
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"invalid {where} ({len(errors)} problem(s)):\n{lines}")


@dataclass
class Checks:
    """Accumulates config problems; messages name the field, the value and what is allowed."""

    where: str
    errors: list[str] = field(default_factory=list)

    def fail(self, name: str, value: Any, allowed: str) -> None:
        self.errors.append(f"`{name}` must be {allowed}, got {value!r}")

    def number(self, name: str, value: Any, allowed: str) -> bool:
        """Whether ``value`` is a number; if not, records "`name` must be a number <allowed>"."""
        if is_number(value):
            return True
        self.fail(name, value, f"a number {allowed}" + (" (not text: write it without quotes)" if isinstance(value, str) else ""))
        return False

    def positive(self, name: str, value: float) -> None:
        if self.number(name, value, "> 0") and not value > 0:
            self.fail(name, value, "> 0")

    def non_negative(self, name: str, value: float) -> None:
        if self.number(name, value, ">= 0") and not value >= 0:
            self.fail(name, value, ">= 0")

    def in_range(self, name: str, value: float, lo: float, hi: float) -> None:
        if self.number(name, value, f"in [{lo}, {hi}]") and not lo <= value <= hi:
            self.fail(name, value, f"in [{lo}, {hi}]")

    def integer(self, name: str, value: Any, minimum: int, note: str = "") -> None:
        """An ``int`` (not a bool, not text) of at least ``minimum``; ``note`` explains special values."""
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            self.fail(name, value, f"an integer >= {minimum}" + (f" {note}" if note else ""))

    def boolean(self, name: str, value: Any) -> None:
        """A real ``True``/``False``: the string "false" is truthy, so text is refused, never read."""
        if not isinstance(value, bool):
            self.fail(name, value, "true or false")

    def one_of(self, name: str, value: Any, allowed: Iterable[Any]) -> None:
        options = list(allowed)
        # `True in (1, 2)` holds in Python: a bool matches only a bool option.
        if isinstance(value, bool) and not any(isinstance(o, bool) for o in options) or value not in options:
            self.fail(name, value, "one of " + ", ".join(repr(o) for o in options))

    def raise_if_any(self) -> None:
        if self.errors:
            raise ConfigError(self.where, self.errors)


def as_int(name: str, value: Any) -> int:
    """Integers that crossed a KFP list/dict parameter arrive as floats (4.0): accept those only.

    >>> as_int("epochs", 4.0)
    4
    >>> as_int("epochs", "4")
    Traceback (most recent call last):
    ...
    safetax.config.ConfigError: invalid epochs (1 problem(s)):
      - `epochs` must be an integer, got '4'
    """
    if not is_number(value) or value != value or value in (float("inf"), float("-inf")) or int(value) != value:
        raise ConfigError(name, [f"`{name}` must be an integer, got {value!r}"])
    return int(value)
