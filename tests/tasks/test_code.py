"""The reference solutions of every code family pass every generated test, in Python and C++."""

import shutil
import subprocess
import sys

import pytest

from magistral_kedro.rewards import check_format
from magistral_kedro.tasks import generate_code_problems
from magistral_kedro.tasks.code import FAMILIES

PROBLEMS = generate_code_problems(len(FAMILIES), seed=7, tests_per_problem=20)


def _run(command: list[str], stdin: str) -> str:
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=20, check=False
    ).stdout


def test_each_problem_has_20_tests_both_solutions_and_a_formatted_reference():
    assert len({p.id for p in PROBLEMS}) == len(FAMILIES)
    for problem in PROBLEMS:
        assert len(problem.tests) == 20
        assert set(problem.solutions) == {"python", "cpp"}
        assert check_format(problem.reference, "code").ok


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.id)
def test_python_solution_passes_all_tests(problem):
    for test in problem.tests:
        got = _run([sys.executable, "-c", problem.solutions["python"]], test.input)
        assert got.split() == test.output.split(), (problem.prompt, test)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to compile the C++ solutions")
@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.id)
def test_cpp_solution_passes_all_tests(problem, tmp_path):
    source, binary = tmp_path / "main.cpp", tmp_path / "main"
    source.write_text(problem.solutions["cpp"])
    subprocess.run(["g++", "-std=c++20", "-O2", str(source), "-o", str(binary)], check=True)
    for test in problem.tests:
        assert _run([str(binary)], test.input).split() == test.output.split(), (
            problem.prompt,
            test,
        )


def test_seeded():
    assert generate_code_problems(5, seed=1) == generate_code_problems(5, seed=1)
    assert generate_code_problems(5, seed=1) != generate_code_problems(5, seed=2)
