"""The pipeline's container images: one per dependency profile, tagged ``<version>-<commit>``.

| profile | Dockerfile | lock | runs |
|---|---|---|---|
| ``train`` | ``images/train.Dockerfile`` | ``images/locks/train.txt`` | LoRA and full fine-tuning: CUDA torch, transformers, peft, accelerate |
| ``vllm`` | ``images/vllm.Dockerfile`` | ``images/locks/vllm.txt`` | generation and judging, vLLM or transformers backend |
| ``cpu`` | ``images/cpu.Dockerfile`` | ``images/locks/cpu.txt`` | data preparation, scoring, code execution, analytics: CPU torch |

The KFP components take their ``base_image`` from here (``safetax.runner.components._image``) and
``make images`` builds and tags from the same table (``python -m safetax.images``), so a compiled
pipeline names exactly the images that ``make images`` built from the same commit:
``<registry>/safetax-<profile>:<tag>``, never ``:latest``. Everything is read when called, so set
the variables before compiling a pipeline:

- ``$SAFETAX_IMAGE_REGISTRY``: registry and namespace (default ``ghcr.io/safetax``);
- ``$SAFETAX_IMAGE_TAG``: the tag, verbatim. Unset, the tag is ``<version>-<commit>``: the package
  version and the first 12 hex digits of ``git rev-parse HEAD`` of this source checkout, so
  every commit has its own images and a node's ``IfNotPresent`` cache never runs old code. The
  images set it to the tag they were built with (``make images`` passes it), so the registrar
  compiles pipelines with its own images' tag. Where neither applies (an installed wheel, no
  git) the tag is the bare ``<version>``, the tag of a release, with a warning;
- ``$SAFETAX_IMAGE_DIGESTS``: digest pinning. A JSON object ``{"train": "sha256:...", "vllm": ...,
  "cpu": ...}``, inline or in a file (``make images PUSH=1`` writes ``build/image-digests.json``):
  every reference becomes ``<registry>/safetax-<profile>:<tag>@sha256:...``, so the compiled
  pipeline runs exactly the pushed bytes whatever later happens to the tag.

This module is imported at pipeline compile time and by the Makefile without a virtual
environment (``PYTHONPATH=src python3 -m safetax.images``): standard library only, no kfp.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import safetax

PROFILES: tuple[str, ...] = ("train", "vllm", "cpu")
REGISTRY_ENV = "SAFETAX_IMAGE_REGISTRY"
TAG_ENV = "SAFETAX_IMAGE_TAG"
DIGESTS_ENV = "SAFETAX_IMAGE_DIGESTS"
DEFAULT_REGISTRY = "ghcr.io/safetax"
SHA_LENGTH = 12  # hex digits of the commit in a tag: git's default abbreviation is 7, which collides in large repositories
# src/safetax/images.py -> the repository root; images/ and .git exist only in a source checkout.
REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGES_DIR = REPO_ROOT / "images"

# The OCI distribution grammar: a host (optional port), then lowercase path components; a tag; a digest.
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = re.compile(rf"{_HOST}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


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


def revision() -> str | None:
    """The commit of this source checkout (``git rev-parse HEAD``); None outside one or without git.

    Only a ``.git`` at the repository root counts, so an installed package inside some other
    repository's tree is not mistaken for a checkout. Uncommitted changes are not in it: commit
    before ``make images``.
    """
    if not (REPO_ROOT / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    sha = done.stdout.strip()
    return sha if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", sha) else None


def image_tag() -> str:
    """The tag of every image: ``$SAFETAX_IMAGE_TAG``, else ``<version>-<12 hex of the commit>``, else ``<version>``.

    Raises:
        ValueError: the variable is not a valid tag (letters, digits, ``_.-``, at most 128, not starting with ``.-``).
    """
    override = os.environ.get(TAG_ENV, "").strip()
    if override:
        if not _TAG.fullmatch(override):
            raise ValueError(f"`{TAG_ENV}` must be an image tag ([A-Za-z0-9_][A-Za-z0-9_.-], at most 128), got {override!r}")
        return override
    version = tag(safetax.__version__)
    sha = revision()
    if sha:
        return f"{version}-{sha[:SHA_LENGTH]}"
    warnings.warn(f"no git checkout and no `{TAG_ENV}`: the images are tagged {version!r}, a release's tag; "
                  f"set `{TAG_ENV}` to the tag `make images` printed for other builds", stacklevel=2)
    return version


def digests() -> dict[str, str]:
    """Profile -> ``sha256:...`` from ``$SAFETAX_IMAGE_DIGESTS`` (a JSON object, or a file holding one); empty when unset.

    Raises:
        ValueError: unreadable or not a JSON object, a profile missing or unknown, or a value not ``sha256:`` + 64 hex.
    """
    value = os.environ.get(DIGESTS_ENV, "").strip()
    if not value:
        return {}
    try:
        text = value if value[0] in "{[" else Path(value).read_text()
        found = json.loads(text)
    except (OSError, ValueError) as e:
        raise ValueError(f"`{DIGESTS_ENV}` must be a JSON object or a file holding one, got {value!r}: {e}") from None
    if not isinstance(found, dict):
        raise ValueError(f"`{DIGESTS_ENV}` must hold a JSON object profile -> digest, got {type(found).__name__}")
    errors = [f"unknown profile {p!r}" for p in found if p not in PROFILES]
    errors += [f"no digest for {p!r}" for p in PROFILES if p not in found]
    pins = {p: str(d).removeprefix("@") for p, d in found.items() if p in PROFILES}
    errors += [f"{p}: {d!r} is not 'sha256:' and 64 lowercase hex digits" for p, d in pins.items() if not _DIGEST.fullmatch(d)]
    if errors:
        raise ValueError(f"`{DIGESTS_ENV}` ({value}): {'; '.join(errors)} (profiles: {', '.join(PROFILES)})")
    return pins


def _check(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"`profile` must be one of {', '.join(PROFILES)}, got {profile!r}")


def tagged(profile: str) -> str:
    """A profile's image by tag, what ``make images`` builds and pushes: ``<registry>/safetax-<profile>:<tag>``."""
    _check(profile)
    return f"{registry()}/safetax-{profile}:{image_tag()}"


def image(profile: str) -> str:
    """The reference a compiled pipeline uses: the tagged image, ``@sha256:...`` appended when digests are pinned.

    >>> image("cpu").rsplit("/", 1)[1].startswith(f"safetax-cpu:{safetax.__version__}")
    True

    Raises:
        ValueError: an unknown profile (the message lists the allowed ones), a malformed registry, tag or digests.
    """
    ref = tagged(profile)
    digest = digests().get(profile)
    return f"{ref}@{digest}" if digest else ref


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


def pushed_digests(engine: str, profiles: Sequence[str]) -> dict[str, str]:
    """Profile -> digest of each tagged image as its registry stored it (the engine's ``RepoDigests``, set by a push).

    Raises:
        RuntimeError: the engine failed, or it knows no digest of the image in its registry (not pushed).
    """
    found = {}
    for profile in profiles:
        ref = tagged(profile)
        repository = ref.rsplit(":", 1)[0]
        done = subprocess.run([engine, "image", "inspect", "--format", "{{json .RepoDigests}}", ref],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"`{engine} image inspect {ref}` failed: {done.stderr.strip()}")
        pins = [d.split("@", 1)[1] for d in json.loads(done.stdout or "null") or [] if d.split("@", 1)[0] == repository]
        if not pins:
            raise RuntimeError(f"{ref} has no digest in {repository}: push it first (`make images PUSH=1`)")
        found[profile] = pins[0]
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m safetax.images [PROFILE ...]``: one ``profile image dockerfile version`` line per image (for ``make images``);
    with ``--digests``, the JSON digests of the pushed images (for ``$SAFETAX_IMAGE_DIGESTS``)."""
    p = argparse.ArgumentParser(prog="python -m safetax.images", description=main.__doc__)
    p.add_argument("profiles", nargs="*", metavar="PROFILE", help=f"any of {', '.join(PROFILES)} (default: all)")
    p.add_argument("--digests", action="store_true", help="print {profile: digest} of the pushed images as JSON")
    p.add_argument("--engine", default="docker", help="container engine for --digests (default: docker)")
    args = p.parse_args(argv)
    profiles = args.profiles or list(PROFILES)
    try:
        if args.digests:
            print(json.dumps(pushed_digests(args.engine, profiles), indent=2))
            return 0
        rows = [(prof, tagged(prof), dockerfile(prof).relative_to(REPO_ROOT)) for prof in profiles]
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:
        p.error(str(e))
    for prof, ref, path in rows:
        print(prof, ref, path.as_posix(), safetax.__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
