"""Where each pipeline stage runs on Kubernetes: accelerators, node selectors, tolerations.

Plain data, loaded at compile time (``SAFETAX_PLATFORM=platform.yaml``); the
pipeline code applies it to tasks through ``kfp.kubernetes``. The local runner
ignores all of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetax.config import Checks

STAGES = ("prepare", "fisher", "train", "merge", "generate", "judge", "score", "analytics")
OPERATORS = ("Exists", "Equal")
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute", "")


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: str = "Exists"
    value: str = ""
    effect: str = "NoSchedule"

    def __post_init__(self) -> None:
        c = Checks("Toleration")
        c.one_of("operator", self.operator, OPERATORS)
        c.one_of("effect", self.effect, EFFECTS)
        c.raise_if_any()


@dataclass(frozen=True)
class Placement:
    # The NVIDIA device plugin's resource name and the GPU operator's node label (GPU feature discovery).
    accelerator_type: str = "nvidia.com/gpu"
    accelerator_count: int = 1
    node_selector: dict[str, str] = field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    tolerations: tuple[Toleration, ...] = (Toleration("nvidia.com/gpu"),)


@dataclass(frozen=True)
class PlatformConfig:
    # judge is here for Llama-Guard-3; with only the refusal-pattern judge, a platform file can drop it.
    gpu_stages: tuple[str, ...] = ("fisher", "train", "merge", "generate", "judge")
    gpu: Placement = field(default_factory=Placement)

    def __post_init__(self) -> None:
        c = Checks("PlatformConfig")
        for s in self.gpu_stages:
            c.one_of("gpu_stages[]", s, STAGES)
        c.positive("gpu.accelerator_count", self.gpu.accelerator_count)
        c.raise_if_any()

    def placement(self, stage: str) -> Placement | None:
        """The GPU placement of a stage, or None for a CPU stage."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
        return self.gpu if stage in self.gpu_stages else None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlatformConfig:
        gpu = dict(d.get("gpu", {}))
        if "tolerations" in gpu:
            gpu["tolerations"] = tuple(Toleration(**t) for t in gpu["tolerations"])
        kw: dict[str, Any] = {"gpu": Placement(**gpu)}
        if "gpu_stages" in d:
            kw["gpu_stages"] = tuple(d["gpu_stages"])
        return cls(**kw)


def load_platform(path: str | None = None) -> PlatformConfig:
    """From a YAML file (argument or ``SAFETAX_PLATFORM``), else the defaults."""
    import yaml

    path = path or os.environ.get("SAFETAX_PLATFORM")
    if not path:
        return PlatformConfig()
    return PlatformConfig.from_dict(yaml.safe_load(Path(path).read_text()) or {})
