"""The pipeline's container images: one per dependency profile, tagged with the package version.

| profile | Dockerfile | runs |
|---|---|---|
| ``train`` | ``images/train.Dockerfile`` | LoRA and full fine-tuning: CUDA torch, transformers, peft, accelerate |
| ``vllm`` | ``images/vllm.Dockerfile`` | generation and judging, vLLM or transformers backend |
| ``cpu`` | ``images/cpu.Dockerfile`` | data preparation, scoring, code execution, analytics: CPU torch |

The KFP components take their ``base_image`` from here (``components/_image.py``) and
``make images`` builds and tags from the same table (``python -m safetax.images``), so a
compiled pipeline names exactly the images that a release built: ``<registry>/safetax-<profile>:<version>``,
never ``:latest``. The registry comes from ``$SAFETAX_IMAGE_REGISTRY`` (default ``ghcr.io/safetax``),
read when this is called, so set it before compiling a pipeline.

This module is imported at pipeline compile time and by the Makefile without a virtual
environment (``PYTHONPATH=src python3 -m safetax.images``): standard library only, no kfp.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import safetax

PROFILES: tuple[str, ...] = ("train", "vllm", "cpu")
REGISTRY_ENV = "SAFETAX_IMAGE_REGISTRY"
DEFAULT_REGISTRY = "ghcr.io/safetax"
# src/safetax/images.py -> the repository root; images/ exists only in a source checkout.
REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGES_DIR = REPO_ROOT / "images"

# The OCI distribution grammar: a host (optional port), then lowercase path components.
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = re.compile(rf"{_HOST}(?:/{_COMPONENT})*")


def registry() -> str:
    """The registry and namespace the images live in: ``$SAFETAX_IMAGE_REGISTRY`` or ``ghcr.io/safetax``.

    A trailing ``/`` is dropped; an empty variable counts as unset.

    Raises:
        ValueError: the variable is not a registry path such as ``ghcr.io/org`` or ``localhost:5000/ml``.
    """
    value = os.environ.get(REGISTRY_ENV, "").strip().rstrip("/") or DEFAULT_REGISTRY
    if not _REGISTRY.fullmatch(value):
        raise ValueError(
            f"`{REGISTRY_ENV}` must be a registry path like 'ghcr.io/org' or 'localhost:5000/ml' "
            f"(no scheme, no tag, lowercase path), got {value!r}"
        )
    return value


def tag(version: str) -> str:
    """The image tag of a package version: PEP 440's ``+local`` is not allowed in a tag, so it becomes ``-``.

    >>> tag("0.1.0"), tag("0.2.0.dev3+g1a2b3c")
    ('0.1.0', '0.2.0.dev3-g1a2b3c')
    """
    return version.replace("+", "-")


def _check(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"`profile` must be one of {', '.join(PROFILES)}, got {profile!r}")


def image(profile: str) -> str:
    """The full reference of a profile's image, e.g. ``ghcr.io/safetax/safetax-train:0.1.0``.

    >>> image("cpu").rsplit("/", 1)[1] == f"safetax-cpu:{safetax.__version__}"
    True

    Raises:
        ValueError: an unknown profile (the message lists the allowed ones) or a malformed registry.
    """
    _check(profile)
    return f"{registry()}/safetax-{profile}:{tag(safetax.__version__)}"


def dockerfile(profile: str) -> Path:
    """The Dockerfile that builds a profile's image (``images/<profile>.Dockerfile``; build context: the repository root).

    Raises:
        ValueError: an unknown profile.
        FileNotFoundError: not a source checkout (an installed package carries no Dockerfiles).
    """
    _check(profile)
    path = IMAGES_DIR / f"{profile}.Dockerfile"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the Dockerfiles are in a checkout of the safetax repository")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m safetax.images [PROFILE ...]``: one ``profile image dockerfile`` line per image (for ``make images``)."""
    p = argparse.ArgumentParser(prog="python -m safetax.images", description=main.__doc__)
    p.add_argument("profiles", nargs="*", metavar="PROFILE", help=f"any of {', '.join(PROFILES)} (default: all)")
    args = p.parse_args(argv)
    try:
        rows = [(prof, image(prof), dockerfile(prof).relative_to(REPO_ROOT)) for prof in args.profiles or PROFILES]
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    for prof, ref, path in rows:
        print(prof, ref, path.as_posix())
    return 0


if __name__ == "__main__":
    sys.exit(main())
