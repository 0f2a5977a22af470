"""Wiring of the eval pipeline."""

from kedro.pipeline import Node, Pipeline

from magistral_kedro.pipelines.eval import nodes


def create_pipeline(**kwargs: object) -> Pipeline:
    """benchmarks + checkpoint -> per-sample grades, summary, metrics -> comparison of runs."""
    return Pipeline(
        [
            Node(
                nodes.collect_benchmarks,
                inputs=["eval_problems", "eval_sources", "params:eval"],
                outputs=["eval_benchmarks", "eval_rejects"],
                name="collect_benchmarks",
            ),
            Node(
                nodes.resolve_checkpoint,
                inputs=["rl_model", "params:eval"],
                outputs="eval_checkpoint",
                name="resolve_checkpoint",
            ),
            Node(
                nodes.evaluate_benchmarks,
                inputs=[
                    "eval_checkpoint",
                    "eval_benchmarks",
                    "params:eval",
                    "params:prompt",
                    "params:reward",
                    "params:generation",
                    "params:seed",
                ],
                outputs=["eval_samples", "eval_summary", "eval_metrics"],
                name="evaluate_benchmarks",
            ),
            Node(
                nodes.compare_runs,
                inputs=["eval_summary", "params:eval"],
                outputs="eval_comparison",
                name="compare_runs",
            ),
        ]
    )
