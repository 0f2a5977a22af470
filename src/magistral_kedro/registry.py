"""Trained models as MLflow models: logged with their tokenizer, signature and evaluation
metrics, registered (``models:/magistral-rl/latest``), and resolved back to a Hugging Face
directory (what ``eval.checkpoint`` and every node take).

The flavour is MLflow's ``transformers``: ``mlflow.transformers.load_model(uri)`` gives a
text-generation pipeline, ``mlflow.pyfunc.load_model(uri).predict(["..."])`` answers in the
chat format the model was trained on (the tokenizer's template is the model's prompt template).
MLflow can log this flavour from a directory without loading it, but not with transformers 5
(MLflow 3.17 reads ``pipelines.check_task(task)[1]["impl"].__name__``, a string there): the model
is loaded once, on CPU, in its dtype, to be logged.

Nothing here knows Kedro. With no active MLflow run, nothing is logged.
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import torch
import transformers
import yaml
from huggingface_hub import ModelCard
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.entities import (
    DatasetInput,
    InputTag,
    LoggedModelOutput,
    LoggedModelStatus,
    Metric,
)
from mlflow.models import Model, ModelSignature
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
from transformers import PreTrainedTokenizerBase

from magistral_kedro.models import ModelSource, build_prompt, load_model
from magistral_kedro.models.factory import link_tree
from magistral_kedro.tasks.prompts import resolve_system_prompt
from magistral_kedro.tracking import metric_key

logger = logging.getLogger(__name__)

TASK = "text-generation"
#: A prompt (the problem's text) in, the completion out; generation settings as parameters.
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(DataType.string)]),
    outputs=Schema([ColSpec(DataType.string)]),
    params=ParamSchema(
        [
            ParamSpec("max_new_tokens", DataType.long, 256),
            ParamSpec("do_sample", DataType.boolean, False),
            ParamSpec("temperature", DataType.double, 1.0),
        ]
    ),
)
CONTEXT = "mlflow.data.context"


def problem_set(frame: pd.DataFrame, name: str, source: str | None = None) -> PandasDataset:
    """A problem table as an MLflow dataset (digest, schema, row count; ``source`` its file)."""
    with warnings.catch_warnings():  # schema hints about integer columns; two local sources
        warnings.simplefilter("ignore", UserWarning)
        return mlflow.data.from_pandas(frame, source=source, name=name)


def log_problem_set(dataset: PandasDataset, context: str, run_id: str) -> None:
    """``dataset`` as an input of ``run_id`` (once per name, digest and context)."""
    run = mlflow.MlflowClient().get_run(run_id)
    for logged in run.inputs.dataset_inputs if run.inputs else []:
        tags = {tag.key: tag.value for tag in logged.tags}
        same = (logged.dataset.name, logged.dataset.digest) == (dataset.name, dataset.digest)
        if same and tags.get(CONTEXT) == context:
            return
    with warnings.catch_warnings():  # the schema, inferred here, hints about integer columns
        warnings.simplefilter("ignore", UserWarning)
        entity = DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(CONTEXT, context)])
    mlflow.MlflowClient().log_inputs(run_id, datasets=[entity])


def prompt_template(tokenizer: PreTrainedTokenizerBase, system_prompt: str | None) -> str:
    """The chat format as MLflow's prompt template: ``{prompt}`` where the problem goes, every
    other brace (a system prompt's ``\\boxed{}``) escaped."""
    marker = "\x00PROMPT\x00"
    text = build_prompt(tokenizer, marker, resolve_system_prompt(system_prompt))
    return text.replace("{", "{{").replace("}", "}}").replace(marker, "{prompt}")


def _card(name: str, metrics: dict[str, float]) -> ModelCard:
    rows = "\n".join(f"| `{key}` | {value:.4f} |" for key, value in sorted(metrics.items()))
    return ModelCard(
        "---\nlibrary_name: transformers\npipeline_tag: text-generation\n---\n"
        f"# {name}\n\nTrained by magistral-kedro (Magistral's recipe: SFT, then GRPO).\n\n"
        f"| metric | value |\n|---|---|\n{rows}\n"
    )


@dataclass(frozen=True)
class LoggedModel:
    """Where MLflow keeps a logged model: ``models:/<model_id>``, and its registered version."""

    model_id: str
    registered_model: str | None
    version: str | None

    @property
    def model_uri(self) -> str:
        """The model's own URI (``models:/<name>/<version>`` names the registered version)."""
        return f"models:/{self.model_id}"


def log_model(
    source: ModelSource,
    name: str,
    metrics: dict[str, float],
    system_prompt: str | None,
    registered_model: str | None = None,
) -> LoggedModel | None:
    """``source`` as an MLflow model, output of the active run (transformers flavour: weights,
    tokenizer, signature, the chat format as prompt template; ``metrics`` in its model card),
    registered as ``registered_model`` if given. None (nothing logged) without an active run.

    Logged through the client rather than ``mlflow.transformers.log_model``, which would also
    link every metric the run logged at the model's step (0: the curation counts, the first
    system metrics...) to the model: here the model's metrics are only those
    :func:`log_evaluation` links to it."""
    active = mlflow.active_run()
    if active is None:
        return None
    client = mlflow.MlflowClient()
    model = client.create_logged_model(
        active.info.experiment_id, name=name, source_run_id=active.info.run_id
    )
    loaded = load_model(source)
    requirements = [f"{m.__name__}=={m.__version__.split('+')[0]}" for m in (torch, transformers)]
    with tempfile.TemporaryDirectory() as folder:
        mlflow.transformers.save_model(
            {"model": loaded.model, "tokenizer": loaded.tokenizer},
            f"{folder}/model",
            task=TASK,
            torch_dtype=loaded.model.dtype,
            signature=SIGNATURE,
            prompt_template=prompt_template(loaded.tokenizer, system_prompt),
            model_card=_card(name, metrics),
            pip_requirements=[*requirements, f"mlflow=={mlflow.__version__}"],
            mlflow_model=Model(
                artifact_path=model.artifact_location,
                model_uuid=model.model_id,
                run_id=active.info.run_id,
                model_id=model.model_id,
            ),
        )
        client.log_model_artifacts(model.model_id, f"{folder}/model")
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    client.log_outputs(active.info.run_id, [LoggedModelOutput(model.model_id, step=0)])
    version = None
    if registered_model is not None:
        version = mlflow.register_model(f"models:/{model.model_id}", registered_model).version
    logger.info(
        "%s logged as models:/%s (registered: %s %s)",
        name,
        model.model_id,
        registered_model,
        version,
    )
    return LoggedModel(model.model_id, registered_model, None if version is None else str(version))


def log_evaluation(
    metrics: dict[str, float], dataset: PandasDataset | None, model_id: str | None
) -> None:
    """An evaluation's metrics into the active run (step 0), each linked to the model it
    measured and the dataset it was measured on (MLflow 3: they show on the model's page)."""
    active = mlflow.active_run()
    if active is None or not metrics:
        return
    run_id = active.info.run_id
    if dataset is not None:
        log_problem_set(dataset, "evaluation", run_id)
    now = int(time.time() * 1000)
    entries = [
        Metric(
            metric_key(key),
            float(value),
            now,
            0,
            model_id=model_id,
            dataset_name=dataset.name if dataset is not None else None,
            dataset_digest=dataset.digest if dataset is not None else None,
        )
        for key, value in metrics.items()
    ]
    client = mlflow.MlflowClient()
    for start in range(0, len(entries), 1000):  # MLflow takes at most 1000 metrics a call
        client.log_batch(run_id, metrics=entries[start : start + 1000])


def checkpoint_directory(uri: str) -> Path:
    """A local Hugging Face directory for an MLflow URI: ``runs:/<run>/<checkpoint path>`` or a
    model's ``models:/<name>/<version|latest>`` (downloaded, or where a local store keeps it; a
    transformers-flavour model's weights and tokenizer linked into one new directory, the
    store left as it is).

    Raises:
        ValueError: if the URI cannot be fetched or holds no checkpoint.
    """
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as error:
        raise ValueError(
            f"{uri!r} could not be fetched from MLflow ({mlflow.get_tracking_uri()}): {error}"
        ) from error
    if (local / "MLmodel").is_file():
        flavour = yaml.safe_load((local / "MLmodel").read_text())["flavors"].get("transformers")
        if flavour is None:
            raise ValueError(f"{uri!r} is not a transformers-flavour MLflow model")
        merged = Path(tempfile.mkdtemp(prefix="mlflow-model-")) / "hf"
        link_tree(local / flavour["model_binary"], merged)
        for component in flavour.get("components", []):
            link_tree(local / "components" / component, merged)
        local = merged
    if not (local / "config.json").is_file():
        raise ValueError(f"{uri!r} is not a checkpoint (no config.json)")
    return local
