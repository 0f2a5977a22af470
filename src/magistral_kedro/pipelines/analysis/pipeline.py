"""Wiring of the analysis pipeline."""

from kedro.pipeline import Node, Pipeline

from magistral_kedro.pipelines.analysis import nodes


def create_pipeline(**kwargs: object) -> Pipeline:
    """RL run -> weight trajectory + training curves -> HTML report."""
    return Pipeline(
        [
            Node(
                nodes.load_rl_run,
                inputs=["rl_model", "params:analysis"],
                outputs=["rl_checkpoint_points", "rl_history"],
                name="load_rl_run",
            ),
            Node(
                nodes.weight_trajectory,
                inputs=["rl_checkpoint_points", "rl_history"],
                outputs=[
                    "weight_trajectory",
                    "weight_trajectory_stats",
                    "weight_trajectory_plot",
                    "weight_trajectory_png",
                ],
                name="weight_trajectory",
            ),
            Node(
                nodes.training_curves,
                inputs="rl_history",
                outputs=["training_curves_plot", "training_curves_png"],
                name="training_curves",
            ),
            Node(
                nodes.html_report,
                inputs=[
                    "weight_trajectory_stats",
                    "weight_trajectory_png",
                    "training_curves_png",
                    "eval_summary",
                    "eval_comparison",
                    "curation_report",
                ],
                outputs="analysis_report",
                name="html_report",
            ),
        ]
    )
