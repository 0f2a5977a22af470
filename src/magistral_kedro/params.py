"""Typed parameters: one class per section of ``conf/base/parameters*.yml``.

Kedro validates each ``params:<name>`` input typed with these classes before any node runs, so a
wrong value (a missing key, a negative learning rate, a model path that does not exist, an unknown
language code) fails at once with a message that names the key and the value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from magistral_kedro.curation.code_tests import CodeTestConfig
from magistral_kedro.curation.difficulty import PassRateBounds
from magistral_kedro.curation.sources import SourceMapping
from magistral_kedro.generation.base import SamplingConfig
from magistral_kedro.grpo.config import GRPOConfig, Stage
from magistral_kedro.models.factory import TinyModelConfig
from magistral_kedro.tasks.math import LEVELS, check_known
from magistral_kedro.tasks.schema import LANGUAGES
from magistral_kedro.training.engine import EngineConfig
from magistral_kedro.training.sft import SFTConfig


class _Params(BaseModel):
    """A parameters section: every key must be present in the YAML (a missing one fails the run
    before any node starts); the library classes nested inside keep their documented defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def local_checkpoint(key: str, value: str | None) -> str | None:
    """``value`` if None or a local checkpoint directory; else a ValueError naming ``key``."""
    if value is not None and not (Path(value) / "config.json").is_file():
        raise ValueError(
            f"{key}={value!r} is not a local checkpoint directory with a config.json "
            "(nothing is downloaded at run time)"
        )
    return value


class ModelParams(_Params):
    """Which model the chain starts from (``model`` in parameters.yml)."""

    name_or_path: str | None = Field(
        description="A local Hugging Face checkpoint directory; null builds the tiny model."
    )
    tiny: TinyModelConfig
    dtype: Literal["float32", "bfloat16"]

    @field_validator("name_or_path")
    @classmethod
    def _exists(cls, value: str | None) -> str | None:
        return local_checkpoint("model.name_or_path", value)


class PromptParams(_Params):
    """How prompts are built (``prompt`` in parameters.yml)."""

    system_prompt: str | None = Field(
        description="'magistral' (the paper's system prompt), 'none', or literal text."
    )


class MathSourceParams(_Params):
    """The embedded math generator (``magistral_kedro.tasks.math``): how many problems, and
    the weights of their languages and levels (a level is a chain's number of operations)."""

    n: Annotated[int, Field(ge=0)]
    languages: dict[str, Annotated[float, Field(gt=0)]]
    levels: dict[int, Annotated[float, Field(gt=0)]]

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, value: dict[str, float]) -> dict[str, float]:
        check_known("language code", value, LANGUAGES)
        return value

    @field_validator("levels")
    @classmethod
    def _known_levels(cls, value: dict[int, float]) -> dict[int, float]:
        check_known("difficulty level", value, LEVELS)
        return value


class CodeSourceParams(_Params):
    """The embedded code-problem generator."""

    n: Annotated[int, Field(ge=0)]
    tests_per_problem: Annotated[int, Field(ge=20)]


class TranslationParams(_Params):
    """Which share of the English math problems is translated, into what, and by which model."""

    fraction: Annotated[float, Field(ge=0, le=1)]
    languages: list[str] = Field(min_length=1)
    model: str | None = Field(description="checkpoint for problems the templates cannot translate")
    sampling: SamplingConfig

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, value: list[str]) -> list[str]:
        check_known("language code", value, [lang for lang in LANGUAGES if lang != "en"])
        return value

    @field_validator("model")
    @classmethod
    def _exists(cls, value: str | None) -> str | None:
        return local_checkpoint("curation.translation.model", value)


class DifficultyStageParams(_Params):
    """One pass of the difficulty filter (``difficulty_stage1``, ``difficulty_stage2`` in
    parameters_curation.yml, one per namespace of the filter's template): G samples per problem
    from a reference model, and the pass-rate bounds that keep a problem."""

    model: str | None = Field(description="checkpoint directory; null: the pipeline's own model")
    kinds: list[Literal["math", "code"]]
    n_samples: Annotated[int, Field(ge=2)]
    max_problems: Annotated[int, Field(gt=0)] | None
    bounds: PassRateBounds
    sampling: SamplingConfig

    @field_validator("model")
    @classmethod
    def _exists(cls, value: str | None) -> str | None:
        return local_checkpoint("model", value)


class CurationParams(_Params):
    """``curation`` in parameters_curation.yml."""

    sources: dict[str, SourceMapping]
    math: MathSourceParams
    code: CodeSourceParams
    code_tests: CodeTestConfig
    translation: TranslationParams
    eval_size: Annotated[int, Field(gt=0)]
    validation_size: Annotated[int, Field(ge=0)]
    vocab_size: Annotated[int, Field(ge=300)]

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "difficulty" in data:
            raise ValueError(
                "curation.difficulty has moved: its stage1 and stage2 are now the sections "
                "difficulty_stage1 and difficulty_stage2 (one per namespace of the filter)"
            )
        return data


#: How many of a training's checkpoints go to MLflow as artifacts.
KeepArtifacts = Annotated[int, Field(ge=1)] | None
KEEP_ARTIFACTS_HELP = (
    "checkpoints uploaded to MLflow (checkpoints/<name>/step_<N>): null every one; n at most n, "
    "spread evenly over the run, the first and last among them"
)


class SFTParams(_Params):
    """``sft`` in parameters_sft.yml."""

    kinds: list[Literal["math", "code"]]
    engine: EngineConfig
    loop: SFTConfig
    checkpoint_dir: str
    keep_checkpoint_artifacts: KeepArtifacts = Field(description=KEEP_ARTIFACTS_HELP)


class ModelEvalParams(_Params):
    """A trained model's evaluation on the eval split (``sft_eval``, ``rl_eval`` in
    parameters_sft.yml / parameters_rl.yml, one per namespace of the evaluation's template)."""

    metrics_prefix: Literal["sft_eval", "rl_eval"] = Field(
        description="MLflow metrics are <prefix>/<metric>; compare_runs reads these two"
    )
    registered_model: str | None = Field(
        description="the model is logged to MLflow (transformers flavour, with the metrics) and "
        "registered under this name (models:/<name>/latest); null: not logged as a model"
    )
    max_problems: Annotated[int, Field(ge=0, description="the first math eval problems")]
    sampling: SamplingConfig = Field(description="the greedy answers' settings")
    k: Annotated[int, Field(ge=0, description="samples per problem for sampled accuracy")]
    temperature: Annotated[float, Field(gt=0)]


def checkpoint_reference(key: str, value: str | None) -> str | None:
    """A local checkpoint directory, an MLflow ``runs:/<run_id>/<path>`` or
    ``models:/<name>/<version|latest>`` URI (resolved when the run is known), or None."""
    if value is not None and value.startswith("runs:/"):
        if len(value.removeprefix("runs:/").split("/", 1)) < 2:
            raise ValueError(f"{key}={value!r}: expected runs:/<run_id>/<artifact path>")
        return value
    if value is not None and value.startswith("models:/"):
        if not value.removeprefix("models:/").strip("/"):
            raise ValueError(f"{key}={value!r}: expected models:/<name>/<version or latest>")
        return value
    return local_checkpoint(key, value)


class EvalParams(_Params):
    """``eval`` in parameters_eval.yml."""

    checkpoint: str | None = Field(
        description="null: this run's rl_model; a checkpoint directory; runs:/<run_id>/<path>; "
        "models:/<registered name>/<version or latest>"
    )
    heldout: bool
    benchmarks: dict[str, SourceMapping]
    max_problems: Annotated[int, Field(gt=0)]
    k: Annotated[int, Field(ge=1)]
    temperature: Annotated[float, Field(gt=0)]
    greedy: bool
    sampling: SamplingConfig
    compare_runs: Annotated[int, Field(ge=1, description="newest MLflow runs in the comparison")]

    @field_validator("checkpoint")
    @classmethod
    def _exists(cls, value: str | None) -> str | None:
        return checkpoint_reference("eval.checkpoint", value)


class AnalysisParams(_Params):
    """``analysis`` in parameters_analysis.yml."""

    run_id: str | None = Field(description="null: this run if it trained GRPO, else the newest")
    flatten_max_parameters: Annotated[int, Field(ge=0)] = Field(
        description="checkpoints of at most this many weights are flattened (exact), larger ones "
        "projected to projection_dim"
    )
    projection_dim: Annotated[int, Field(gt=1)] = Field(
        description="coordinates of the count-sketch projection of a large model's weights"
    )
    projection_seed: int
    max_checkpoints: Annotated[int, Field(ge=1)]


class RLParams(_Params):
    """``rl`` in parameters_rl.yml."""

    init: Literal["sft", "base"]
    kinds: list[Literal["math", "code"]]
    engine: EngineConfig
    grpo: GRPOConfig
    curriculum: list[Stage] = Field(min_length=1)
    checkpoint_dir: str
    keep_checkpoint_artifacts: KeepArtifacts = Field(description=KEEP_ARTIFACTS_HELP)

    @field_validator("curriculum")
    @classmethod
    def _ordered(cls, stages: list[Stage]) -> list[Stage]:
        starts = [stage.start_step for stage in stages]
        by_step = [s for s in starts[1:] if s is not None]
        if starts[0] != 0 or by_step != sorted(by_step) or 0 in by_step:
            raise ValueError(
                "curriculum stages: the first starts at step 0, the later ones at later steps in "
                f"order, or by reward alone (start_step: null); got {starts}"
            )
        never = [i for i, s in enumerate(stages) if s.start_step is None and s.min_reward is None]
        if never:
            raise ValueError(f"curriculum stages {never} have neither start_step nor min_reward")
        return stages
