"""Wiring of the rl pipeline."""

from kedro.pipeline import Node, Pipeline

from magistral_kedro.pipelines.eval.pipeline import evaluation_of
from magistral_kedro.pipelines.rl import nodes


def create_pipeline(**kwargs: object) -> Pipeline:
    """train (GRPO) -> evaluate (namespace ``rl_eval``)."""
    common = ["params:prompt", "params:rl", "params:reward", "params:generation", "params:seed"]
    return Pipeline(
        [
            Node(
                nodes.train_rl_model,
                inputs=["sft_model", "base_model", "rl_problems", *common],
                outputs=["rl_model", "rl_samples"],
                name="train_rl",
            ),
            evaluation_of("rl_eval", "rl_model"),
        ]
    )
