"""Benchmark metrics over sampled answers (MAGISTRAL.md section 6), plain Python and pandas."""

from magistral_kedro.evaluation.metrics import (
    METRICS,
    majority_vote,
    pass_at_k,
    summarise,
    summary_table,
)

__all__ = ["METRICS", "majority_vote", "pass_at_k", "summarise", "summary_table"]
