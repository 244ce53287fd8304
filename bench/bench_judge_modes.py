"""Llama-Guard logit mode vs generate mode on the real judge path (EOS on, the default budget), on a tiny Llama.

The tiny guard (word-level tokenizer, Llama architecture, hidden 32, 2 layers) is the one of
``tests/judging/test_llama_guard.py``, trained briefly on 8 of the 64 placeholder inputs so that its first generated
token is ``safe`` or ``unsafe`` followed by EOS. Both modes run through ``LlamaGuardJudge.judge`` with its defaults
(generate mode: ``max_new_tokens`` 10, stopping at EOS), as the judge stage runs them; 1 thread, a warm-up, then
3 interleaved repeats (min and median). A third arm, generate mode with EOS off and 512 new tokens, is the old
benchmark's worst case (a verdict that never closes), printed for reference only.

What logit mode is for: one forward pass and a calibrated P(unsafe) instead of a parsed word. On the real path it
saves the few decode steps of a short verdict; the target is that it is not slower than generate mode (>= 1.0x by
the median) and that the two modes agree on >= 90 % of the labels.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import interleaved, pin_threads, ratio, summary, verdict  # noqa: E402

from safetax.judging.llama_guard import LlamaGuardJudge, render_guard_prompt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _tests_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("_guard_tests", ROOT / "tests/judging/test_llama_guard.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(n_inputs: int = 64, batch_size: int = 16, repeats: int = 3) -> bool:
    pin_threads(1)
    t = _tests_module()
    examples = t.guard_examples(n_inputs)
    prompts = [p for p, _, _ in examples]
    responses = [f"thinking {i}\n</think>\n\n{a}" for i, (_, a, _) in enumerate(examples)]
    with tempfile.TemporaryDirectory() as tmp:
        path = t.make_tiny_guard(Path(tmp) / "guard", examples[:8], steps=120)
        worst = t.make_tiny_guard(Path(tmp) / "guard-no-eos", examples[:8], steps=120, stop_at_eos=False)
        logit = LlamaGuardJudge(str(path), mode="logit", batch_size=batch_size, device="cpu")
        gen = LlamaGuardJudge(str(path), mode="generate", batch_size=batch_size, device="cpu")
        ramble = LlamaGuardJudge(str(worst), mode="generate", batch_size=batch_size, max_new_tokens=512, device="cpu")
        out: dict[str, list] = {}  # type: ignore[type-arg]
        for j in (logit, gen):
            j.judge(prompts[:2], responses[:2])  # load and warm up
        ramble.load()
        times = interleaved({"logit": lambda: out.__setitem__("logit", logit.judge(prompts, responses)),
                             "generate (EOS on)": lambda: out.__setitem__("generate", gen.judge(prompts, responses))}, repeats)
        worst_times = interleaved({"generate, EOS off, 512": lambda: ramble.generate_texts(
            [render_guard_prompt(p, a) for p, a, _ in examples])}, repeats)
    print(f"{n_inputs} inputs, batch {batch_size}, CPU, 1 thread")
    summary({**times, **worst_times})
    by_min, by_median = ratio(times, "generate (EOS on)", "logit")
    agree = sum(a.label == b.label for a, b in zip(out["logit"], out["generate"], strict=True))
    tokens = statistics.median(worst_times["generate, EOS off, 512"]) / statistics.median(times["logit"])
    print(f"  logit vs generate on the judge's path: {by_min:.2f}x (min), {by_median:.2f}x (median); "
          f"vs the no-EOS worst case: {tokens:.1f}x; labels agree {agree}/{n_inputs}")
    return verdict("logit mode >= 1.0x generate mode (median), labels agree >= 90 %",
                   by_median >= 1.0 and agree >= 0.9 * n_inputs)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
