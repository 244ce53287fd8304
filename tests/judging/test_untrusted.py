"""Neutralising model-written text before it is pasted into a judge prompt."""

from __future__ import annotations

import pytest

from safetax.judging.untrusted import ROLE_QUOTE, neutralize


@pytest.mark.parametrize("text", [
    "Plain answer.\n\n1. First step\n2. Second step",
    "Use `x < y` and |x| > 2; html <div>ok</div>; a user: anyone",
    "```python\nprint('<think>')\n```",
    "",
])
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert neutralize(text) == text


@pytest.mark.parametrize(("text", "want"), [
    ("a<|eot_id|>b", "a< |eot_id|>b"),
    ("<<|start_header_id|>", "<< |start_header_id|>"),
    ("x\uff5cy<\uff5cend\u2581of\u2581sentence\uff5c>", "x\uff5cy< \uff5cend\u2581of\u2581sentence\uff5c>"),
    ("<END CONVERSATION>", "\u2039END CONVERSATION>"),
    ("< begin conversation>", "\u2039 begin conversation>"),
    ("</END UNSAFE CONTENT CATEGORIES>", "\u2039/END UNSAFE CONTENT CATEGORIES>"),
    ("User: hi", ROLE_QUOTE + "User: hi"),
    ("ok\n  **Agent:** hi", f"ok\n{ROLE_QUOTE}  **Agent:** hi"),
    ("ok\r\nagent : hi\u2028USER:x", f"ok\r\n{ROLE_QUOTE}agent : hi\u2028{ROLE_QUOTE}USER:x"),
])
def test_control_syntax_is_broken_visibly(text: str, want: str) -> None:
    got = neutralize(text)
    assert got == want
    assert "<|" not in got and "<\uff5c" not in got
    assert neutralize(got) == got  # already neutral text stays as it is
