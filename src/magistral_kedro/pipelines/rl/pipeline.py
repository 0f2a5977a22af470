"""Wiring of the rl pipeline."""

from kedro.pipeline import Node, Pipeline

from magistral_kedro.pipelines.rl import nodes


def create_pipeline(**kwargs: object) -> Pipeline:
    """train (GRPO) -> evaluate."""
    common = ["params:prompt", "params:rl", "params:reward", "params:generation", "params:seed"]
    return Pipeline(
        [
            Node(
                nodes.train_rl_model,
                inputs=["sft_model", "base_model", "rl_problems", *common],
                outputs=["rl_model", "rl_samples"],
                name="train_rl",
            ),
            Node(
                nodes.evaluate_rl,
                inputs=["rl_model", "eval_problems", *common],
                outputs=["rl_eval_samples", "rl_eval_metrics"],
                name="evaluate_rl",
            ),
        ]
    )
