"""Wiring of the curation pipeline: one node per filter, so kedro-viz shows the funnel; the
difficulty filter is one template pipeline, instantiated once per stage under its namespace."""

from kedro.pipeline import Node, Pipeline

from magistral_kedro.pipelines.curation import nodes, report
from magistral_kedro.pipelines.templates import instantiate


def difficulty_filter() -> Pipeline:
    """The template: pass rates of ``problems`` under ``model`` (sampling), then the filter
    (re-runnable alone on the saved pass rates), as ``params:stage`` says."""
    return Pipeline(
        [
            Node(
                nodes.measure_pass_rates,
                inputs=[
                    "problems",
                    "model",
                    "params:stage",
                    "params:prompt",
                    "params:reward",
                    "params:generation",
                    "params:seed",
                ],
                outputs="pass_rates",
                name="measure_pass_rates",
            ),
            Node(
                nodes.filter_by_pass_rate,
                inputs=["problems", "pass_rates", "params:stage"],
                outputs=["kept", "rejects", "suspects"],
                name="filter_by_pass_rate",
            ),
        ]
    )


def difficulty_stage(namespace: str, model: str, problems: str, kept: str) -> Pipeline:
    """The filter under ``namespace`` (its parameters: the section of that name): ``problems``
    sampled from ``model``, the kept ones as ``kept``, the rejects as ``<namespace>_rejects``;
    the pass rates and suspects stay in the namespace (``<namespace>.pass_rates``)."""
    return instantiate(
        difficulty_filter(),
        namespace,
        "stage",
        inputs={"problems": problems, "model": model},
        outputs={"kept": kept, "rejects": f"{namespace}_rejects"},
    )


def _gather_sources() -> Pipeline:
    """The embedded generators' problems and the mapped sources, merged: ``raw_problems``."""
    return Pipeline(
        [
            Node(
                nodes.generate_embedded_problems,
                inputs=["params:curation", "params:seed"],
                outputs="embedded_problems",
                name="generate_embedded_problems",
            ),
            Node(
                nodes.map_sources,
                inputs=["problem_sources", "params:curation"],
                outputs=["mapped_problems", "unreadable_rows"],
                name="map_sources",
            ),
            Node(
                nodes.merge_sources,
                inputs=["embedded_problems", "mapped_problems"],
                outputs="raw_problems",
                name="merge_sources",
            ),
        ]
    )


def _filter_problems() -> Pipeline:
    """validate -> verifiable -> unique -> code tests -> translate: ``curated_problems``, with
    each filter's rejects and logs."""
    return Pipeline(
        [
            Node(
                nodes.validate_problems,
                inputs="raw_problems",
                outputs=["validated_problems", "invalid_problems"],
                name="validate_problems",
            ),
            Node(
                nodes.filter_verifiable,
                inputs="validated_problems",
                outputs=["verifiable_problems", "unverifiable_problems"],
                name="filter_verifiable",
            ),
            Node(
                nodes.deduplicate,
                inputs="verifiable_problems",
                outputs=["unique_problems", "duplicate_problems"],
                name="deduplicate",
            ),
            Node(
                nodes.repair_code_tests,
                inputs=["unique_problems", "params:curation", "params:seed"],
                outputs=["tested_problems", "code_test_log", "untestable_problems"],
                name="repair_code_tests",
            ),
            Node(
                nodes.translate,
                inputs=[
                    "tested_problems",
                    "params:curation",
                    "params:model",
                    "params:generation",
                    "params:seed",
                ],
                outputs=["curated_problems", "translation_log"],
                name="translate",
            ),
        ]
    )


def _split_and_tokenizer() -> Pipeline:
    """The curated problems split into train and eval; the tokenizer, trained on the train split."""
    return Pipeline(
        [
            Node(
                nodes.split_train_eval,
                inputs=["curated_problems", "params:curation", "params:seed"],
                outputs=["train_problems", "eval_problems", "validation_problems"],
                name="split_train_eval",
            ),
            Node(
                nodes.train_problem_tokenizer,
                inputs=["train_problems", "params:curation", "params:prompt"],
                outputs="tokenizer",
                name="train_tokenizer",
            ),
        ]
    )


def _rejects_and_report() -> Pipeline:
    """Every stage's rejects in one table, then the report, the funnel and the metrics."""
    return Pipeline(
        [
            Node(
                report.collect_rejects,
                inputs={
                    "read": "unreadable_rows",
                    "validate": "invalid_problems",
                    "verifiability": "unverifiable_problems",
                    "deduplicate": "duplicate_problems",
                    "code_tests": "untestable_problems",
                    "difficulty_stage1": "difficulty_stage1_rejects",
                    "difficulty_stage2": "difficulty_stage2_rejects",
                },
                outputs="curation_rejects",
                name="collect_rejects",
            ),
            Node(
                report.curation_report,
                inputs=[
                    "raw_problems",
                    "curation_rejects",
                    "eval_problems",
                    "validation_problems",
                    "translation_log",
                    "rl_problems",
                    "rl_problems_stage2",
                ],
                outputs=["curation_report", "curation_funnel", "curation_metrics"],
                name="curation_report",
            ),
        ]
    )


def create_pipeline(**kwargs: object) -> Pipeline:
    """sources -> validate -> verifiable -> unique -> code tests -> translate -> split; tokenizer;
    difficulty stage 1 (SFT model) -> RL set -> stage 2 (RL model); rejects and the report."""
    return Pipeline(
        [
            _gather_sources(),
            _filter_problems(),
            _split_and_tokenizer(),
            difficulty_stage("difficulty_stage1", "sft_model", "train_problems", "rl_problems"),
            difficulty_stage("difficulty_stage2", "rl_model", "rl_problems", "rl_problems_stage2"),
            _rejects_and_report(),
        ]
    )
