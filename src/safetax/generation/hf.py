"""transformers generation backend: all prompts batched with left padding."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from safetax.generation.base import Completion, SamplingConfig
from safetax.timing import progress_bar

log = logging.getLogger(__name__)


class HFBackend:
    """Loads a base model once; LoRA adapters are attached by name and switched per call.

    Prompts are sorted by length and batched (``batch_size`` prompts at a time), so
    padding is small; outputs come back in prompt order.
    """

    def __init__(self, model: str, batch_size: int = 32, device: str | None = None, dtype: str = "auto") -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        bf16 = dtype == "bf16" or (dtype == "auto" and self.device.type == "cuda" and torch.cuda.is_bf16_supported())
        self.tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model: Any = AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16 if bf16 else torch.float32)
        self.model.to(self.device).eval()
        self.batch_size = batch_size
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
        self, prompts: Sequence[str], sampling: SamplingConfig, adapter: str | None = None
    ) -> list[list[Completion]]:
        self._use_adapter(adapter)
        tok = self.tokenizer
        lengths = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: lengths[i])
        out: list[list[Completion]] = [[] for _ in prompts]
        torch.manual_seed(sampling.seed)
        greedy = sampling.temperature == 0
        with progress_bar(len(prompts), desc="generate", unit="prompt") as bar:
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
                gen = self.model.generate(
                    **enc,
                    do_sample=not greedy,
                    temperature=sampling.temperature if not greedy else None,
                    top_p=sampling.top_p if not greedy else None,
                    top_k=None,
                    max_new_tokens=sampling.max_new_tokens,
                    num_return_sequences=sampling.n,
                    pad_token_id=tok.pad_token_id,
                )
                new = gen[:, enc["input_ids"].shape[1] :]
                for row, seq in enumerate(new):
                    out[idx[row // sampling.n]].append(self._completion(seq, sampling.max_new_tokens))
                bar.update(len(idx))
        return out

    def _completion(self, seq: torch.Tensor, max_new_tokens: int) -> Completion:
        eos = {self.tokenizer.eos_token_id, *(_as_list(self.model.generation_config.eos_token_id))}
        ids = seq.tolist()
        end = next((i for i, t in enumerate(ids) if t in eos), None)
        kept = ids if end is None else ids[:end]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Completion(text=text, n_tokens=len(kept), finished=end is not None)


def _as_list(x: int | list[int] | None) -> list[int]:
    return [] if x is None else ([x] if isinstance(x, int) else list(x))
