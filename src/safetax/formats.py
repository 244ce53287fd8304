"""Format facts of reasoning-model outputs, one pure function each."""

from __future__ import annotations

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def split_reasoning(text: str) -> tuple[str, str, bool]:
    """Split an R1-style response into ``(reasoning, answer, well_formed)``.

    R1 chat templates open ``<think>`` in the generation prompt, so a response
    usually starts inside the reasoning and contains only the closing tag.
    ``well_formed`` is True when exactly one ``</think>`` closes the reasoning
    (and at most one ``<think>`` precedes it). A response cut off inside the
    reasoning has no answer; a response with no tags at all is all answer.

    >>> split_reasoning("<think>\\n2+2=4\\n</think>\\n\\nThe answer is 4.")
    ('2+2=4', 'The answer is 4.', True)
    >>> split_reasoning("2+2=4\\n</think>\\n\\n\\\\boxed{4}")
    ('2+2=4', '\\\\boxed{4}', True)
    >>> split_reasoning("<think>\\nstill thinking")
    ('still thinking', '', False)
    >>> split_reasoning("Just an answer.")
    ('', 'Just an answer.', False)
    """
    if THINK_CLOSE in text:
        head, _, answer = text.partition(THINK_CLOSE)
        opens = head.count(THINK_OPEN)
        reasoning = head.split(THINK_OPEN, 1)[1] if opens else head
        well_formed = opens <= 1 and THINK_CLOSE not in answer and THINK_OPEN not in answer
        return reasoning.strip(), answer.strip(), well_formed
    if THINK_OPEN in text:
        return text.split(THINK_OPEN, 1)[1].strip(), "", False
    return "", text.strip(), False


def final_answer(text: str, require_think: bool = True) -> str | None:
    """The answer part of a response; None when ``require_think`` and the reasoning is not closed.

    >>> final_answer("r\\n</think>\\n\\n42"), final_answer("cut off"), final_answer("plain", require_think=False)
    ('42', None, 'plain')
    """
    _, answer, well_formed = split_reasoning(text)
    return None if require_think and not well_formed else answer


def last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` in ``text``, braces balanced; None if absent or unclosed.

    >>> last_boxed(r"first \boxed{1}, then \boxed{\frac{1}{2}}")
    '\\frac{1}{2}'
    >>> last_boxed(r"\boxed{12") is None
    True
    >>> last_boxed("no box") is None
    True
    """
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i = start + len("\\boxed{")
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None
