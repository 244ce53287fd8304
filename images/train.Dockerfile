# syntax=docker/dockerfile:1
# safetax-train: LoRA and full fine-tuning on NVIDIA GPUs (CUDA torch, transformers, peft, accelerate).
# Build from the repository root: `make images`, or
#   docker build -f images/train.Dockerfile -t ghcr.io/safetax/safetax-train:TAG --build-arg VERSION=VERSION --build-arg IMAGE_TAG=TAG .
#   (TAG: <version>-<12 hex of the commit>, as `python -m safetax.images` prints it)

# The CUDA base supplies the OS and what the NVIDIA container runtime reads (NVIDIA_* variables, the
# driver check). torch's wheels bring their own CUDA libraries (nvidia-* wheels), so "base" is enough.
ARG BASE_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04
FROM ${BASE_IMAGE}
ARG BASE_IMAGE

# torch; pyproject.toml's pin, so GPU runs train with the torch the tests ran (tests/test_images.py checks it).
ARG TORCH_VERSION=2.13.0
# Where torch comes from: PyPI's Linux wheels are CUDA builds; https://download.pytorch.org/whl/cuXYZ picks a CUDA.
ARG TORCH_INDEX_URL=https://pypi.org/simple
# The KFP SDK the components run on (install_kfp_package=False): pyproject.toml's kfp and kfp-kubernetes.
ARG KFP_VERSION=2.17.0
# Numeric UID of the unprivileged user; its group is 0, so an arbitrary UID (OpenShift) can write too.
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
    HF_HOME=/home/safetax/.cache/huggingface

# Ubuntu 24.04's Python 3.12, in a venv (the system Python is externally managed, PEP 668).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv "${VIRTUAL_ENV}"

# The user (Ubuntu's images already give UID 1000 to "ubuntu"), its caches, and the artifact
# directories KFP's launcher creates at the filesystem root (/gcs, /minio, /s3), which a
# non-root user could not create itself.
RUN if getent passwd "${USER_UID}" >/dev/null; then userdel "$(getent passwd "${USER_UID}" | cut -d: -f1)"; fi \
    && useradd --uid "${USER_UID}" --gid 0 --home-dir "${HOME}" --create-home --shell /bin/bash safetax \
    && mkdir -p "${HF_HOME}" /gcs /minio /s3 \
    && chown -R "${USER_UID}:0" "${HOME}" /gcs /minio /s3 \
    && chmod -R g=u "${HOME}" /gcs /minio /s3

WORKDIR /opt/safetax
COPY pyproject.toml ./
COPY images/pins.py images/
COPY images/locks/train.txt images/locks/

# Dependencies first, so that a code change rebuilds only the last layers. pyproject.toml pins
# the CPU torch of the dev machines, so torch comes first, from TORCH_INDEX_URL, and everything
# after it is installed under constraints that pin that torch at its installed (CUDA) build and
# take images/locks/train.txt for the rest: pip adds safetax's dependencies (accelerate comes with
# peft) but cannot replace the CUDA torch. `torch==` is listed again so that pip installs its
# dependencies (the nvidia-* CUDA libraries, triton).
RUN pip install --no-deps --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
    && python images/pins.py constraints images/locks/train.txt --installed torch > /tmp/constraints.txt \
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
    && python -c "import torch, peft, accelerate, safetax.stages.train, safetax.runner.components.train"

# For the OCI labels (`make images` passes both); declared after the installs, so that a new
# version or commit invalidates no install layer. The package version:
ARG VERSION=dev
# the git commit:
ARG REVISION=unknown
# The tag `make images` gave this image, <version>-<commit>: without git, safetax.images names the
# stage images with it, so a pipeline compiled in this image (the chart's registrar) runs its siblings.
ARG IMAGE_TAG=""
ENV SAFETAX_IMAGE_TAG=${IMAGE_TAG}
LABEL org.opencontainers.image.title="safetax-train" \
      org.opencontainers.image.description="safetax: LoRA and full safety fine-tuning of reasoning LLMs (CUDA torch, transformers, peft, accelerate)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

USER ${USER_UID}:0
WORKDIR /home/safetax
