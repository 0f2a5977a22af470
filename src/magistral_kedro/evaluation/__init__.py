"""Evaluation: answers sampled and graded by the Magistral reward, and the benchmark metrics
over them (docs/recipe.md, section 6). Plain Python and pandas; the sft, rl and eval pipelines call
it."""

from magistral_kedro.evaluation.grading import build_prompts, evaluate_generation, grade_samples
from magistral_kedro.evaluation.metrics import (
    LOGGED,
    METRICS,
    majority_vote,
    named_metrics,
    pass_at_k,
    summarise,
    summary_table,
)

__all__ = [
    "LOGGED",
    "METRICS",
    "build_prompts",
    "evaluate_generation",
    "grade_samples",
    "majority_vote",
    "named_metrics",
    "pass_at_k",
    "summarise",
    "summary_table",
]
