"""Wiring of the curation pipeline."""

from kedro.pipeline import Node, Pipeline

from magistral_kedro.pipelines.curation import nodes


def create_pipeline(**kwargs: object) -> Pipeline:
    """generate -> merge -> validate -> de-duplicate -> split -> report; tokenizer."""
    return Pipeline(
        [
            Node(
                nodes.generate_embedded_problems,
                inputs=["params:curation", "params:seed"],
                outputs="embedded_problems",
                name="generate_embedded_problems",
            ),
            Node(
                nodes.merge_sources,
                inputs=["embedded_problems", "user_problems"],
                outputs="raw_problems",
                name="merge_sources",
            ),
            Node(
                nodes.validate_problems,
                inputs="raw_problems",
                outputs=["validated_problems", "invalid_problems"],
                name="validate_problems",
            ),
            Node(
                nodes.deduplicate,
                inputs="validated_problems",
                outputs=["unique_problems", "duplicate_problems"],
                name="deduplicate",
            ),
            Node(
                nodes.split_train_eval,
                inputs=["unique_problems", "params:curation", "params:seed"],
                outputs=["train_problems", "eval_problems"],
                name="split_train_eval",
            ),
            Node(
                nodes.collect_rejects,
                inputs=["invalid_problems", "duplicate_problems"],
                outputs="curation_rejects",
                name="collect_rejects",
            ),
            Node(
                nodes.curation_report,
                inputs=["raw_problems", "curation_rejects", "train_problems", "eval_problems"],
                outputs=["curation_report", "curation_metrics"],
                name="curation_report",
            ),
            Node(
                nodes.train_problem_tokenizer,
                inputs=["train_problems", "params:curation", "params:prompt"],
                outputs="tokenizer",
                name="train_tokenizer",
            ),
        ]
    )
