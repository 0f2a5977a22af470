"""The ablations benchmark's own arithmetic: per-run figures, the language set, and the
comparison of arms over seeds."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks import dynamics, real_model
from benchmarks._common import ROOT, spread
from benchmarks.ablations import (
    ARMS,
    FIGURES,
    TrajectoryRows,
    compare,
    language_set,
    plot,
    report,
    run_figures,
    table,
)
from magistral_kedro.tasks.frames import problems_to_frame
from magistral_kedro.tasks.math import generate_math_problems


def _rows(n_steps, tokens, points=()):
    rows = TrajectoryRows()
    for step in range(n_steps):
        rows.rows.append(
            {
                "reward/total": 0.3 + 0.01 * step,
                "completion/mean_tokens": tokens(step),
                "policy/entropy": 1.0 - 0.01 * step,
                "reward/language": 0.05,
                "clip/low_frac": 0.01,
                "clip/high_frac": 0.0,
            }
        )
    for step, point in points:
        rows.steps.append(step)
        rows.points.append(point)
    return rows


def test_run_figures_compare_the_last_steps_with_the_first():
    direction = np.array([1.0, 2.0, 0.5])
    wobble = np.array([0.0, 1.0, 0.0])
    points = [(s, s * direction + 0.01 * np.sin(s) * wobble) for s in (5, 10, 15, 20, 25, 30)]
    grows = run_figures(_rows(30, lambda step: 40.0 + step, points))
    assert grows["mean_tokens_first"] == pytest.approx(44.5)  # steps 0-9
    assert grows["mean_tokens_last"] == pytest.approx(64.5)  # steps 20-29
    assert grows["length_ratio"] == pytest.approx(64.5 / 44.5)
    assert grows["entropy_last"] == pytest.approx(1.0 - 0.01 * 24.5)
    assert grows["clip_low_frac"] == pytest.approx(0.01)
    assert grows["reward_last"] - grows["reward_first"] == pytest.approx(0.2)
    assert grows["reward_first"] == pytest.approx(0.3 + 0.045 - 0.05)  # without the language term
    # reward and length both grow along the run's direction: they agree
    assert grows["cosine_reward_length"] == pytest.approx(1.0, abs=1e-3)
    shrinks = run_figures(_rows(30, lambda step: 80.0 - step, points))
    assert shrinks["cosine_reward_length"] == pytest.approx(-1.0, abs=1e-3)
    assert shrinks["length_ratio"] < 1
    # no checkpoints, no directions
    assert math.isnan(run_figures(_rows(30, lambda step: 40.0 + step))["cosine_reward_length"])


def _run(arm, seed, pass_at_1):
    values = dict.fromkeys((*FIGURES, "greedy_accuracy", "reward_last", "length_ratio"), 0.5)
    extra = {"arm": arm, "seed": seed, "pass_at_1": pass_at_1, "cosine_reward_length": 0.9}
    curves = {"policy/entropy": [1.0, 0.9], "completion/mean_tokens": [40.0, 42.0]}
    return {**values, **extra, "curves": {**curves, "reward/task": [0.3, 0.4]}}


def test_an_arm_differs_from_the_recipe_only_beyond_the_paired_seed_noise():
    runs = [_run("recipe", s, 0.40 + 0.01 * s) for s in range(3)]
    runs += [_run("no_clip_higher", s, 0.30 + 0.01 * s) for s in range(3)]
    runs += [_run("keep_non_diverse", s, 0.40 + 0.02 * s) for s in range(3)]
    # per-seed differences -0.08, -0.10, -0.12: mean -0.10, se 0.02 / sqrt(3), bound 4.303 se
    runs += [_run("no_adv_normalisation", s, 0.32 - 0.01 * s) for s in range(3)]
    # differences 0.00, 0.06, 0.12: mean 0.06 under the bound 4.303 * 0.06 / sqrt(3)
    runs += [_run("no_language_reward", s, 0.40 + 0.07 * s) for s in range(3)]
    result = report(runs, {"sft": {"pass_at_1": 0.3}}, {"steps": 2})
    assert result["arms"]["recipe"]["seeds"] == [0, 1, 2]
    assert result["arms"]["recipe"]["pass_at_1"] == pytest.approx([0.40, 0.41, 0.42])
    assert set(result["arms"]) <= set(ARMS) and len(result["arms"]) == 5
    assert result["summary"]["recipe"]["pass_at_1"]["sd"] == pytest.approx(0.01)
    versus = result["versus_recipe"]
    assert versus["no_clip_higher"]["pass_at_1"]["difference"] == pytest.approx(-0.10)
    assert versus["no_clip_higher"]["pass_at_1"]["exceeds_noise"]
    assert versus["keep_non_diverse"]["pass_at_1"]["difference"] == pytest.approx(0.01)
    assert versus["keep_non_diverse"]["pass_at_1"]["se"] == pytest.approx(0.01 / math.sqrt(3))
    assert not versus["keep_non_diverse"]["pass_at_1"]["exceeds_noise"]
    noisy = versus["no_adv_normalisation"]["pass_at_1"]
    assert noisy["difference"] == pytest.approx(-0.10)
    assert noisy["se"] == pytest.approx(0.02 / math.sqrt(3))
    assert noisy["exceeds_noise"]
    assert versus["no_language_reward"]["pass_at_1"]["difference"] == pytest.approx(0.06)
    assert not versus["no_language_reward"]["pass_at_1"]["exceeds_noise"]
    # identical values: no spread, no difference, nothing exceeds
    assert not versus["keep_non_diverse"]["maj_at_k"]["exceeds_noise"]
    assert compare({"recipe": result["arms"]["recipe"]}, "recipe") == {}
    # 4 arms x 5 figures in one family: the constant difference stays beyond noise, the noisy
    # one (t = -8.7 on 2 df, p = 0.013 alone) does not once 20 comparisons are in view
    assert versus["no_clip_higher"]["pass_at_1"]["p_holm"] == 0.0
    assert versus["no_clip_higher"]["pass_at_1"]["beyond_noise_adjusted"]
    assert (noisy["df"], noisy["n_comparisons"]) == (2, 20)
    assert noisy["p"] == pytest.approx(0.0130, abs=5e-4) and noisy["p_holm"] > 0.05
    assert not noisy["beyond_noise_adjusted"]


def test_the_plot_draws_every_arm(tmp_path):
    runs = [_run(arm, s, 0.4) for arm in ("recipe", "no_clip_higher") for s in range(2)]
    plot(report(runs, {}, {}), tmp_path / "ablations.png")
    assert (tmp_path / "ablations.png").stat().st_size > 10_000


def test_the_table_gives_each_arm_its_spread_and_its_difference_from_the_recipe():
    runs = [_run("recipe", s, 0.40 + 0.01 * s) for s in range(3)]
    runs += [_run("no_clip_higher", s, 0.30 + 0.01 * s) for s in range(3)]
    rows = table(report(runs, {}, {})).splitlines()
    assert rows[2].startswith("| recipe | 0.410 +- 0.010 | 0.500 +- 0.000 |")
    # a constant difference over the seeds: beyond noise, before and after Holm's adjustment
    assert rows[3].startswith("| no_clip_higher | 0.310 +- 0.010** |")
    assert rows[-1].startswith("| no_clip_higher | -0.1000 (p 0.000, Holm 0.000) | +0.0000 (p")


def test_the_language_set_writes_held_out_english_problems_in_six_languages(tmp_path):
    problems = generate_math_problems(40, seed=3, languages={"en": 3, "fr": 1}, levels={2: 1})
    inputs = tmp_path / "data" / "05_model_input"
    inputs.mkdir(parents=True)
    train, held_out = problems[:20], problems[20:]
    # a problem of another source: the templates cannot translate it, the next one counts
    first_english = next(p for p in held_out if p.language == "en")
    foreign_source = first_english.model_copy(update={"id": "mine-1", "source": "mine"})
    held_out = [foreign_source, *held_out]
    problems_to_frame(train).to_json(inputs / "train_problems.jsonl", orient="records", lines=True)
    problems_to_frame(held_out).to_json(
        inputs / "eval_problems.jsonl", orient="records", lines=True
    )
    english = [p for p in held_out[1:] if p.language == "en"][:3]
    languages = language_set(tmp_path, 3)
    assert len(languages) == 18
    assert sorted(set(languages["language"])) == ["de", "es", "fr", "it", "ru", "zh"]
    assert list(languages["translated_from"].unique()) == [p.id for p in english]
    assert set(languages["answer"]) == {p.answer for p in english}  # numbers kept
    assert not set(languages["prompt"]) & {p.prompt for p in train}
    # a translation that is in the training split is left out
    seen = languages.iloc[:2]
    extra = pd.concat([problems_to_frame(train), seen], ignore_index=True)
    extra.to_json(inputs / "train_problems.jsonl", orient="records", lines=True)
    assert len(language_set(tmp_path, 3)) == 16


def test_spread_is_over_the_finite_values_and_has_no_sd_for_one():
    assert spread([1.0, 3.0, math.nan]) == {"mean": 2.0, "sd": math.sqrt(2.0), "n": 2}
    one = spread([0.5])
    assert one["mean"] == 0.5 and one["n"] == 1 and math.isnan(one["sd"])
    assert spread([math.nan])["n"] == 0


@pytest.mark.slow
def test_the_gpu_scale_benchmark_runs_its_every_part_on_cpu(tmp_path):
    """The GPU benchmark at a tiny shape on CPU, so that it cannot go stale between the
    sessions that have a GPU: every part runs, the three ways of generating draw the same
    tokens (on CPU they are one loop), and training starts on-policy (ratio 1: the trainer's
    log-probs are the generator's)."""
    out = tmp_path / "gpu_scale.json"
    command = [sys.executable, "-m", "benchmarks.gpu_scale", "--arch", "tiny", "--prompts", "4",
               "--group-size", "4", "--max-new-tokens", "24", "--steps", "2", "--train-steps",
               "1", "--microbatch-tokens", "256,1024", "--out", str(out)]  # fmt: skip
    env = os.environ | {"CUDA_VISIBLE_DEVICES": ""}  # CPU, also on a GPU machine
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    generation = result["generation_alone"]
    ways = ("baseline", "graphs", "graphs_whole_batch")
    (tokens,) = {generation[way]["tokens"] for way in ways}  # one seed, the same draws on CPU
    assert 16 < tokens <= 16 * 24
    assert not any(generation[way]["graphs"] for way in ways)  # no GPU here
    assert result["grpo_loop"]["sequences_per_step"] == 16
    assert [row["microbatch_tokens"] for row in result["training"]] == [256, 1024]
    for row in result["training"]:
        assert row["tokens_per_step"] > 16 * 24
        assert row["first_step_mean_ratio"] == pytest.approx(1.0, abs=1e-5)


def _seed(seed, instruct, rl, samples=48):
    def figures(value):
        se = math.sqrt(value * (1 - value) / samples)
        return {"heldout": {"pass_at_1": value, "pass_at_1_se": se, "samples": samples}}

    return {"seed": seed, "instruct": figures(instruct), "sft": {}, "rl": figures(rl)}


def test_the_real_model_moves_only_beyond_two_standard_errors_at_every_seed(monkeypatch):
    monkeypatch.setattr(real_model, "METRICS", ("pass_at_1",))
    # 0.10 -> 0.40 over 48 samples: se of the difference 0.08, a move of 3.8 se; 0.30 -> 0.40: 1 se
    clear = real_model._moves([_seed(0, 0.10, 0.40), _seed(1, 0.10, 0.40)], "heldout")
    assert clear["rl-instruct/pass_at_1"]["beyond_2se_every_seed"] is True
    assert clear["rl-instruct/pass_at_1"]["delta"] == pytest.approx([0.30, 0.30])
    once = real_model._moves([_seed(0, 0.10, 0.40), _seed(1, 0.30, 0.40)], "heldout")
    assert once["rl-instruct/pass_at_1"]["beyond_2se_every_seed"] is False
    assert "rl-sft/pass_at_1" not in once  # the SFT model has no figures on this benchmark


def test_real_model_figures_carry_binomial_standard_errors():
    summary = pd.DataFrame(
        [
            {"benchmark": "gsm8k", "slice": "all", "problems": 10, "samples_per_problem": 2}
            | {metric: 0.5 for metric in real_model.METRICS},
            {"benchmark": "gsm8k", "slice": "difficulty=1", "problems": 5}
            | {metric: 1.0 for metric in real_model.METRICS},
        ]
    )
    figures = real_model._figures(summary)
    assert list(figures) == ["gsm8k"] and figures["gsm8k"]["samples"] == 20
    assert figures["gsm8k"]["pass_at_1_se"] == pytest.approx(math.sqrt(0.25 / 20))
    assert figures["gsm8k"]["greedy_accuracy_se"] == pytest.approx(math.sqrt(0.25 / 10))


def test_the_real_model_table_lists_every_seed_of_every_model(monkeypatch):
    monkeypatch.setattr(real_model, "METRICS", ("pass_at_1",))
    runs = [{**_seed(s, 0.1, 0.4), "minutes": 30.0, "eval_minutes": 5.0} for s in (0, 1)]
    for run in runs:
        run["sft"] = {"heldout": dict(run["rl"]["heldout"], pass_at_1=0.25)}
    table = real_model.table(real_model.summarise(runs, params=""))
    assert "| heldout | pass_at_1 | 0.10 / 0.10 | 0.25 / 0.25 | 0.40 / 0.40 |" in table


def test_generation_speed_counts_the_output_projection_apart(micro_checkpoint):
    from benchmarks.generation_speed import where_time_goes
    from magistral_kedro.generation import TransformersGenerator

    generator = TransformersGenerator(micro_checkpoint.model, micro_checkpoint.tokenizer)
    totals = where_time_goes(generator, [[5, 6, 7], [8, 9]], tokens=4)
    assert totals["output projection"] > 0  # the [b, V] matrix product, known by its shapes
    assert all(totals[family] > 0 for family in ("matrix products", "sampling", "rest"))


def test_generation_speed_sees_through_deepspeeds_linear(micro_checkpoint, monkeypatch):
    """A ZeRO-3 engine replaces ``F.linear`` for the rest of the process with an autograd
    function of its own, which the profiler records as a non-aten event above the products."""
    from deepspeed.runtime.zero.linear import zero3_linear_wrap

    from benchmarks.generation_speed import where_time_goes
    from magistral_kedro.generation import TransformersGenerator

    monkeypatch.setattr(torch.nn.functional, "linear", zero3_linear_wrap)
    generator = TransformersGenerator(micro_checkpoint.model, micro_checkpoint.tokenizer)
    totals = where_time_goes(generator, [[5, 6, 7], [8, 9]], tokens=4)
    assert totals["output projection"] > 0 and totals["matrix products"] > 0


def test_the_real_model_json_names_the_code_each_seed_ran(monkeypatch):
    monkeypatch.setattr(real_model, "METRICS", ("pass_at_1",))
    runs = [{**_seed(s, 0.1, 0.4), "minutes": 1.0, "eval_minutes": 1.0} for s in (0, 1)]
    runs[0]["code_version"] = runs[1]["code_version"] = "abc1234"
    assert real_model.summarise(runs, params="")["code_version"] == "abc1234"
    runs[1]["code_version"] = "def5678 (chain), abc1234 (instruct evaluation)"
    assert real_model.summarise(runs, params="")["code_version"] == (
        "seed 0: abc1234; seed 1: def5678 (chain), abc1234 (instruct evaluation)"
    )


def test_the_phase_where_length_moves_ends_where_the_trailing_mean_covers_most_of_it():
    steps = list(range(1, 101))
    flat = [50.0] * 100
    assert dynamics.growth_phase_end(steps, flat) is None
    ramp = [50.0 + min(step, 40) for step in steps]  # grows until step 40, then holds
    end = dynamics.growth_phase_end(steps, ramp)
    assert end is not None and 35 <= end <= 50
    jump = [50.0] * 3 + [80.0] * 97  # moves at once: the phase is over within a window of it
    assert dynamics.growth_phase_end(steps, jump) <= 3 + dynamics.WINDOW
    assert dynamics.growth_phase_end(steps, [50.0 + 0.02 * s for s in steps]) is None  # < 5%


def test_writing_gain_compares_all_written_with_none_at_each_k():
    rows = []
    for k in (2, 3, 4):
        for written, correct in ((0, 0.0), (k - 1, 1.0)):
            rows += [{"difficulty": k, "written": written, "correct": correct}] * dynamics.MIN_CELL
    frame = pd.DataFrame(rows)
    assert dynamics.writing_gain(frame) == 1.0  # k = 2 left out: k >= 3 only
    few = frame[~((frame["difficulty"] == 4) & (frame["written"] == 0))]
    assert dynamics.writing_gain(few) == 1.0  # k = 4 lacks a cell; k = 3 remains
    assert math.isnan(dynamics.writing_gain(few[few["difficulty"] != 3]))


def test_holm_adjusts_step_down_and_verdicts_follow_the_stated_rules():
    adjusted = dynamics.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": math.nan})
    assert adjusted["a"] == pytest.approx(0.04) and adjusted["c"] == pytest.approx(0.09)
    assert adjusted["b"] == pytest.approx(0.09) and adjusted["d"] == 1.0  # no p: counts as 1
    assert dynamics.verdict(0.2, 0.01, 3) == "yes"
    assert dynamics.verdict(-0.2, 0.01, 3) == "no"
    assert dynamics.verdict(0.2, 0.2, 3) == "not at this scale"
    assert dynamics.verdict(0.2, 0.01, 2) == "pending"


def test_the_dynamics_criteria_are_the_docstrings_and_name_every_claim():
    criteria = dynamics.__doc__.split("Criteria, fixed before any run")[1]
    for claim in dynamics.CLAIMS:
        assert f"``{claim}``" in criteria


def test_a_claim_needs_three_seeds_with_a_value_for_a_verdict():
    records = [
        {
            "seed": seed,
            "trajectory": {"cosine": 0.9, "n_checkpoints_in_growth": 6},
            "curves": {"sft_rl": {"completion/mean_tokens": [50.0] * 10 + [60.0] * 10}},
            "models": {
                name: {
                    "writing_gain": gain,
                    "pass_at_1": 0.5 + 0.1 * index + 0.01 * seed,
                    "length_by_k": {"1": 30.0, "4": 50.0 + 10 * index},
                }
                for index, name in enumerate(dynamics.MODELS)
            },
        }
        for seed, gain in ((1, 0.2), (2, math.nan), (3, 0.3))
    ]
    found = dynamics.verdicts(records)
    assert (
        found["writing_out_pays"]["df"] == 1 and found["writing_out_pays"]["verdict"] == "pending"
    )
    assert (
        found["rl_beats_sft"]["df"] == 2
        and found["rl_beats_sft"]["per_seed"] == [pytest.approx(0.1)] * 3
    )
    assert found["rl_beats_rs_ft"]["mean"] == pytest.approx(-0.1)  # rs_ft is the better here


def test_the_length_curriculum_reads_each_stage_s_end_and_the_raises():
    from benchmarks import length_curriculum as lc

    stages = [{"l_max": 80, "l_cache": 16}, {"l_max": 112, "l_cache": 16}]
    tokens = [40.0] * 5 + [50.0] * 10 + [60.0] * 10 + [75.0] * 10
    curve = {
        "completion/mean_tokens": tokens,
        "completion/max_tokens": [t + 20 for t in tokens],
        "completion/truncated_frac": [0.1] * 10 + [0.0] * 25,
        "accuracy": [0.5] * 35,
        "curriculum/stage": [0.0] * 15 + [1.0] * 20,
    }
    first, second = lc.stage_figures(curve, stages)
    assert (first["steps"], first["last_tokens"], first["first_tokens"]) == (15, 50.0, 45.0)
    assert second["last_tokens"] == 75.0 and second["fill"] == 75.0 / 96
    assert first["truncated_last"] == pytest.approx(0.05) and second["truncated_last"] == 0.0
    assert lc.raise_ratios([first, second]) == [pytest.approx(math.log(1.5))]
    records = [
        {"seed": s, "code_version": "x", "run_minutes": 1.0, "stages": [first, second]}
        for s in (1, 2, 3)
    ]
    result = lc.report(records)
    claim = result["verdicts"][lc.CLAIM]
    assert claim["df"] == 2 and claim["mean"] == pytest.approx(math.log(1.5))
    assert result["last_tokens_by_stage"] == [[50.0] * 3, [75.0] * 3]
    assert "| 2 | 96 |" in lc.table(result)


def test_the_learning_rate_moves_only_beyond_a_standard_error_on_validation():
    from benchmarks.choose_lr import choose

    records = [{"lr": 5e-5, "pass_at_1": 0.60}, {"lr": 1e-4, "pass_at_1": 0.61}]
    close = choose(records, current=5e-5, n_answers=1200)  # se ~0.020
    assert close["best"] == 1e-4 and close["chosen"] == 5e-5 and close["kept_current"]
    records[1]["pass_at_1"] = 0.66
    far = choose(records, current=5e-5, n_answers=1200)
    assert far["chosen"] == 1e-4 and not far["kept_current"]
    assert far["se"] == pytest.approx(math.sqrt(2 * 0.63 * 0.37 / 1200))
