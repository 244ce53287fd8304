"""transformers generation backend: prompts batched with left padding, samples seeded per prompt."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from transformers import LogitsProcessorList

from safetax.generation.base import Completion, SamplingConfig, per_prompt
from safetax.generation.seeding import SeededSampler, prompt_seed
from safetax.timing import progress_bar

log = logging.getLogger(__name__)


class HFBackend:
    """Loads a base model once; LoRA adapters are attached by name and switched per call.

    Prompts are grouped by sampling settings, sorted by length and batched (``batch_size`` prompts at a time,
    each with its ``n`` samples), so padding is small; outputs come back in prompt order. Sampling draws every
    sample from its own stream (:mod:`safetax.generation.seeding`), so a prompt's samples do not depend on the
    batch it ran in or on what ran before.
    """

    name = "hf"

    def __init__(self, model: str, batch_size: int = 32, device: str | None = None, dtype: str = "auto") -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        bf16 = _bf16(self.device, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model: Any = AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16 if bf16 else torch.float32)
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        self.version = engine_version(device, dtype)
        self._adapters: dict[str, str] = {}

    def _use_adapter(self, adapter: str | None) -> None:
        from peft import PeftModel

        if adapter is None:
            if self._adapters:
                self.model.base_model.disable_adapter_layers()
            return
        name = f"a{len(self._adapters)}" if adapter not in self._adapters else self._adapters[adapter]
        if not self._adapters:
            self.model = PeftModel.from_pretrained(self.model, adapter, adapter_name=name)
            self.model.eval()
        elif adapter not in self._adapters:
            self.model.load_adapter(adapter, adapter_name=name)
        self._adapters[adapter] = name
        self.model.base_model.enable_adapter_layers()
        self.model.set_adapter(name)

    @torch.inference_mode()
    def generate(
        self, prompts: Sequence[str], sampling: SamplingConfig | Sequence[SamplingConfig], adapter: str | None = None
    ) -> list[list[Completion]]:
        self._use_adapter(adapter)
        configs = per_prompt(prompts, sampling)
        lengths = [len(self.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        out: list[list[Completion]] = [[] for _ in prompts]
        with progress_bar(len(prompts), desc="generate", unit="prompt") as bar:
            for s in dict.fromkeys(configs):  # one group per sampling config, in order of first use
                order = sorted((i for i, c in enumerate(configs) if c == s), key=lambda i: lengths[i])
                for start in range(0, len(order), self.batch_size):
                    idx = order[start : start + self.batch_size]
                    for i, comps in zip(idx, self._batch([prompts[i] for i in idx], s), strict=True):
                        out[i] = comps
                    bar.update(len(idx))
        return out

    def _batch(self, prompts: list[str], s: SamplingConfig) -> list[list[Completion]]:
        """One forward batch: every prompt repeated ``n`` times, sampled rows with their own seeds."""
        tok = self.tokenizer
        rows = [p for p in prompts for _ in range(s.n)]
        enc = tok(rows, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sampler: Any = None
        if s.temperature > 0:
            seeds = [prompt_seed(s.seed, p, k) for p in prompts for k in range(s.n)]
            sampler = LogitsProcessorList([SeededSampler(seeds, s.temperature, s.top_p, self.device)])
        gen = self.model.generate(
            **enc, do_sample=False, temperature=None, top_p=None, top_k=None, logits_processor=sampler,
            max_new_tokens=s.max_new_tokens, pad_token_id=tok.pad_token_id,
        )
        new = gen[:, enc["input_ids"].shape[1] :]
        comps = [self._completion(seq) for seq in new]
        return [comps[j * s.n : (j + 1) * s.n] for j in range(len(prompts))]

    def _completion(self, seq: torch.Tensor) -> Completion:
        eos = {self.tokenizer.eos_token_id, *(_as_list(self.model.generation_config.eos_token_id))}
        ids = seq.tolist()
        end = next((i for i, t in enumerate(ids) if t in eos), None)
        kept = ids if end is None else ids[:end]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Completion(text=text, n_tokens=len(kept), finished=end is not None)


def _bf16(device: torch.device, dtype: str) -> bool:
    return dtype == "bf16" or (dtype == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())


def engine_version(device: str | None = None, dtype: str = "auto") -> str:
    """What the generation cache keys on besides model, prompt and sampling: library versions and the precision
    (a dtype change changes the outputs); known before any model is loaded."""
    import transformers

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return f"transformers-{transformers.__version__}/torch-{torch.__version__}/{'bf16' if _bf16(dev, dtype) else 'fp32'}"


def _as_list(x: int | list[int] | None) -> list[int]:
    return [] if x is None else ([x] if isinstance(x, int) else list(x))
