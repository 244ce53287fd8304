# syntax=docker/dockerfile:1
# safetax-vllm: generation and judging on NVIDIA GPUs with vLLM; the transformers backend
# (generation_backend=hf) and the Llama Guard judge run here too.
# Build from the repository root: `make images`, or
#   docker build -f images/vllm.Dockerfile -t ghcr.io/safetax/safetax-vllm:TAG --build-arg VERSION=VERSION --build-arg IMAGE_TAG=TAG .
#   (TAG: <version>-<12 hex of the commit>, as `python -m safetax.images` prints it)

# vLLM's own image: its CUDA torch and kernels are the combination vLLM was released with
# (v0.33.0: torch 2.14.0, transformers >=5.16.1,<5.21), and torch stays as it is.
# `images/pins.py lock vllm` reads this tag: relock after changing it.
ARG VLLM_IMAGE=vllm/vllm-openai:v0.33.0
FROM ${VLLM_IMAGE}
ARG VLLM_IMAGE

# The KFP SDK the components run on (install_kfp_package=False): pyproject.toml's kfp and kfp-kubernetes.
ARG KFP_VERSION=2.17.0
# Numeric UID of the unprivileged user; its group is 0, so an arbitrary UID (OpenShift) can write too.
ARG USER_UID=1000

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# vLLM is installed in the system Python; safetax joins that environment, so pip may write to it.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_ROOT_USER_ACTION=ignore \
    HOME=/home/safetax \
    XDG_CACHE_HOME=/home/safetax/.cache \
    HF_HOME=/home/safetax/.cache/huggingface

# The user (removing whichever account an Ubuntu base gives UID 1000), its caches (vLLM's,
# Triton's and torch.compile's live under $HOME), and the artifact directories KFP's launcher
# creates at the filesystem root (/gcs, /minio, /s3), which a non-root user could not create.
RUN if getent passwd "${USER_UID}" >/dev/null; then userdel "$(getent passwd "${USER_UID}" | cut -d: -f1)"; fi \
    && useradd --uid "${USER_UID}" --gid 0 --home-dir "${HOME}" --create-home --shell /bin/bash safetax \
    && mkdir -p "${HF_HOME}" /gcs /minio /s3 \
    && chown -R "${USER_UID}:0" "${HOME}" /gcs /minio /s3 \
    && chmod -R g=u "${HOME}" /gcs /minio /s3

WORKDIR /opt/safetax
COPY pyproject.toml ./
COPY images/pins.py images/
COPY images/locks/vllm.txt images/locks/

# Dependencies first, so that a code change rebuilds only the last layers. pyproject.toml pins
# the CPU torch of the dev machines, which vLLM's torch must not be replaced by: torch is left
# out of the requirements, and every distribution the image already has (torch, numpy, ...) is
# pinned at its installed version, except the SHARED ones of images/pins.py (transformers,
# tokenizers, peft, math-verify, kfp, ...): they take images/locks/vllm.txt's versions, as in the
# train and cpu images, which that lock resolved within vLLM's own requirements. The lock pins
# what pip adds; `pip check` fails the build if the result breaks any installed package.
RUN python3 images/pins.py constraints images/locks/vllm.txt --relock-shared > /tmp/constraints.txt \
    && python3 images/pins.py requirements pyproject.toml --exclude torch > /tmp/requirements.txt \
    && python3 -m pip install --constraint /tmp/constraints.txt --requirement /tmp/requirements.txt \
        "kfp==${KFP_VERSION}" "kfp-kubernetes==${KFP_VERSION}" \
    && python3 -m pip check \
    && rm /tmp/constraints.txt /tmp/requirements.txt

# safetax itself, without dependencies (above), built with the image's setuptools (no build
# isolation, so nothing unpinned is fetched); the KFP components are in it (safetax.runner.components).
COPY README.md ./
COPY src/ src/
RUN python3 -m pip install --no-deps --no-build-isolation /opt/safetax \
    && python3 -c "import vllm, transformers, safetax.stages.generate, safetax.stages.judge, safetax.runner.components.generate"

# For the OCI labels (`make images` passes both); declared after the installs, so that a new
# version or commit invalidates no install layer. The package version:
ARG VERSION=dev
# the git commit:
ARG REVISION=unknown
# The tag `make images` gave this image, <version>-<commit>: without git, safetax.images names the
# stage images with it, so a pipeline compiled in this image (the chart's registrar) runs its siblings.
ARG IMAGE_TAG=""
ENV SAFETAX_IMAGE_TAG=${IMAGE_TAG}
LABEL org.opencontainers.image.title="safetax-vllm" \
      org.opencontainers.image.description="safetax: generation and safety judging of reasoning LLMs with vLLM or transformers" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${VLLM_IMAGE}"

USER ${USER_UID}:0
WORKDIR /home/safetax
# The base starts an OpenAI server (`vllm serve`); KFP runs its own command, and a plain
# `docker run` should give a Python prompt, not a server.
ENTRYPOINT []
CMD ["python3"]
