"""The problem schema and the embedded task generators (plain Python, no Kedro)."""

from magistral_kedro.tasks.code import generate_code_problems
from magistral_kedro.tasks.math import generate_math_problems
from magistral_kedro.tasks.schema import LANGUAGES, Problem, TestCase, validate_rows

__all__ = [
    "LANGUAGES",
    "Problem",
    "TestCase",
    "generate_code_problems",
    "generate_math_problems",
    "validate_rows",
]
