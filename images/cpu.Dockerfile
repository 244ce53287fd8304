# syntax=docker/dockerfile:1
# safetax-cpu: data preparation, scoring (math-verify, code execution), analytics; no GPU.
# Build from the repository root: `make images`, or
#   docker build -f images/cpu.Dockerfile -t ghcr.io/safetax/safetax-cpu:TAG --build-arg VERSION=VERSION --build-arg IMAGE_TAG=TAG .
#   (TAG: <version>-<12 hex of the commit>, as `python -m safetax.images` prints it)
#
# No evalplus package: safetax.scoring.code reimplements EvalPlus's semantics (canonical outputs,
# base/plus inputs, its tolerances) and runs candidates in its own resource-limited subprocess.

# Python 3.11, as on the dev machines and in CI (pin a digest, python:3.11-slim-bookworm@sha256:..., to freeze it).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ARG BASE_IMAGE

# torch, CPU build (chat templates, the transformers backend of the optional LLM answer re-check):
# pyproject.toml's pin, the torch the tests ran (tests/test_images.py checks it).
ARG TORCH_VERSION=2.13.0
# PyTorch's CPU wheel index: PyPI's Linux wheels are CUDA builds, several GB this image does not need.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# The KFP SDK the components run on (install_kfp_package=False): pyproject.toml's kfp and kfp-kubernetes.
ARG KFP_VERSION=2.17.0
# Numeric UID of the unprivileged user; its group is 0, so an arbitrary UID (OpenShift) can write too.
# Non-root also matters for code execution: the sandbox's RLIMIT_NPROC=0 binds only non-root users.
ARG USER_UID=1000

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH} \
    HOME=/home/safetax \
    XDG_CACHE_HOME=/home/safetax/.cache \
    HF_HOME=/home/safetax/.cache/huggingface \
    MPLBACKEND=Agg

# A venv, as in the train image, so that pip never touches the base's Python.
RUN python -m venv "${VIRTUAL_ENV}"

# The user, its caches, and the artifact directories KFP's launcher creates at the filesystem
# root (/gcs, /minio, /s3), which a non-root user could not create itself.
RUN if getent passwd "${USER_UID}" >/dev/null; then userdel "$(getent passwd "${USER_UID}" | cut -d: -f1)"; fi \
    && useradd --uid "${USER_UID}" --gid 0 --home-dir "${HOME}" --create-home --shell /bin/bash safetax \
    && mkdir -p "${HF_HOME}" /gcs /minio /s3 \
    && chown -R "${USER_UID}:0" "${HOME}" /gcs /minio /s3 \
    && chmod -R g=u "${HOME}" /gcs /minio /s3

WORKDIR /opt/safetax
COPY pyproject.toml ./
COPY images/pins.py images/
COPY images/locks/cpu.txt images/locks/

# Dependencies first, so that a code change rebuilds only the last layers. The CPU torch comes
# first, from TORCH_INDEX_URL; everything after it is installed under constraints that pin that
# torch (+cpu build) and take images/locks/cpu.txt for the rest, so pip cannot swap it for
# PyPI's CUDA build. `torch==` is listed again so that pip installs its dependencies.
RUN pip install --no-deps --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
    && python images/pins.py constraints images/locks/cpu.txt --installed torch > /tmp/constraints.txt \
    && python images/pins.py requirements pyproject.toml --exclude torch > /tmp/requirements.txt \
    && pip install --constraint /tmp/constraints.txt --requirement /tmp/requirements.txt \
        "torch==${TORCH_VERSION}" "kfp==${KFP_VERSION}" "kfp-kubernetes==${KFP_VERSION}" \
    && pip check \
    && rm /tmp/constraints.txt /tmp/requirements.txt

# safetax itself, without dependencies (above), built with the pinned setuptools that torch
# brought (no build isolation, so nothing unpinned is fetched); the KFP components are in it
# (safetax.runner.components).
COPY README.md ./
COPY src/ src/
RUN pip install --no-deps --no-build-isolation /opt/safetax \
    && python -c "import math_verify, safetax.stages.prepare, safetax.stages.score, safetax.stages.analytics, safetax.runner.components.score"

# For the OCI labels (`make images` passes both); declared after the installs, so that a new
# version or commit invalidates no install layer. The package version:
ARG VERSION=dev
# the git commit:
ARG REVISION=unknown
# The tag `make images` gave this image, <version>-<commit>: without git, safetax.images names the
# stage images with it, so a pipeline compiled in this image (the chart's registrar) runs its siblings.
ARG IMAGE_TAG=""
ENV SAFETAX_IMAGE_TAG=${IMAGE_TAG}
LABEL org.opencontainers.image.title="safetax-cpu" \
      org.opencontainers.image.description="safetax: data preparation, scoring, code execution and analytics (CPU)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

USER ${USER_UID}:0
WORKDIR /home/safetax
CMD ["python"]
