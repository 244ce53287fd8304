"""The components' container images, from ``safetax.images`` (``<version>-<commit>`` tags or $SAFETAX_IMAGE_TAG, never :latest).

Read when the components are imported (at pipeline compile time): set ``SAFETAX_IMAGE_REGISTRY``
before compiling to point a pipeline at another registry.
"""

from safetax.images import image

TRAIN_IMAGE = image("train")  # LoRA and full fine-tuning: CUDA torch, transformers, peft, accelerate
VLLM_IMAGE = image("vllm")  # generation and judging: vLLM (and the transformers backend)
CPU_IMAGE = image("cpu")  # data prep, scoring, code execution, analytics
