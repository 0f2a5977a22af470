# The two set-up commands of the README:
#   make run    create .venv, install, run the whole chain on the embedded default
#   make test   create .venv, install, lint, type-check and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export KEDRO_DISABLE_TELEMETRY := true
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test lint typecheck pytest pytest-fast bench viz mlflow clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: it comes from local disk as a CPU build (an unpinned torch pulls CUDA).
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[cpu,dev]"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/kedro run

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest

# Everything but the slow end-to-end runs (about half the time).
pytest-fast: install
	$(BIN)/pytest -m "not slow"

test: lint typecheck pytest

# Benchmarks print figures (never asserted in tests); see benchmarks/.
bench: install
	$(BIN)/python -m benchmarks.rewards
	$(BIN)/python -m benchmarks.grpo
	$(BIN)/python -m benchmarks.rl_gain
	$(BIN)/python -m benchmarks.curation

viz: install
	$(BIN)/kedro viz build

mlflow: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --workers 1

clean:
	rm -rf $(VENV) mlflow.db mlruns build
