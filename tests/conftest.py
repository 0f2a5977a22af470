"""Shared fixtures: micro parameters, generated problems and a tiny trained tokenizer."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from magistral_kedro.models import build_tiny_model, train_tokenizer
from magistral_kedro.models.factory import Checkpoint
from magistral_kedro.tasks import LANGUAGES, generate_math_problems
from tests.support.models import MICRO_MODEL
from tests.support.ranks import LAUNCHER_VARIABLES


@pytest.fixture(autouse=True)
def _launcher_variables_stay_in_their_test():
    """A test that starts a DeepSpeed engine in this process leaves its MASTER_PORT bound: a
    later test's `kedro run` must not inherit it (its own engine would bind the same port)."""
    before = {name: os.environ.get(name) for name in LAUNCHER_VARIABLES}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def math_problems():
    """300 problems over every language and level (seed 0)."""
    return generate_math_problems(
        300, seed=0, languages=dict.fromkeys(LANGUAGES, 1.0), levels=dict.fromkeys(range(1, 7), 1.0)
    )


@pytest.fixture(scope="session")
def tokenizer(math_problems):
    """A small BPE tokenizer trained on the fixture problems."""
    texts = [t for p in math_problems for t in (p.prompt, p.reference)]
    return train_tokenizer(texts, vocab_size=400)


@pytest.fixture()
def micro_checkpoint(tokenizer):
    """A fresh, randomly initialised micro model (seed 0) with the fixture tokenizer."""
    return Checkpoint(model=build_tiny_model(tokenizer, MICRO_MODEL, seed=0), tokenizer=tokenizer)


@pytest.fixture(scope="session")
def smollm2_file():
    """The real SmolLM2 GGUF file; a skip where its package is not installed, a failure under
    REQUIRE_SMOLLM=1 (``make test`` installs it)."""
    from magistral_kedro.models.gguf import smollm2_gguf

    try:
        return smollm2_gguf()
    except FileNotFoundError as missing:
        if os.environ.get("REQUIRE_SMOLLM") == "1":
            pytest.fail(f"REQUIRE_SMOLLM is set: {missing}")
        pytest.skip(str(missing))


@pytest.fixture(scope="session")
def smollm2(smollm2_file, tmp_path_factory):
    """SmolLM2-135M-Instruct converted to a Hugging Face directory, once for the session: what
    the conversion said (a ``GGUFSummary``), and the directory."""
    from magistral_kedro.models.gguf import convert_gguf

    out = tmp_path_factory.mktemp("smollm2") / "smollm2-135m-instruct"
    return convert_gguf(smollm2_file, out), out
