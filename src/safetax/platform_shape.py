"""The shape of a platform file (:mod:`safetax.platform`), checked before any value is read.

A mapping where the file's structure needs one, text where text belongs, a list where a list does:
each wrong kind becomes one message naming the file's key (``stages.train``, ``defaults.env.PORT``)
and what is expected, instead of a ``TypeError`` from deep inside. Values of the right kind are
checked afterwards by :class:`safetax.platform.PlatformConfig`.
"""

from __future__ import annotations

from typing import Any

from safetax.config import Checks

# What each key holds; the numbers (counts, seconds, tokens/s) and `vllm` (a mapping naming its keys) are
# checked by the config itself.
MAPPING, TEXT, LIST = "a mapping (key: value)", "text", "a list"
_KINDS: dict[str, type] = {MAPPING: dict, TEXT: str, LIST: list}
DEFAULT_KINDS = {"pod_labels": MAPPING, "env": MAPPING, "s3_secret_keys": MAPPING,
                 "security_context": MAPPING, "image_pull_secrets": LIST, "s3_secret": TEXT, "pipeline_root": TEXT,
                 "hf_token_secret": TEXT, "hf_token_secret_key": TEXT, "generation_backend": TEXT, "judge_backend": TEXT,
                 "scratch_storage_class": TEXT, "trainjob_runtime": TEXT, "trainjob_volume_claim": TEXT,
                 "trainjob_volume_path": TEXT}
STAGE_KINDS = {"accelerator_type": TEXT, "node_selector": MAPPING, "pod_labels": MAPPING, "tolerations": LIST}
# Mappings whose keys and values are Kubernetes strings (quote numbers and booleans in YAML: "9091", "true").
_TEXT_MAPS = ("env", "pod_labels", "node_selector", "s3_secret_keys")


def mapping(c: Checks, where: str, value: Any, kinds: dict[str, str]) -> dict[str, Any]:
    """The entries of ``value`` (a mapping; None = empty) whose kind is right; each wrong one recorded in ``c``.

    >>> c = Checks("platform config p.yaml")
    >>> mapping(c, "stages.train", {"memory_limit": "1Gi", "node_selector": ["gpu"]}, STAGE_KINDS)
    {'memory_limit': '1Gi'}
    >>> mapping(c, "defaults", ["x"], DEFAULT_KINDS), c.errors[-1]
    ({}, "`defaults` must be a mapping (key: value), got ['x']")
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        c.fail(where, value, MAPPING)
        return {}
    out: dict[str, Any] = {}
    for key, item in value.items():
        kind = kinds.get(key)
        if kind is not None and not isinstance(item, _KINDS[kind]):
            c.fail(f"{where}.{key}", item, kind)
        elif kind == MAPPING and key in _TEXT_MAPS and not _text_map(c, f"{where}.{key}", item):
            continue
        elif kind == LIST and key == "image_pull_secrets" and not all(isinstance(s, str) and s for s in item):
            c.fail(f"{where}.{key}", item, "a list of Secret names")
        else:
            out[key] = item
    return out


def _text_map(c: Checks, where: str, d: dict[Any, Any]) -> bool:
    ok = True
    for key, value in d.items():
        if not isinstance(key, str) or not isinstance(value, str):
            c.fail(f"{where}.{key}", value, 'text, with a text key (quote numbers and booleans in YAML: "9091", "true")')
            ok = False
    return ok


def tolerations(c: Checks, where: str, items: list[Any]) -> list[dict[str, Any]] | None:
    """The tolerations as mappings, or None (recorded in ``c``) when one is not a mapping or has unknown keys."""
    allowed = ("key", "operator", "value", "effect")
    for i, t in enumerate(items):
        if not isinstance(t, dict):
            c.fail(f"{where}[{i}]", t, "a mapping with the keys " + ", ".join(allowed))
            return None
        unknown = sorted(str(k) for k in t if k not in allowed)
        if unknown or not isinstance(t.get("key"), str) or not all(isinstance(t.get(k, ""), str) for k in allowed):
            c.fail(f"{where}[{i}]", t, "a mapping of text values with the keys " + ", ".join(allowed) + " (key required)")
            return None
    return items
