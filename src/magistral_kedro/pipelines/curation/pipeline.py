"""Wiring of the curation pipeline: one node per filter, so kedro-viz shows the funnel."""

from collections.abc import Callable
from functools import partial, update_wrapper
from typing import Any

from kedro.pipeline import Node, Pipeline

from magistral_kedro.pipelines.curation import nodes


def _named(func: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``func`` with its stage ``name`` bound, still showing as ``func`` in kedro-viz."""
    return update_wrapper(partial(func, name=name), func)


def difficulty_stage(stage: str, model: str, problems: str, kept: str) -> list[Node]:
    """Pass rates of ``problems`` under ``model`` (sampling), then the filter (re-runnable alone
    on the saved pass rates); ``params:curation.difficulty.<stage>`` says how."""
    name = f"difficulty_{stage}"
    return [
        Node(
            _named(nodes.measure_pass_rates, name),
            inputs=[
                problems,
                model,
                "params:curation",
                "params:prompt",
                "params:reward",
                "params:generation",
                "params:seed",
            ],
            outputs=f"{name}_pass_rates",
            name=f"measure_pass_rates_{stage}",
        ),
        Node(
            _named(nodes.filter_by_pass_rate, name),
            inputs=[problems, f"{name}_pass_rates", "params:curation"],
            outputs=[kept, f"{name}_rejects", f"{name}_suspects"],
            name=f"filter_by_pass_rate_{stage}",
        ),
    ]


def create_pipeline(**kwargs: object) -> Pipeline:
    """sources -> validate -> verifiable -> unique -> code tests -> translate -> split; tokenizer;
    difficulty stage 1 (SFT model) -> RL set -> stage 2 (RL model); rejects and the report."""
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
            Node(
                nodes.split_train_eval,
                inputs=["curated_problems", "params:curation", "params:seed"],
                outputs=["train_problems", "eval_problems"],
                name="split_train_eval",
            ),
            Node(
                nodes.train_problem_tokenizer,
                inputs=["train_problems", "params:curation", "params:prompt"],
                outputs="tokenizer",
                name="train_tokenizer",
            ),
            *difficulty_stage("stage1", "sft_model", "train_problems", "rl_problems"),
            *difficulty_stage("stage2", "rl_model", "rl_problems", "rl_problems_stage2"),
            Node(
                nodes.collect_rejects,
                inputs=[
                    "unreadable_rows",
                    "invalid_problems",
                    "unverifiable_problems",
                    "duplicate_problems",
                    "untestable_problems",
                    "difficulty_stage1_rejects",
                    "difficulty_stage2_rejects",
                ],
                outputs="curation_rejects",
                name="collect_rejects",
            ),
            Node(
                nodes.curation_report,
                inputs=[
                    "raw_problems",
                    "curation_rejects",
                    "eval_problems",
                    "translation_log",
                    "rl_problems",
                    "rl_problems_stage2",
                ],
                outputs=["curation_report", "curation_funnel", "curation_metrics"],
                name="curation_report",
            ),
        ]
    )
