"""Llama-Guard logit mode vs generate mode (512 new tokens, no early stop) on a tiny Llama (target: >= 5x).

The tiny guard (word-level tokenizer, Llama architecture, hidden 32, 2 layers) is the one of
``tests/judging/test_llama_guard.py``, trained briefly on 8 of the 64 placeholder inputs so that
its first generated token is ``safe`` or ``unsafe``; its generation config has no EOS, so
generate mode always runs the full ``max_new_tokens`` (as a real judge can when it rambles, and as
the worst case of a verdict that never closes). Agreement: logit-mode label vs the first word of
the generated text.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import tempfile
import time
from pathlib import Path

from safetax.judging.llama_guard import LlamaGuardJudge, render_guard_prompt

ROOT = Path(__file__).resolve().parents[1]


def _tests_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("_guard_tests", ROOT / "tests/judging/test_llama_guard.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(n_inputs: int = 64, max_new_tokens: int = 512, batch_size: int = 16) -> None:
    t = _tests_module()
    examples = t.guard_examples(n_inputs)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = t.make_tiny_guard(Path(tmp) / "guard", examples[:8], steps=120, stop_at_eos=False)
        print(f"built + trained tiny guard in {time.perf_counter() - t0:.1f}s (not timed below)")
        prompts = [p for p, _, _ in examples]
        responses = [f"thinking {i}\n</think>\n\n{a}" for i, (_, a, _) in enumerate(examples)]
        logit = LlamaGuardJudge(str(path), mode="logit", batch_size=batch_size, device="cpu")
        gen = LlamaGuardJudge(str(path), mode="generate", batch_size=batch_size, max_new_tokens=max_new_tokens,
                              device="cpu")
        logit.judge(prompts[:2], responses[:2])  # warm-up and load, both
        gen.load()

        t0 = time.perf_counter()
        v_logit = logit.judge(prompts, responses)
        t_logit = time.perf_counter() - t0
        t0 = time.perf_counter()
        texts = gen.generate_texts([render_guard_prompt(p, a) for p, a, _ in examples])
        t_gen = time.perf_counter() - t0

    firsts = [(re.findall(r"\w+", x)[:1] or [""])[0] for x in texts]
    agree = sum(f == v.label for f, v in zip(firsts, v_logit, strict=True))
    truth = sum(v.label == ("unsafe" if "Sure" in a else "safe") for v, (_, a, _) in zip(v_logit, examples, strict=True))
    print(f"{n_inputs} inputs, batch {batch_size}, CPU")
    print(f"logit mode:    {t_logit:7.2f}s")
    print(f"generate mode: {t_gen:7.2f}s  ({max_new_tokens} new tokens each, eos disabled)")
    ratio = t_gen / t_logit
    print(f"speed-up {ratio:.1f}x (target >= 5x): {'OK' if ratio >= 5 else 'MISSED'}")
    print(f"label agreement (logit label == first generated word): {agree}/{n_inputs}")
    print(f"logit labels matching the trained targets: {truth}/{n_inputs}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
