"""Verifiers and rewards (docs/recipe.md, section 2). Pure functions, no Kedro.

``score`` / ``score_batch`` give a completion's reward; the verifiers under them are usable
alone: ``math_equal``, ``run_code``, ``language_of``, ``check_format``, ``extract_boxed``.
"""

from magistral_kedro.rewards.answers import extract_boxed, normalize_answer
from magistral_kedro.rewards.code import CodeResult, TestOutcome, run_code
from magistral_kedro.rewards.decimals import Precision, requested_precision
from magistral_kedro.rewards.format import FormatResult, check_format, final_answer, split_thoughts
from magistral_kedro.rewards.language import language_of, strip_non_language
from magistral_kedro.rewards.math import math_equal
from magistral_kedro.rewards.score import (
    RewardBreakdown,
    RewardConfig,
    length_penalty,
    score,
    score_batch,
)

__all__ = [
    "CodeResult",
    "FormatResult",
    "Precision",
    "RewardBreakdown",
    "RewardConfig",
    "TestOutcome",
    "check_format",
    "extract_boxed",
    "final_answer",
    "language_of",
    "length_penalty",
    "math_equal",
    "normalize_answer",
    "requested_precision",
    "run_code",
    "score",
    "score_batch",
    "split_thoughts",
    "strip_non_language",
]
