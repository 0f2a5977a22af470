"""Wiring of the sft pipeline."""

from kedro.pipeline import Node, Pipeline

from magistral_kedro.pipelines.eval.pipeline import evaluation_of
from magistral_kedro.pipelines.sft import nodes


def create_pipeline(**kwargs: object) -> Pipeline:
    """initialise -> examples -> train -> evaluate (namespace ``sft_eval``)."""
    return Pipeline(
        [
            Node(
                nodes.initialise_model,
                inputs=["tokenizer", "params:model", "params:seed"],
                outputs="base_model",
                name="initialise_model",
            ),
            Node(
                nodes.build_sft_examples,
                inputs=[
                    "train_problems",
                    "validation_problems",
                    "base_model",
                    "params:prompt",
                    "params:sft",
                ],
                outputs=["sft_examples", "sft_data_metrics"],
                name="build_sft_examples",
            ),
            Node(
                nodes.train_sft_model,
                inputs=["base_model", "sft_examples", "params:sft", "params:seed"],
                outputs="sft_model",
                name="train_sft",
            ),
            evaluation_of("sft_eval", "sft_model"),
        ]
    )
