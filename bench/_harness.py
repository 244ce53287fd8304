"""What every benchmark shares: pinned threads, interleaved repeats, min and median, and a verdict that can fail."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TORCH_NUM_THREADS")


def pin_threads(n: int = 1) -> dict[str, str]:
    """Pin this process (and the children it starts, through the environment) to ``n`` threads; the environment."""
    for key in THREAD_ENV:
        os.environ[key] = str(n)
    import torch

    torch.set_num_threads(n)
    return {key: str(n) for key in THREAD_ENV}


def interleaved(runs: dict[str, Callable[[], object]], repeats: int = 3) -> dict[str, list[float]]:
    """Wall seconds of each run, ``repeats`` times, A B A B ... so that a load change on the machine hits all alike."""
    if repeats < 3:
        raise ValueError(f"repeats must be >= 3, got {repeats}")
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def summary(times: dict[str, list[float]]) -> None:
    for name, ts in times.items():
        print(f"  {name:>24}: min {min(ts):8.3f}s  median {statistics.median(ts):8.3f}s  ({len(ts)} runs)")


def ratio(times: dict[str, list[float]], slow: str, fast: str) -> tuple[float, float]:
    """``slow / fast`` by the min and by the median."""
    return min(times[slow]) / min(times[fast]), statistics.median(times[slow]) / statistics.median(times[fast])


def verdict(what: str, passed: bool) -> bool:
    print(f"{what}: {'PASS' if passed else 'FAIL'}")
    return passed


def tiny_model(path: str, layers: int = 4, hidden: int = 32, seed: int = 0) -> str:
    """A random Qwen2 with the demo's tokenizer (as the tests build it): generates in milliseconds on one core."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from safetax.demo import demo_tokenizer

    tok = demo_tokenizer()
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path
