import pandas as pd
import pytest
from kedro.io import DataCatalog
from kedro.validation.exceptions import ParameterValidationError
from kedro.validation.parameter_validator import ParameterValidator

from magistral_kedro.params import CurationParams, DifficultyStageParams
from magistral_kedro.pipelines.curation import create_pipeline
from magistral_kedro.pipelines.curation.nodes import (
    STAGES,
    deduplicate,
    filter_by_pass_rate,
    generate_embedded_problems,
    map_sources,
    normalise_text,
)
from magistral_kedro.pipelines.curation.report import collect_rejects, curation_report
from magistral_kedro.tasks.frames import frame_to_problems
from tests.support.params import merge, raw_catalog
from tests.support.pipelines import MICRO, RAW, curated, load_sources


def test_deduplicate_exact_and_normalised():
    rows = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "prompt": ["What is 1+1?", "What is 1+1?", "what is 1 + 1 ?", "What is 2+2?"],
        }
    )
    unique, duplicates = deduplicate(rows)
    assert list(unique["id"]) == ["a", "d"]
    assert dict(zip(duplicates["id"], duplicates["reject_reason"], strict=True)) == {
        "b": "exact duplicate of a",
        "c": "normalised-text duplicate of a",
    }
    assert set(duplicates["stage"]) == {"deduplicate"}
    assert normalise_text("Héllo,  WORLD!") == normalise_text("héllo world")


def test_a_source_without_a_mapping_fails_naming_it(problem_sources):
    with pytest.raises(ValueError, match=r"\['mystery'\] have no column mapping"):
        map_sources({**problem_sources, "mystery": []}, MICRO["params:curation"])


REJECTS = (
    "unreadable_rows",
    "invalid_problems",
    "unverifiable_problems",
    "duplicate_problems",
    "untestable_problems",
)


def data_rejects(out) -> pd.DataFrame:
    """The rejects of every stage before the split."""
    return pd.concat([out[name] for name in REJECTS])


@pytest.fixture(scope="module")
def out():
    return curated(load_sources())


def test_every_row_read_is_curated_or_rejected_with_a_stage_and_reason(out):
    raw, rejects = out["raw_problems"], data_rejects(out)
    train, evaluation = out["train_problems"], out["eval_problems"]
    validation = out["validation_problems"]
    read = len(raw) + len(out["unreadable_rows"])
    assert read == 300 + 4 + 9 + 4 + 3  # embedded math, embedded code, the three fixture files
    kept = len(train) + len(evaluation) + len(validation)
    assert len(raw) + len(out["unreadable_rows"]) == kept + len(rejects)
    assert rejects["reject_reason"].notna().all() and set(rejects["stage"]) <= set(STAGES)
    by_stage = rejects.groupby("stage")["reject_reason"].apply(list).to_dict()
    assert len(by_stage["read"]) == 4  # two bad JSON lines, two rows without an answer
    assert any("needs at least one test" in r for r in by_stage["validate"])  # code row 3
    assert sorted(r.split(":")[0] for r in by_stage["verifiability"]) == [
        "multi_part",
        "not_single_answer",
        "proof",
    ]
    assert len(evaluation) == 30 and len(validation) == 20
    splits = [set(split["id"]) for split in (train, evaluation, validation)]
    assert sum(map(len, splits)) == len(set.union(*splits))  # no problem in two splits
    problems = frame_to_problems(pd.concat([train, evaluation]))
    assert {p.source for p in problems} >= {"math_style", "gsm8k_style", "code_style"}
    gcd = next(p for p in problems if p.id == "gcd")  # stored output 20 fixed to 25, tests added
    assert gcd.tests[2].output.strip() == "25" and len(gcd.tests) == 20
    log = out["code_test_log"]
    assert set(log.loc[log["problem_id"] == "gcd", "action"]) == {"fixed", "added"}
    assert "flag:too_few_tests" in set(log.loc[log["problem_id"] == "double", "action"])


def test_ten_percent_of_english_math_is_translated_with_provenance(out):
    log, curated_problems = out["translation_log"], out["curated_problems"]
    english_math = (log["status"] == "translated").sum() + (
        (curated_problems["kind"] == "math") & (curated_problems["language"] == "en")
    ).sum()
    assert len(log) == round(0.1 * english_math)
    # The fixture sources have no translator here (no model configured): logged, kept English.
    failed = log[log["status"] == "failed"]
    assert set(failed["detail"]) <= {"not an embedded template problem"}
    translated = curated_problems[curated_problems["translated_from"].notna()]
    assert len(translated) == (log["status"] == "translated").sum()
    assert set(translated["language"]) == {"fr", "es", "it", "de", "zh", "ru"}


def test_same_seed_same_curation(out, problem_sources):
    again = curated(problem_sources)
    pd.testing.assert_frame_equal(out["eval_problems"], again["eval_problems"])
    pd.testing.assert_frame_equal(out["train_problems"], again["train_problems"])
    pd.testing.assert_frame_equal(out["validation_problems"], again["validation_problems"])


def test_pass_rates_can_be_rethresholded_without_sampling(out):
    train = out["train_problems"]
    math_ids = list(train.loc[train["kind"] == "math", "id"][:4])
    rates = pd.DataFrame(
        {
            "problem_id": math_ids,
            "n_samples": 4,
            "n_correct": [0, 4, 2, 0],
            "majority_answer": ["1", "5", "5", "9"],
            "majority_count": [1, 4, 2, 3],
            "majority_correct": [False, True, True, False],
            "answers": [{}] * 4,
        }
    )
    bounds = {"low": 0.0, "high": 1.0, "suspect_share": 0.5}  # the paper's, not micro's
    paper = DifficultyStageParams.model_validate(
        merge(RAW["difficulty_stage2"], {"bounds": bounds})
    )
    kept, rejects, suspects = filter_by_pass_rate(train, rates, paper)
    reasons = dict(zip(rejects["id"], rejects["reject_reason"], strict=True))
    assert reasons[math_ids[0]] == "too_hard" and reasons[math_ids[1]] == "too_easy"
    assert reasons[math_ids[3]] == "suspect_reference"
    assert math_ids[2] in set(kept["id"])
    assert list(suspects["id"]) == [math_ids[3]] and suspects.loc[0, "majority_answer"] == "9"
    assert (set(kept["kind"]) == {"math", "code"}) and len(kept) + len(rejects) == len(train)
    assert (rejects["reject_reason"] == "not_sampled").sum() == len(train) - 4 - (
        train["kind"] == "code"
    ).sum()


def test_the_report_counts_every_stage_per_source_and_plots_the_funnel(out):
    rejects = data_rejects(out)
    train = out["train_problems"]
    stage1 = train.head(40)
    dropped = train.iloc[40:].assign(stage="difficulty_stage1", reject_reason="too_easy")
    table, figure, metrics = curation_report(
        out["raw_problems"],
        pd.concat([rejects, dropped]),
        out["eval_problems"],
        out["validation_problems"],
        out["translation_log"],
        stage1,
        stage1.head(10),
    )
    assert list(table["stage"].unique()) == list(STAGES)
    totals = table.groupby("stage", sort=False)["rows_out"].sum()
    assert totals["split"] == len(train) and totals["difficulty_stage1"] == 40
    gsm = table[(table["source"] == "gsm8k_style") & (table["stage"] == "read")].iloc[0]
    assert (gsm["rows_in"], gsm["dropped"], gsm["reasons"]) == (4, 1, "no_answer: 1")
    assert metrics["curation/rl_stage1"]["value"] == 40
    assert figure.axes[0].get_title() == "Curation funnel"


def test_the_report_counts_no_translation_when_nothing_was_translated(out):
    # translation.fraction 0 writes an empty log, read back from JSON Lines without columns
    *_, metrics = curation_report(
        out["raw_problems"],
        data_rejects(out),
        out["eval_problems"],
        out["validation_problems"],
        pd.DataFrame(),
        out["train_problems"],
        out["train_problems"],
    )
    assert metrics["curation/translated"]["value"] == 0
    assert metrics["curation/translation_failed"]["value"] == 0


def test_the_pipeline_is_one_node_per_filter():
    names = {node.name for node in create_pipeline().nodes}
    assert {
        "map_sources",
        "validate_problems",
        "filter_verifiable",
        "deduplicate",
        "repair_code_tests",
        "translate",
        "difficulty_stage1.measure_pass_rates",
        "difficulty_stage1.filter_by_pass_rate",
        "difficulty_stage2.measure_pass_rates",
        "difficulty_stage2.filter_by_pass_rate",
        "curation_report",
    } <= names


def test_each_difficulty_stage_is_the_template_under_its_namespace():
    """What `kedro run --namespaces difficulty_stage1` runs: the template's two nodes, on the
    training problems and the SFT model, with the stage's own typed section; stage 2 the same
    on the RL set and the RL model. Only the RL sets and the rejects leave a namespace."""
    pipeline = create_pipeline()
    wiring = {
        "difficulty_stage1": ({"train_problems", "sft_model"}, "rl_problems"),
        "difficulty_stage2": ({"rl_problems", "rl_model"}, "rl_problems_stage2"),
    }
    for namespace, (inputs, kept) in wiring.items():
        stage = pipeline.only_nodes_with_namespaces([namespace])
        assert [node.name.split(".", 1) for node in stage.nodes] == [
            [namespace, "measure_pass_rates"],
            [namespace, "filter_by_pass_rate"],
        ]
        params = {f"params:{name}" for name in ("prompt", "reward", "generation", "seed")}
        assert stage.inputs() == inputs | params | {f"params:{namespace}"}
        assert stage.outputs() == {kept, f"{namespace}_rejects", f"{namespace}.suspects"}
        assert f"{namespace}.pass_rates" in stage.all_outputs()


def test_every_parameter_the_pipeline_reads_is_a_section_of_the_shipped_conf():
    """No namespace prefix leaks onto a shared parameter (params:difficulty_stage1.seed)."""
    inputs = create_pipeline().inputs()
    wanted = {name.removeprefix("params:") for name in inputs if name.startswith("params:")}
    assert {"difficulty_stage1", "difficulty_stage2", "seed"} <= wanted <= set(RAW)


@pytest.mark.parametrize("stage", ["difficulty_stage1", "difficulty_stage2"])
def test_kedro_rejects_a_bad_stage_value_naming_the_section_and_key(stage):
    """Kedro's own validation of typed parameters (what `kedro run --params` goes through)."""
    raw = merge(RAW, {stage: {"n_samples": 1}})
    validator = ParameterValidator({"curation": create_pipeline()})
    with pytest.raises(ParameterValidationError) as error:
        validator.validate_raw_params(raw)
    assert f"Parameter '{stage}'" in str(error.value) and "n_samples" in str(error.value)
    other = ({"difficulty_stage1", "difficulty_stage2"} - {stage}).pop()
    assert f"'{other}'" not in str(error.value)
    validated = validator.validate_raw_params(RAW)
    assert isinstance(validated[stage], DifficultyStageParams)


def test_the_old_layout_of_the_difficulty_parameters_is_named_with_where_it_went():
    with pytest.raises(ValueError, match="difficulty_stage1 and difficulty_stage2"):
        CurationParams.model_validate({**RAW["curation"], "difficulty": {}})


def test_the_catalog_keeps_the_stages_files_where_they_were():
    """The namespaced datasets match the catalog's factories, on the same files as before."""
    catalog = DataCatalog.from_config(raw_catalog(), save_version="v")
    for stage in ("difficulty_stage1", "difficulty_stage2"):
        rates = catalog.get(f"{stage}.pass_rates")
        suspects = catalog.get(f"{stage}.suspects")
        assert str(rates._filepath).endswith(f"07_model_output/{stage}_pass_rates.jsonl")
        assert str(suspects._filepath).endswith(
            f"08_reporting/{stage}_suspected_wrong_references.jsonl"
        )


def test_rejects_are_labelled_with_the_stage_they_came_in_as():
    frame = pd.DataFrame({"id": ["a"], "reject_reason": ["too_easy"], "stage": ["difficulty"]})
    collected = collect_rejects(read=frame.iloc[:0], difficulty_stage2=frame)
    assert list(collected["stage"]) == ["difficulty_stage2"]
    with pytest.raises(ValueError, match="unknown stages"):
        collect_rejects(difficulty_stage3=frame)


def test_translated_problems_read_as_their_language(out):
    """Each translated problem is in the language it says, by the reward's own classifier."""
    from magistral_kedro.rewards.language import language_of

    curated_problems = out["curated_problems"]
    translated = curated_problems[curated_problems["translated_from"].notna()]
    assert len(translated) > 0
    for prompt, language in zip(translated["prompt"], translated["language"], strict=True):
        assert language_of(prompt)[0] == language, (language, prompt)


def test_collect_rejects_holds_every_stages_rejects(out):
    """Wired to a rejects dataset of every filtering stage; every row kept, with its stage."""
    node = next(n for n in create_pipeline().nodes if n.name == "collect_rejects")
    producers = {o for n in create_pipeline().nodes for o in n.outputs}
    difficulty = {"difficulty_stage1_rejects", "difficulty_stage2_rejects"}
    assert set(node.inputs) == set(REJECTS) | difficulty and set(node.inputs) <= producers
    train = out["train_problems"]
    by_stage = {stage: out[name] for stage, name in zip(STAGES[:5], REJECTS, strict=True)} | {
        "difficulty_stage1": train.head(3).assign(reject_reason="too_hard"),
        "difficulty_stage2": train.iloc[3:5].assign(reject_reason="suspect_reference"),
    }
    collected = collect_rejects(**by_stage)
    assert len(collected) == sum(len(frame) for frame in by_stage.values())
    counts = collected.groupby("stage").size().to_dict()
    assert counts == {stage: len(f) for stage, f in by_stage.items() if len(f)}
    assert collected["reject_reason"].notna().all()


def test_curation_math_levels_reach_the_generator():
    """The embedded problems' levels are the configured ones: chains of that many operations."""
    curation = MICRO["params:curation"]
    math = curation.math.model_copy(update={"levels": {2: 1.0, 6: 1.0}})
    frame = generate_embedded_problems(curation.model_copy(update={"math": math}), seed=0)
    chains = frame[frame["kind"] == "math"]
    assert set(chains["difficulty"]) == {2, 6}
    for prompt, level in zip(chains["prompt"], chains["difficulty"], strict=True):
        assert prompt.count(". ") == level + 1  # the start, then one sentence per operation
