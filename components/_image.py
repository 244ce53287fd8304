"""The container images of the components; tags follow the package version (never :latest)."""

from safetax import __version__

REGISTRY = "ghcr.io/safetax"
# One image per dependency profile, not per stage (built from images/ in the platform issue).
TRAIN_IMAGE = f"{REGISTRY}/safetax-train:{__version__}"  # CUDA torch, transformers, peft
CPU_IMAGE = f"{REGISTRY}/safetax-cpu:{__version__}"  # data prep, scoring, analytics
