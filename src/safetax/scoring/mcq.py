r"""Multiple-choice answers: the letter a response commits to in its final answer.

Accepted forms, in order: the last ``\boxed{}`` (``\boxed{B}``,
``\boxed{\text{B}}``, ``\boxed{(B)}``, ``\boxed{B) 42}``), else the last
"Final Answer: B" / "The answer is (B)" / "Answer: B" phrase. A response with
none of these, or whose reasoning is not closed, is unscored.
"""

from __future__ import annotations

import re

from safetax.formats import final_answer, last_boxed, split_reasoning
from safetax.records import Score

LETTERS = "ABCD"
_WRAPPER_RE = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_PHRASE_RE = re.compile(
    r"(?i:\banswer)(?i:\s+is)?\s*\**\s*[:：]?\s*\**\s*(?:\$\s*)?(?:\\(?:text|textbf|mathrm)\{\s*)?"
    r"[(\[]?\s*(?P<letter>[A-Z])\s*[)\]]?(?![A-Za-z0-9])"
)


def _boxed_letter(content: str, letters: str) -> str | None:
    r"""The letter in a ``\boxed{}``'s content, or None when it is not a bare (decorated) letter.

    >>> _boxed_letter(r"\text{(C)}", "ABCD"), _boxed_letter("B) 42", "ABCD"), _boxed_letter("42", "ABCD")
    ('C', 'B', None)
    """
    s = content
    for _ in range(3):  # nested \text{\textbf{B}}
        s = _WRAPPER_RE.sub(r"\1", s)
    s = s.replace("$", "").replace("*", "").strip()
    m = re.fullmatch(r"[(\[]?\s*([A-Z])\s*[)\]]?\.?", s) or re.match(r"[(\[]?([A-Z])[)\].:]\s", s)
    if m and m.group(1) in letters:
        return m.group(1)
    return None


def extract_choice(response: str, letters: str = LETTERS, require_think: bool = True) -> str | None:
    r"""The chosen letter of a multiple-choice response, or None when it commits to none.

    >>> extract_choice("hmm\n</think>\n\nSo the answer is \\boxed{\\text{B}}.")
    'B'
    >>> extract_choice("hmm\n</think>\n\nThe answer is (D).")
    'D'
    >>> extract_choice("hmm\n</think>\n\nI am not sure.") is None
    True
    """
    answer = final_answer(response, require_think)
    if answer is None:
        return None
    boxed = last_boxed(answer)
    if boxed is not None:
        letter = _boxed_letter(boxed, letters)
        if letter is not None:
            return letter
    for m in reversed(list(_PHRASE_RE.finditer(answer))):
        if m.group("letter") in letters:
            return m.group("letter")
    return None


def score_choice(response: str, reference: str, letters: str = LETTERS, require_think: bool = True) -> Score:
    """1.0 when the extracted letter is ``reference``, 0.0 when another letter, None when none is found.

    >>> score_choice("x\\n</think>\\n\\nFinal Answer: C", "C")
    Score(value=1.0, answer='C', reason='match')
    """
    _, _, well_formed = split_reasoning(response)
    if require_think and not well_formed:
        return Score(None, None, "no final answer: reasoning not closed by </think>")
    letter = extract_choice(response, letters, require_think)
    if letter is None:
        return Score(None, None, f"no answer letter ({', '.join(letters)}) found in the final answer")
    ok = letter == reference.strip().upper()
    return Score(1.0 if ok else 0.0, letter, "match" if ok else "mismatch")
