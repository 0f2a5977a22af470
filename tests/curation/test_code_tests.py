"""Code problems' tests checked against their accepted solutions, in the sandbox."""

import subprocess
import sys

import pytest

from magistral_kedro.curation.code_tests import CodeTestConfig, repair_code_problems
from magistral_kedro.tasks import TestCase, generate_code_problems
from magistral_kedro.tasks.code import input_sampler

PROBLEMS = generate_code_problems(5, seed=3, tests_per_problem=20)
# Runs take 0.1 s of their 2 s even at load 12 on 2 cores; compiles took 4 s of the default 10 s
# there, and nothing here is meant to hit the compile limit: 60 s keeps a slow machine in.
CONFIG = CodeTestConfig(min_tests=20, time_limit_s=2.0, compile_timeout_s=60.0)


@pytest.fixture(scope="module")
def repairs():
    """One run over: a wrong stored output, too few tests (with and without an input generator),
    two solutions that disagree, a solution that hangs on one input, and no solution at all."""
    wrong, short, disagree, no_generator, hangs = PROBLEMS
    tests = list(wrong.tests)
    tests[3] = TestCase(input=tests[3].input, output="999999\n")
    python = disagree.solutions["python"].replace("print(", "print(1 + ", 1)
    hang = "import sys\ndata = sys.stdin.read()\nwhile data.strip() == '-1':\n    pass\n"
    hang += hangs.solutions["python"].replace("int(input())", "int(data)")
    problems = [
        wrong.model_copy(update={"tests": tests}),
        short.model_copy(update={"tests": short.tests[:5]}),
        disagree.model_copy(update={"solutions": {**disagree.solutions, "python": python}}),
        no_generator.model_copy(update={"tests": no_generator.tests[:5], "input_generator": None}),
        hangs.model_copy(
            update={
                "tests": [TestCase(input="-1\n", output="0\n"), *hangs.tests[:20]],
                "solutions": {"python": hang},
            }
        ),
        wrong.model_copy(update={"id": "unsolved", "solutions": None}),
    ]
    return dict(
        zip(
            ["wrong", "short", "disagree", "no_gen", "hangs", "unsolved"],
            repair_code_problems(problems, CONFIG, seed=0),
            strict=True,
        )
    )


def test_a_stored_output_all_solutions_contradict_is_fixed(repairs):
    repair = repairs["wrong"]
    (change,) = repair.changes
    assert (change.action, change.test_index, change.old_output) == ("fixed", 3, "999999\n")
    assert repair.problem.tests[3].output == change.new_output == PROBLEMS[0].tests[3].output
    assert repair.flag == ""


def test_missing_tests_come_from_the_input_generator(repairs):
    repair = repairs["short"]
    assert len(repair.problem.tests) == 20 and repair.flag == ""
    added = [c for c in repair.changes if c.action == "added"]
    assert len(added) == 15
    # The outputs of the added tests are right (the family's reference solution agrees).
    for test in repair.problem.tests[5:]:
        got = subprocess.run(
            [sys.executable, "-c", PROBLEMS[1].solutions["python"]],
            input=test.input,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert got.split() == test.output.split()


def test_tests_the_solutions_disagree_on_are_dropped(repairs):
    repair = repairs["disagree"]
    assert repair.flag == "no_valid_tests" and not repair.problem.tests
    assert {c.action for c in repair.changes} == {"dropped"}
    assert "solutions disagree" in repair.changes[0].detail


def test_too_few_tests_without_a_generator_is_flagged_not_dropped(repairs):
    repair = repairs["no_gen"]
    assert repair.flag == "too_few_tests" and len(repair.problem.tests) == 5
    assert "no input generator" in repair.detail


def test_a_test_a_solution_times_out_on_is_dropped_and_the_rest_kept(repairs):
    repair = repairs["hangs"]
    (change,) = repair.changes
    assert (change.action, change.test_index) == ("dropped", 0)
    assert "failed: python" in change.detail
    assert len(repair.problem.tests) == 20 and repair.flag == ""


def test_a_problem_without_solutions_is_kept_and_flagged(repairs):
    assert repairs["unsolved"].flag == "unverified"
    assert repairs["unsolved"].problem.tests == PROBLEMS[0].tests


def test_the_sandboxed_generator_program_matches_the_in_process_one():
    program = PROBLEMS[1].input_generator
    import random

    expected = input_sampler(program)(random.Random(11))
    got = subprocess.run(
        [sys.executable, "-c", program], input="11", capture_output=True, text=True, check=True
    ).stdout
    assert got == expected
