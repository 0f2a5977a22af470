import pytest

from magistral_kedro.rewards import check_format, extract_boxed, normalize_answer, split_thoughts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{42}.", "42"),
        (r"\boxed{1} then \boxed{\frac{3}{4}}", r"\frac{3}{4}"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\boxed{a^{2^{3}}}", "a^{2^{3}}"),
        (r"\fbox{7}", "7"),
        (r"\boxed {5}", "5"),
        (r"\boxed{unclosed", None),
        ("no box", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("completion", "kind", "ok", "reason"),
    [
        ("<think>\n1+1=2\n</think>\nThe answer is $\\boxed{2}$.", "math", True, ""),
        ("The answer is \\boxed{2}", "math", False, "start"),
        ("<think>a</think><think>b</think> \\boxed{2}", "math", False, "one <think>"),
        ("<think>a</think> </think> \\boxed{2}", "math", False, "one </think>"),
        ("<think>a \\boxed{2}</think> so 2", "math", False, "boxed"),
        ("<think>a", "math", False, "</think>"),
        ("<think>plan</think>\n```python\nprint(1)\n```", "code", True, ""),
        ("<think>plan</think>\n```\nprint(1)\n```", "code", False, "language tag"),
        ("<think>```cpp\nint main(){}\n```</think> done", "code", False, "code block"),
        # Whitespace before <think> is no content (templates often emit a newline); text is.
        ("\n  <think>a</think> \\boxed{2}", "math", True, ""),
        ("\t\n<think>a</think> \\boxed{2}", "math", True, ""),
        ("Sure! <think>a</think> \\boxed{2}", "math", False, "start"),
        (". <think>a</think> \\boxed{2}", "math", False, "start"),
    ],
)
def test_format_rules(completion, kind, ok, reason):
    result = check_format(completion, kind)
    assert result.ok is ok
    assert reason in result.reason


def test_split_thoughts():
    assert split_thoughts("<think>\nhmm\n</think>\nSo 3.") == ("hmm", "So 3.")
    assert split_thoughts("no tags") == ("", "no tags")


def test_normalize_answer_removes_only_presentation():
    assert normalize_answer(r"$\dfrac{1}{2}$") == normalize_answer(r"\frac{1}{2}")
    assert normalize_answer(r"\left( 1,\!2 \right)") == "(1,2)"
    assert normalize_answer("12") != normalize_answer("21")
