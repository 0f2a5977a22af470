"""Wiring of the eval pipeline, and the template of a trained model's evaluation that the sft and
rl pipelines instantiate (namespaces ``sft_eval``, ``rl_eval``)."""

from kedro.pipeline import Node, Pipeline

from magistral_kedro.pipelines.eval import nodes
from magistral_kedro.pipelines.templates import instantiate


def model_evaluation() -> Pipeline:
    """The template: ``checkpoint`` on the eval split, as ``params:settings`` says; then the
    model and its metrics into MLflow (registered as ``settings.registered_model``)."""
    return Pipeline(
        [
            Node(
                nodes.evaluate_model,
                inputs=[
                    "checkpoint",
                    "eval_problems",
                    "params:settings",
                    "params:prompt",
                    "params:reward",
                    "params:generation",
                    "params:seed",
                ],
                outputs=["samples", "metrics"],
                name="evaluate_model",
            ),
            Node(
                nodes.log_model,
                inputs=[
                    "checkpoint",
                    "metrics",
                    "eval_problems",
                    "params:settings",
                    "params:prompt",
                ],
                outputs="logged_model",
                name="log_model",
            ),
        ]
    )


def evaluation_of(namespace: str, model: str) -> Pipeline:
    """The evaluation of ``model`` under ``namespace`` (its parameters: the section of that
    name), writing ``<namespace>_samples``, ``<namespace>_metrics`` and
    ``<namespace>_logged_model`` (where MLflow keeps the model)."""
    return instantiate(
        model_evaluation(),
        namespace,
        "settings",
        inputs={"checkpoint": model, "eval_problems": "eval_problems"},
        outputs={
            "samples": f"{namespace}_samples",
            "metrics": f"{namespace}_metrics",
            "logged_model": f"{namespace}_logged_model",
        },
    )


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
