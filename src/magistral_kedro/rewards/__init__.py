"""Verifiers and rewards (MAGISTRAL.md section 2). Pure functions, no Kedro."""

from magistral_kedro.rewards.format import FormatResult, check_format, split_thoughts
from magistral_kedro.rewards.math import extract_boxed, normalize_answer

__all__ = ["FormatResult", "check_format", "extract_boxed", "normalize_answer", "split_thoughts"]
