"""Chat formatting of SFT examples in the model's own template, loss on the assistant turn only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from safetax.formats import THINK_CLOSE, THINK_OPEN

IGNORE_INDEX = -100  # label value that torch's cross-entropy skips
# The seeds' refusal SFT puts this short reasoning before every refusal (LoRA paper, appendix A).
REFUSAL_THOUGHT = "I should not answer this question!"


@dataclass(frozen=True)
class SFTExample:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on prompt tokens


def render_prompt(tokenizer: Any, user_text: str) -> str:
    """The user turn plus the generation prompt, in the tokenizer's chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat_template; safetax needs a chat model's template")
    return str(tokenizer.apply_chat_template([{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True))


def opens_think(prompt_text: str) -> bool:
    """True for R1-style templates whose generation prompt already opens the reasoning."""
    return prompt_text.rstrip("\n").endswith(THINK_OPEN)


def assistant_completion(tokenizer: Any, user_text: str, answer: str, thought: str = REFUSAL_THOUGHT) -> tuple[str, str]:
    """``(prompt_text, completion_text)`` for one SFT example.

    For R1-style templates the completion continues the opened ``<think>``:
    ``thought\\n</think>\\n\\n`` + answer + EOS. Other templates: the assistant
    turn as the template renders it (the part after the prompt).
    """
    prompt = render_prompt(tokenizer, user_text)
    eos = tokenizer.eos_token or ""
    if opens_think(prompt):
        return prompt, f"{thought}\n{THINK_CLOSE}\n\n{answer}{eos}"
    full = str(
        tokenizer.apply_chat_template(
            [{"role": "user", "content": user_text}, {"role": "assistant", "content": answer}], tokenize=False
        )
    )
    if full.startswith(prompt):
        return prompt, full[len(prompt) :]
    return prompt, answer + eos


def build_sft_example(tokenizer: Any, user_text: str, answer: str, max_length: int) -> SFTExample:
    """Tokenise prompt and completion separately so the label mask is exact; truncate the prompt's left side."""
    prompt, completion = assistant_completion(tokenizer, user_text, answer)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    if len(c_ids) >= max_length:
        c_ids = c_ids[:max_length]
        p_ids = []
    else:
        p_ids = p_ids[len(p_ids) + len(c_ids) - max_length :] if len(p_ids) + len(c_ids) > max_length else p_ids
    return SFTExample(input_ids=p_ids + c_ids, labels=[IGNORE_INDEX] * len(p_ids) + c_ids)
