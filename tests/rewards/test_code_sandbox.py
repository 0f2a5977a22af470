"""The code verifier: right programs pass; hostile ones fail within limits, harming nothing."""

import errno
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from magistral_kedro.rewards import run_code, sandbox
from magistral_kedro.rewards.code import precompiled_header_dir
from magistral_kedro.rewards.sandbox import _boxes_dir, _sandbox_base, isolation_mode
from magistral_kedro.tasks import generate_code_problems
from tests.support.rewards.hostile_programs import hostile_programs, processes_in

PROBLEM = generate_code_problems(1, seed=3, tests_per_problem=24)[0]
TESTS = [t.model_dump() for t in PROBLEM.tests]
PROJECT = Path(__file__).resolve().parents[2]
NOBODY = 65534


@pytest.mark.parametrize("language", ["python", "cpp"])
def test_reference_solutions_pass_20_drawn_tests(language):
    result = run_code(PROBLEM.solutions[language], language, TESTS, max_tests=20, seed=1)
    assert result.passed, result
    assert result.statuses == ["pass"] * 20 and result.skipped == 0


def test_a_wrong_program_fails_with_wrong_answer_and_skips_the_rest():
    result = run_code("print(0)", "python", TESTS)
    assert not result.passed
    assert result.statuses == ["wrong_answer"] and result.skipped == 19
    full = run_code("print(0)", "python", TESTS[:3], stop_on_failure=False)
    assert len(full.tests) == 3


def test_tests_are_drawn_with_the_seed():
    def order(seed):
        echo = "import sys; print(sys.stdin.read(), file=sys.stderr); print(0)"
        return run_code(echo, "py", TESTS, max_tests=5, seed=seed, stop_on_failure=False)

    assert len(order(1).tests) == 5


def test_compile_errors_and_unknown_languages():
    assert run_code("int main( {", "cpp", TESTS).compile_status == "compile_error"
    assert run_code("print(1)", "brainfuck", TESTS).detail.startswith("unsupported language")


HOSTILE = hostile_programs(PROJECT)


@pytest.fixture()
def own_boxes(monkeypatch):
    """A sandbox directory of the test's own: the shared one also holds the boxes of every other
    run of the same user on the machine (another test session), whose processes are not the
    program's leftovers."""
    precompiled_header_dir()  # the shared header, cached now: not rebuilt in the new directory
    base = Path(tempfile.mkdtemp(prefix="test-", dir=_sandbox_base()))
    monkeypatch.setenv("MAGISTRAL_SANDBOX_DIR", str(base))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_programs_fail_within_limits_and_leave_nothing(name, own_boxes):
    language, code, statuses = HOSTILE[name]
    started = time.monotonic()
    result = run_code(code, language, TESTS[:1], time_limit_s=2.0)
    assert not result.passed
    assert set(result.statuses) <= statuses, result
    assert time.monotonic() - started < 20
    assert not (PROJECT / "PWNED").exists()
    boxes = str(_boxes_dir())  # every process of the program is gone (give it a moment)
    assert Path(boxes).is_relative_to(own_boxes)
    deadline = time.monotonic() + 5
    while processes_in(boxes) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_in(boxes) == []


def test_compile_time_explosion_is_contained():
    code = (
        "template<int N> struct F { static const int v = F<N-1>::v + F<N-2>::v; };\n"
        "template<> struct F<0> { static const int v = 0; };\n"
        "template<> struct F<1> { static const int v = 1; };\n"
        "int main() { return F<100000>::v; }\n"
    )
    started = time.monotonic()
    result = run_code(code, "cpp", TESTS[:1], compile_timeout_s=5)
    assert not result.passed and result.compile_status in {"compile_error", "timeout", "memory"}
    assert time.monotonic() - started < 15


@pytest.mark.skipif(isolation_mode() != "root", reason="as root, programs run as their own uid")
def test_isolation_runs_as_the_boxs_own_uid_without_network():
    probe = (
        "import os, socket\n"
        "print(os.getuid(), os.getgid(), len(socket.if_nameindex()), os.listdir('/tmp') or 'empty')"
    )
    runs = [run_code(probe, "python", [{"input": "", "output": "-"}]) for _ in range(2)]
    printed = [run.tests[0].stdout.split() for run in runs]
    assert [words[1:] for words in printed] == [["65534", "1", "empty"]] * 2, printed
    uids = {int(words[0]) for words in printed}
    assert len(uids) == 2 and all(uid in sandbox.BOX_UIDS for uid in uids)  # no account's
    assert os.geteuid() == 0


def test_a_namespace_without_the_box_uids_gives_the_box_to_nobody(tmp_path, monkeypatch):
    """A container that maps only 65536 uids refuses the box uids (EINVAL): nobody, as before."""
    chown = os.chown
    owners = []

    def mapped_below_65536(path, uid, gid):
        if uid >= 65536:
            raise OSError(errno.EINVAL, "Invalid argument")
        owners.append(uid)
        chown(path, os.getuid(), os.getgid())  # record only: tmp_path stays ours

    monkeypatch.setattr(sandbox.os, "chown", mapped_below_65536)
    sandbox._give_own_uid(tmp_path)
    assert owners == [sandbox.NOBODY_UID]


def test_a_project_under_tmp_is_hidden_with_tmp(tmp_path, monkeypatch):
    """CI clones into /tmp/...: mounting over /tmp hides it, and it must not be mounted again."""
    from magistral_kedro.rewards.sandbox import _hidden_paths

    monkeypatch.chdir(tmp_path)
    hidden = _hidden_paths(Path("/var/tmp/magistral-sandbox/run-x"))
    if str(tmp_path).startswith("/tmp/"):
        assert "/tmp" in hidden and str(tmp_path) not in hidden
    assert all(not Path(a).is_relative_to(b) for a in hidden for b in hidden if a != b)
    result = run_code("print(int(input()) * 2)", "python", [{"input": "3\n", "output": "6\n"}])
    assert result.passed, result


@pytest.fixture()
def crowd_of_nobody():
    """40 processes of ``nobody`` elsewhere on the machine, as when another sandbox's fork bomb
    or many concurrent runs are under way (other test sessions, other scoring workers)."""
    sandbox.isolation_mode()  # probed before the crowd, like a worker that has been running
    crowd = [
        subprocess.Popen(["sleep", "300"], user=NOBODY, group=NOBODY, extra_groups=[])
        for _ in range(40)
    ]
    yield
    for process in crowd:
        process.kill()
    for process in crowd:
        process.wait()


@pytest.mark.skipif(isolation_mode() != "root", reason="as root only: the uid is then ours to pick")
def test_processes_of_nobody_elsewhere_leave_a_program_its_process_quota(crowd_of_nobody):
    """RLIMIT_NPROC counts a uid's processes on the whole machine: when every box ran as nobody,
    others' processes used up a program's quota, so g++ could not start cc1plus, a Python program
    could not start at all, and the probe fell back to running programs as root in a user
    namespace."""
    cpp = "#include <iostream>\nint main() { long a; std::cin >> a; std::cout << a + 1; }"
    sums = [{"input": "1\n", "output": "2\n"}]
    assert run_code(cpp, "cpp", sums).passed
    assert run_code("print(int(input()) + 1)", "python", sums).passed
    sandbox.isolation_mode.cache_clear()
    try:
        assert isolation_mode() == "root"
    finally:
        sandbox.isolation_mode.cache_clear()


def test_a_program_on_a_busy_cpu_is_judged_by_its_cpu_time(monkeypatch):
    """A time limit is on the CPU time a program uses, not on how busy the host is: a program
    that needs 0.7 s of CPU under a 1 s limit, sharing its core with a spinning process (so
    about 1.4 s of wall-clock time), passes. A wall-clock limit would fail it, making the
    reward depend on the machine's load."""
    monkeypatch.setattr(sandbox, "WALL_FACTOR", 10.0)  # room for a host busier than the spinner
    program = "import time\nwhile time.process_time() < 0.7:\n    pass\nprint(input())\n"
    tests = [{"input": "7\n", "output": "7\n"}]
    core = {min(os.sched_getaffinity(0))}
    before = os.sched_getaffinity(0)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(spinner.pid, core)
        os.sched_setaffinity(0, core)  # the program inherits it: the two share one core
        result = run_code(program, "python", tests, time_limit_s=1.0)
    finally:
        os.sched_setaffinity(0, before)
        spinner.kill()
        spinner.wait()
    assert result.passed, result
    assert result.tests[0].seconds > 1.0  # it did wait: on its own it needs about 0.7 s


@pytest.mark.skipif(
    isolation_mode() is None,
    reason="without namespaces a program's orphans go to the host's init, uncounted (documented)",
)
def test_cpu_spent_by_a_child_the_program_leaves_running_is_counted(monkeypatch):
    """Work done in a child the program leaves running counts against its time limit: a child
    spinning 0.8 s and the program 0.5 s, each under the 1 s that ``RLIMIT_CPU`` allows a
    process, make the run a timeout."""
    monkeypatch.setattr(sandbox, "WALL_FACTOR", 10.0)  # the verdict is by CPU, on any load
    program = (
        "import os, time\n"
        "done, told = os.pipe()\n"
        "if os.fork() == 0:\n"
        "    while time.process_time() < 0.8:\n"
        "        pass\n"
        "    os.write(told, b'x')\n"
        "    os.close(1), os.close(2)\n"
        "    time.sleep(60)  # alive, never reaped, when the program exits\n"
        "os.read(done, 1)\n"
        "while time.process_time() < 0.5:\n"
        "    pass\n"
        "print(input())\n"
    )
    result = run_code(program, "python", [{"input": "7\n", "output": "7\n"}], time_limit_s=1.0)
    assert result.statuses == ["timeout"], result
