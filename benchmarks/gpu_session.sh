#!/usr/bin/env bash
# What a session with a lent GPU machine runs, in one call (its device time is short):
#   1. the wheels of .whl/ into /tmp/site (the machine has Python 3.12, torch, transformers
#      5.17, huggingface-hub 1.33 but not Kedro, MLflow, DeepSpeed...). Fill .whl/ (53 MiB,
#      git-ignored) here, before the call:
#        pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#          --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#          --platform manylinux2014_x86_64 -d .whl -r benchmarks/gpu_wheels.txt
#        DS_BUILD_OPS=0 .venv/bin/pip wheel --no-deps --no-build-isolation --no-cache-dir \
#          deepspeed==0.19.8 -w .whl
#      and name .whl in the call's carry;
#   2. the tests that need CUDA (CUDA-graph decoding against the same steps run one by one);
#   3. benchmarks.gpu_scale at the Qwen2.5-0.5B shape (generation with and without CUDA
#      graphs, the GRPO loop, training throughput and MFU, an operator profile);
#   4. conf/gpu's code path through every pipeline with `kedro run` (tests/test_real_scale.py:
#      ZeRO-3, bf16, gradient checkpointing), here on the GPU;
#   5. `kedro run --env micro`, the whole chain as a user runs it, in a scratch copy: GRPO
#      under ZeRO-2 decodes from CUDA graphs between optimiser steps.
# Everything it prints and writes lands in $OUT (the device tool's folder; ./gpu_out elsewhere).
set -uo pipefail
OUT="${OUT:-gpu_out}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD/src:$PWD" PYTHONUNBUFFERED=1 KEDRO_DISABLE_TELEMETRY=true
export TOKENIZERS_PARALLELISM=false  # CODE_VERSION: the commit sent, where git cannot tell
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers, deepspeed, kedro; print('torch', torch.__version__, \
'transformers', transformers.__version__, 'deepspeed', deepspeed.__version__, 'kedro', \
kedro.__version__)"

section() { echo; echo "=== $1 ($(date +%T))"; }

section "CUDA tests"
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/generation/test_graphs.py 2>&1 \
    | tee "$OUT/tests.log" | tail -15
echo "exit ${PIPESTATUS[0]}"

section "gpu_scale, Qwen2.5-0.5B shape"
timeout "${SCALE_TIMEOUT:-260}" python3 -m benchmarks.gpu_scale --arch qwen2.5-0.5b \
    --zero-stage 2 --microbatch-tokens "${MICROBATCH_TOKENS:-16384,32768}" --profile \
    --out "$OUT/gpu_scale.json" > "$OUT/gpu_scale.log" 2>&1
echo "exit $?"
grep -v "Warning\|warn(" "$OUT/gpu_scale.log" | tail -120

section "conf/gpu's code path, every pipeline, kedro run"
timeout "${TWIN_TIMEOUT:-200}" python3 -m pytest -q -p no:cacheprovider -x \
    "tests/test_real_scale.py::test_the_gpu_code_path_runs_every_pipeline_on_cpu" 2>&1 \
    | tee "$OUT/real_scale.log" | tail -25
echo "exit ${PIPESTATUS[0]}"
section "kedro run --env micro, a scratch copy"
micro=$(mktemp -d)
cp -r conf pyproject.toml .telemetry "$micro" && rm -rf "$micro/conf/local" && mkdir -p \
    "$micro/conf/local" "$micro/src" "$micro/data/01_raw"
cp data/01_raw/example_problems.jsonl "$micro/data/01_raw/"
(cd "$micro" && timeout "${MICRO_TIMEOUT:-150}" python3 -m kedro run --env micro) \
    > "$OUT/micro_run.log" 2>&1
echo "exit $?"
grep -a "Pipeline execution completed\|Error\|error" "$OUT/micro_run.log" | tail -5
section "done"
