"""The identity of an evaluated model: the base, a trained checkpoint, or a merge candidate of one.

One string form, used for table rows, file records and metric labels alike::

    base
    lora-r4/epoch-3                       # method lora-r4, epoch 3
    lora-r4+ortho-both-l1.25/epoch-8      # its OrthoMerge candidate (lambda 1.25) of epoch 8

Metrics label a series ``method="lora-r4"`` (the training method: one Pushgateway group per method) and
``checkpoint="lora-r4+ortho-both-l1.25/epoch-8"`` (the whole string), so no two checkpoints of a run share a
``checkpoint`` label, and a dashboard's ``by (method, checkpoint)`` never merges LoRA's epoch 1 with full
fine-tuning's. Method names are plan-validated labels (no ``/`` and no ``+``), which keeps the form parseable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BASE = "base"
_FORM = re.compile(r"^(?P<method>[^/+\s]+)(?:\+(?P<merge>[^/+\s]+))?/epoch-(?P<epoch>\d+)$")
_PART = re.compile(r"^[^/+\s]+$")


@dataclass(frozen=True, order=True)
class CheckpointRef:
    """A model of a run: ``method`` (the method config's name, or ``base``), ``epoch`` (0 for the base) and
    ``merge`` (a merge candidate's mode and scale, e.g. ``ortho-both-l1.25``; empty for a trained checkpoint).

    >>> ref = CheckpointRef.parse("lora-r4+ortho-both-l1.25/epoch-8")
    >>> ref.method, ref.epoch, ref.merge, ref.variant, str(ref)
    ('lora-r4', 8, 'ortho-both-l1.25', 'lora-r4+ortho-both-l1.25', 'lora-r4+ortho-both-l1.25/epoch-8')
    >>> str(CheckpointRef.parse("base")), CheckpointRef.of("full", 3)
    ('base', CheckpointRef(method='full', epoch=3, merge=''))
    """

    method: str
    epoch: int = 0
    merge: str = ""

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.method, str) or not _PART.match(self.method):
            problems.append(f"method {self.method!r} must be non-empty, without '/', '+' or spaces")
        if self.merge and not _PART.match(self.merge):
            problems.append(f"merge {self.merge!r} must be without '/', '+' or spaces")
        if isinstance(self.epoch, bool) or not isinstance(self.epoch, int) or self.epoch < 0:
            problems.append(f"epoch {self.epoch!r} must be an integer >= 0")
        if self.method == BASE and (self.epoch or self.merge):
            problems.append("the base model has no epoch and no merge")
        if problems:
            raise ValueError("invalid checkpoint: " + "; ".join(problems))

    def __str__(self) -> str:
        return BASE if self.is_base else f"{self.variant}/epoch-{self.epoch}"

    @property
    def is_base(self) -> bool:
        return self.method == BASE

    @property
    def variant(self) -> str:
        """The method name of a table row: the training method, or ``<method>+<merge>`` for a merge candidate."""
        return f"{self.method}+{self.merge}" if self.merge else self.method

    @property
    def dirname(self) -> str:
        """The checkpoint's directory in its stage output: ``epoch-3`` (train), ``lora-r4+ortho-both-l1-epoch-8`` (merge)."""
        return f"{self.variant}-epoch-{self.epoch}" if self.merge else f"epoch-{self.epoch}"

    @classmethod
    def of(cls, variant: str, epoch: int) -> CheckpointRef:
        """From a table row's method (``lora-r4`` or ``lora-r4+ortho-both-l1``) and epoch."""
        if variant == BASE:
            return cls(BASE)
        method, _, merge = variant.partition("+")
        return cls(method, int(epoch), merge)

    @classmethod
    def parse(cls, text: str) -> CheckpointRef:
        """The one parser of the string form; ValueError naming the accepted forms."""
        if text == BASE:
            return cls(BASE)
        m = _FORM.match(text)
        if m is None:
            raise ValueError(f"checkpoint {text!r} is none of 'base', '<method>/epoch-<k>', '<method>+<merge>/epoch-<k>'")
        return cls(m["method"], int(m["epoch"]), m["merge"] or "")


def merge_name(mode: str, lam: float, show_lambda: bool) -> str:
    """A merge candidate's ``merge`` part: the mode, with ``-l<lambda>`` when candidates differ by it.

    >>> merge_name("ortho-both", 1.25, True), merge_name("plain", 1.0, False)
    ('ortho-both-l1.25', 'plain')
    """
    return f"{mode}-l{lam:g}" if show_lambda else mode
