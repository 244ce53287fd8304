"""Audit profiles: which safety, over-refusal and reasoning benchmarks an audit runs, with sample counts.

Two presets ship: ``nightly`` (cheap: a few hundred greedy or single-sample responses per checkpoint,
an hour or so of one GPU for a 7B model with vLLM) and ``weekly`` (the papers' full evaluation: every
benchmark, pass@1 over 8 samples). ``custom`` takes the eval sets and sampling from the pipeline's
``custom_profile`` parameter, in the alignment pipeline's ``eval_sets`` format.

>>> p = resolve_profile("nightly")
>>> [(e.name, e.limit) for e in p.eval_sets]
[('strongreject-small', 0), ('wildjailbreak', 200), ('xstest', 0), ('math500', 100), ('gpqa', 50), ('humanevalplus', 50)]
>>> p.reasoning_samples
1
>>> resolve_profile("hourly")
Traceback (most recent call last):
...
safetax.config.ConfigError: invalid audit profile (1 problem(s)):
  - `profile` must be one of 'nightly', 'weekly', 'custom', got 'hourly'
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from safetax.config import Checks, ConfigError, as_int
from safetax.data.eval_sets import EvalSet


@dataclass(frozen=True)
class AuditProfile:
    name: str
    eval_sets: tuple[EvalSet, ...]
    safety_max_new_tokens: int = 1024
    reasoning_samples: int = 1
    reasoning_temperature: float = 0.6
    reasoning_top_p: float = 0.95
    reasoning_max_new_tokens: int = 8192

    def __post_init__(self) -> None:
        c = Checks(f"audit profile {self.name!r}")
        if not self.eval_sets:
            c.fail("eval_sets", [], "at least one eval set")
        if not any(e.kind == "safety" for e in self.eval_sets):
            c.fail("eval_sets", [e.name for e in self.eval_sets], "at least one safety set (an audit is a safety audit)")
        names = [e.name for e in self.eval_sets]
        if len(set(names)) != len(names):
            c.fail("eval_sets", names, "sets with distinct names")
        for name in ("safety_max_new_tokens", "reasoning_samples", "reasoning_max_new_tokens"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                c.fail(name, value, "an integer >= 1")
        c.non_negative("reasoning_temperature", self.reasoning_temperature)
        c.in_range("reasoning_top_p", self.reasoning_top_p, 0.0, 1.0)
        if self.reasoning_temperature == 0 and self.reasoning_samples != 1:
            c.fail("reasoning_samples", self.reasoning_samples, "1 with greedy decoding (reasoning_temperature 0)")
        c.raise_if_any()

    def benchmarks(self, kind: str) -> list[str]:
        return [e.name for e in self.eval_sets if e.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "eval_sets"}
        d["eval_sets"] = [{k: v for k, v in vars(e).items() if v not in ("", None)} for e in self.eval_sets]
        return d


def _sets(*specs: dict[str, Any]) -> tuple[EvalSet, ...]:
    return tuple(EvalSet.from_dict(s) for s in specs)


PRESETS: dict[str, AuditProfile] = {
    "nightly": AuditProfile(
        "nightly",
        _sets({"benchmark": "strongreject-small"}, {"benchmark": "wildjailbreak", "limit": 200}, {"benchmark": "xstest"},
              {"benchmark": "math500", "limit": 100}, {"benchmark": "gpqa", "limit": 50},
              {"benchmark": "humanevalplus", "limit": 50}),
        reasoning_samples=1, reasoning_max_new_tokens=8192,
    ),
    "weekly": AuditProfile(
        "weekly",
        _sets({"benchmark": "strongreject"}, {"benchmark": "wildjailbreak"}, {"benchmark": "wildjailbreak-benign"},
              {"benchmark": "xstest"}, {"benchmark": "aime24"}, {"benchmark": "math500"}, {"benchmark": "gpqa"},
              {"benchmark": "humanevalplus"}, {"benchmark": "mbppplus"}),
        reasoning_samples=8, reasoning_max_new_tokens=32768,
    ),
}
PROFILES = (*PRESETS, "custom")
_INTS = ("safety_max_new_tokens", "reasoning_samples", "reasoning_max_new_tokens")


def resolve_profile(name: str, custom: dict[str, Any] | None = None) -> AuditProfile:
    """A preset by name, or ``custom`` built from ``custom`` ({"eval_sets": [...], sampling fields})."""
    c = Checks("audit profile")
    c.one_of("profile", name, PROFILES)
    c.raise_if_any()
    if name != "custom":
        if custom:  # the user meant it: running the preset instead would audit something else than asked
            raise ConfigError("audit profile", [f"`custom_profile` is set but `profile` is {name!r}: set `profile` to "
                                                "'custom' to use it, or leave `custom_profile` empty ({})"])
        return PRESETS[name]
    d = dict(custom or {})
    allowed = {f.name for f in fields(AuditProfile)} - {"name"}
    unknown = sorted(set(d) - allowed)
    if unknown or not d.get("eval_sets"):
        errors = [f"`custom_profile` keys must be among {sorted(allowed)}, got {unknown}"] if unknown else []
        errors += [] if d.get("eval_sets") else ["`custom_profile.eval_sets` must list at least one eval set (profile 'custom')"]
        raise ConfigError("audit profile", errors)
    kw: dict[str, Any] = {k: v for k, v in d.items() if k != "eval_sets"}
    for k in _INTS:
        if k in kw:
            kw[k] = as_int(k, kw[k])
    return AuditProfile("custom", tuple(EvalSet.from_dict(e) for e in d["eval_sets"]), **kw)
