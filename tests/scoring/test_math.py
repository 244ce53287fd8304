from safetax.scoring.math import score_boxed


def test_correct_answer_with_leading_zero_and_nested_braces() -> None:
    assert score_boxed("a\n</think>\n\nSo \\boxed{025}.", "25").value == 1.0
    assert score_boxed("a\n</think>\n\n\\boxed{\\frac{1}{2}}", "\\frac{1}{2}").value == 1.0


def test_last_box_of_final_answer_counts_not_the_reasoning() -> None:
    s = score_boxed("try \\boxed{7}\n</think>\n\nfirst \\boxed{3} then \\boxed{4}", "4")
    assert (s.value, s.answer) == (1.0, "4")
    assert score_boxed("\\boxed{4}\n</think>\n\nI think 5.", "4").value is None


def test_wrong_and_unscorable() -> None:
    assert score_boxed("x\n</think>\n\n\\boxed{26}", "25").value == 0.0
    s = score_boxed("still thinking \\boxed{25}", "25")
    assert s.value is None and "not closed" in s.reason
