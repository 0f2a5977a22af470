"""Curation nodes: generate or load problems, validate, de-duplicate, split, train the tokenizer.

Every row that leaves the funnel leaves with a reason, in ``curation_rejects``.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import Any

import numpy as np
import pandas as pd
from transformers import PreTrainedTokenizerFast

from magistral_kedro.models.tokenizer import train_tokenizer
from magistral_kedro.params import CurationParams, PromptParams
from magistral_kedro.pipelines.frames import COLUMNS, problems_to_frame
from magistral_kedro.tasks import generate_code_problems, generate_math_problems
from magistral_kedro.tasks.prompts import resolve_system_prompt
from magistral_kedro.tasks.schema import validate_rows
from magistral_kedro.tracking import as_metrics_dataset

logger = logging.getLogger(__name__)


def generate_embedded_problems(curation: CurationParams, seed: int) -> pd.DataFrame:
    """The embedded default's problems: multilingual math word problems and code tasks."""
    math_problems = generate_math_problems(
        curation.math.n, seed, curation.math.languages, curation.math.levels
    )
    code_problems = generate_code_problems(curation.code.n, seed, curation.code.tests_per_problem)
    return problems_to_frame(math_problems + code_problems)


def merge_sources(embedded: pd.DataFrame, user: pd.DataFrame) -> pd.DataFrame:
    """All sources in one table; a user row without ``source`` is attributed to ``user``."""
    user = user.copy()
    if "source" not in user.columns:
        user["source"] = "user"
    user["source"] = user["source"].fillna("user")
    return pd.concat([embedded, user], ignore_index=True, sort=False)


def validate_problems(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into schema-valid problems and rejects (row as given + ``reject_reason``)."""
    valid, rejects = validate_rows(raw.to_dict(orient="records"))
    if rejects:
        logger.warning(
            "%d of %d raw rows fail the problem schema; see curation_rejects. First: %s",
            len(rejects),
            len(raw),
            rejects[0]["reject_reason"],
        )
    frame = pd.DataFrame(rejects)
    if not frame.empty:
        frame["stage"] = "validate"
    return problems_to_frame(valid), frame


def normalise_text(text: str) -> str:
    """Case, accents-as-composed, punctuation and spacing folded: near-identical prompts collide."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[^\w\s]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def deduplicate(problems: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the first of each group of problems whose prompts match exactly or once normalised.

    Returns the unique problems and the duplicates, each with ``reject_reason`` naming the id kept.
    """
    keys = {
        "exact duplicate": problems["prompt"],
        "normalised-text duplicate": problems["prompt"].map(normalise_text),
    }
    keep = pd.Series(True, index=problems.index)
    reasons = pd.Series("", index=problems.index)
    for label, key in keys.items():
        first_id = problems.groupby(key)["id"].transform("first")
        duplicate = keep & (key.duplicated(keep="first"))
        reasons[duplicate] = label + " of " + first_id[duplicate]
        keep &= ~duplicate
    duplicates = problems[~keep].assign(reject_reason=reasons[~keep], stage="deduplicate")
    return problems[keep].reset_index(drop=True), duplicates.reset_index(drop=True)


def split_train_eval(
    problems: pd.DataFrame, curation: CurationParams, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded random split; the eval set holds ``eval_size`` problems (at most half the data)."""
    if problems.empty:
        raise ValueError("no problem survived curation: check curation_rejects for the reasons")
    n_eval = min(curation.eval_size, len(problems) // 2)
    order = np.random.default_rng(seed).permutation(len(problems))
    eval_rows, train_rows = order[:n_eval], order[n_eval:]
    return (
        problems.iloc[np.sort(train_rows)].reset_index(drop=True),
        problems.iloc[np.sort(eval_rows)].reset_index(drop=True),
    )


def collect_rejects(invalid: pd.DataFrame, duplicates: pd.DataFrame) -> pd.DataFrame:
    """Every row the funnel dropped, with the stage and the reason."""
    frames = [f for f in (invalid, duplicates) if not f.empty]
    if not frames:
        return pd.DataFrame(columns=[*COLUMNS, "stage", "reject_reason"])
    return pd.concat(frames, ignore_index=True, sort=False)


def curation_report(
    raw: pd.DataFrame,
    rejects: pd.DataFrame,
    train: pd.DataFrame,
    evaluation: pd.DataFrame,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Counts in and out of every stage per source, kind and language, and headline metrics."""
    by = ["source", "kind", "language"]

    def counts(frame: pd.DataFrame, name: str) -> pd.Series:
        present = [c for c in by if c in frame.columns]
        if frame.empty or len(present) < len(by):
            return pd.Series(dtype="int64", name=name)
        return frame.groupby(by, dropna=False).size().rename(name)

    table = pd.concat(
        [
            counts(raw, "raw"),
            counts(rejects[rejects["stage"] == "validate"], "invalid"),
            counts(rejects[rejects["stage"] == "deduplicate"], "duplicate"),
            counts(train, "train"),
            counts(evaluation, "eval"),
        ],
        axis=1,
    )
    table = table.fillna(0).astype("int64").reset_index()
    metrics = {
        "curation/raw": len(raw),
        "curation/rejected": len(rejects),
        "curation/train": len(train),
        "curation/eval": len(evaluation),
    }
    logger.info("curation: %s", metrics)
    return table, as_metrics_dataset(metrics)


def train_problem_tokenizer(
    train: pd.DataFrame, curation: CurationParams, prompt: PromptParams
) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on the training prompts, references and the system prompt."""
    system_prompt = resolve_system_prompt(prompt.system_prompt) or ""
    texts = [system_prompt, *train["prompt"], *train["reference"].dropna()]
    return train_tokenizer(texts, curation.vocab_size)
