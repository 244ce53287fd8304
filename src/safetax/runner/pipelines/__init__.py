"""The KFP pipelines of safetax, built by factories from a platform config (no import-time state).

``build(name, platform)`` returns a fresh ``@dsl.pipeline`` object whose tasks are placed by
``platform``; :mod:`safetax.runner` compiles, registers and runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from safetax.platform import PlatformConfig


def _alignment(platform: PlatformConfig) -> Any:
    from safetax.runner.pipelines.alignment import build_alignment_pipeline

    return build_alignment_pipeline(platform)


def _audit(platform: PlatformConfig) -> Any:
    from safetax.runner.pipelines.audit import build_audit_pipeline

    return build_audit_pipeline(platform)


BUILDERS: dict[str, Callable[[PlatformConfig], Any]] = {"alignment": _alignment, "audit": _audit}


def build(name: str, platform: PlatformConfig) -> Any:
    """The pipeline ``name`` (alignment | audit) placed by ``platform``."""
    if name not in BUILDERS:
        raise ValueError(f"unknown pipeline {name!r}; pipelines: {', '.join(BUILDERS)}")
    return BUILDERS[name](platform)
