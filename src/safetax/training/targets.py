"""Which modules and layers a LoRA adapter (or an update mask) touches."""

from __future__ import annotations

import re
from collections.abc import Sequence

# Presets of the LoRA paper (Xue & Mirzasoleiman 2025, sec. 4): MLP-only LoRA keeps reasoning best.
TARGET_PRESETS: dict[str, tuple[str, ...]] = {
    "mlp": ("gate_proj", "up_proj", "down_proj"),
    "attn": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "all": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "up_proj": ("up_proj",),
}
_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def resolve_targets(spec: str | Sequence[str]) -> tuple[str, ...]:
    """A preset name, or a comma-separated / explicit list of module names.

    >>> resolve_targets("mlp")
    ('gate_proj', 'up_proj', 'down_proj')
    >>> resolve_targets("q_proj,v_proj")
    ('q_proj', 'v_proj')
    """
    if isinstance(spec, str):
        if spec in TARGET_PRESETS:
            return TARGET_PRESETS[spec]
        names = [s.strip() for s in spec.split(",") if s.strip()]
        if len(names) == 1 and "_" not in names[0]:
            raise ValueError(f"`target_modules` must be one of {', '.join(TARGET_PRESETS)} or module names, got {spec!r}")
        return tuple(names)
    return tuple(spec)


MIDDLE = "middle"


def parse_layers(spec: str | None, n_layers: int | None = None) -> tuple[int, ...] | None:
    """``"16-31"`` -> layers 16..31 inclusive; ``"0,2,5"`` -> those; None or "" -> all layers;
    ``"middle"`` -> the middle third of the model's ``n_layers`` (16-31 of the 14B model's 48; a preset of ours
    for restricting LoRA to middle layers: neither paper reports a best layer range).

    >>> parse_layers("2-4")
    (2, 3, 4)
    >>> parse_layers(None) is None
    True
    >>> parse_layers("middle", 48) == tuple(range(16, 32))
    True
    """
    if spec is None or not str(spec).strip():
        return None
    if str(spec).strip() == MIDDLE:
        if n_layers is None:
            raise ValueError("`layers: middle` needs the model's layer count")
        return tuple(range(n_layers // 3, 2 * n_layers // 3))
    m = _RANGE.match(str(spec))
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
        if lo > hi:
            raise ValueError(f"`layers` range must be low-high with low <= high, got {spec!r}")
        return tuple(range(lo, hi + 1))
    try:
        return tuple(sorted({int(x) for x in str(spec).split(",")}))
    except ValueError:
        raise ValueError(f"`layers` must be 'low-high' or a comma-separated list of layer indices, got {spec!r}") from None


def layer_index(name: str) -> int | None:
    """The decoder layer a module or weight name belongs to (``...layers.<i>...``), or None.

    >>> layer_index("model.layers.12.mlp.up_proj.weight"), layer_index("lm_head.weight")
    (12, None)
    """
    parts = name.split(".")
    for a, b in zip(parts, parts[1:]):
        if a == "layers" and b.isdigit():
            return int(b)
    return None


def check_against_model(targets: Sequence[str], layers: Sequence[int] | None, module_names: Sequence[str], n_layers: int) -> list[str]:
    """Problems with a target spec for a concrete model: unknown module names, layers out of range."""
    errors = []
    leaves = {n.rsplit(".", 1)[-1] for n in module_names}
    unknown = [t for t in targets if t not in leaves]
    if unknown:
        errors.append(f"`target_modules` {unknown} not found in the model; linear modules there: {sorted(_linear_like(leaves))}")
    if layers is not None:
        bad = [i for i in layers if not 0 <= i < n_layers]
        if bad:
            errors.append(f"`layers` {list(bad)} outside the model's layers 0-{n_layers - 1}")
    return errors


def _linear_like(leaves: set[str]) -> set[str]:
    return {n for n in leaves if n.endswith("_proj") or n in {"lm_head"}}
