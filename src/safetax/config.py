"""Config validation shared by every stage: collect all problems, raise once.

Each stage has a frozen dataclass whose ``__post_init__`` builds a
:class:`Checks`, records every problem, and calls :meth:`Checks.raise_if_any`,
so a user sees all mistakes of a config at once, before a model is loaded
(torchtune's ``ConfigError`` does the same).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


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

    def positive(self, name: str, value: float) -> None:
        if not value > 0:
            self.fail(name, value, "> 0")

    def non_negative(self, name: str, value: float) -> None:
        if not value >= 0:
            self.fail(name, value, ">= 0")

    def in_range(self, name: str, value: float, lo: float, hi: float) -> None:
        if not lo <= value <= hi:
            self.fail(name, value, f"in [{lo}, {hi}]")

    def one_of(self, name: str, value: Any, allowed: Iterable[Any]) -> None:
        options = list(allowed)
        if value not in options:
            self.fail(name, value, "one of " + ", ".join(repr(o) for o in options))

    def raise_if_any(self) -> None:
        if self.errors:
            raise ConfigError(self.where, self.errors)


def as_int(name: str, value: Any) -> int:
    """Integers that crossed a KFP list/dict parameter arrive as floats (4.0): accept those only."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ConfigError(name, [f"`{name}` must be an integer, got {value!r}"])
    return int(value)
