"""Isolation of the code sandbox, for root and for an ordinary user (issue 15): a program cannot
write outside its box (not even where its user could), see the project or home, reach the
network or outlive its run. CI runs as root: the second test demotes itself to check the
unprivileged path (a user namespace) there too."""

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from magistral_kedro.rewards import sandbox
from magistral_kedro.rewards.code import run_code
from magistral_kedro.rewards.sandbox import _boxes_dir, _sandbox_base, isolation_mode
from tests.support.rewards.hostile_programs import (
    check_escape_report,
    escape_probe,
    hostile_programs,
    processes_in,
)

PROJECT = Path(__file__).resolve().parents[2]
NOBODY = 65534
SHARED_DIRS = ["/tmp", "/var/tmp", "/dev/shm"]
SUM = [{"input": "2 3\n", "output": "5\n"}, {"input": "-7 10\n", "output": "3\n"}]
RIGHT = {
    "right_python": ("python", "a, b = map(int, input().split())\nprint(a + b)", SUM),
    "right_cpp": (
        "cpp",
        "#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b; }",
        SUM,
    ),
}


def _leftovers(marker: str, directories: list[str]) -> list[str]:
    return [d for d in directories if (Path(d) / marker).exists()]


@pytest.mark.skipif(isolation_mode() is None, reason="no namespaces here (a warning says why)")
def test_a_program_writes_only_in_its_box_and_sees_nothing_of_ours():
    marker = f"escape-{uuid.uuid4().hex}"
    home = str(Path.home())
    targets = [*SHARED_DIRS, home, str(PROJECT), str(_boxes_dir()), str(_sandbox_base()), ".."]
    probe = escape_probe(marker, targets, str(PROJECT / "pyproject.toml"), home)
    result = run_code(probe, "python", [{"input": "", "output": "-"}])
    assert result.statuses == ["wrong_answer"], result
    check_escape_report(result.tests[0].stdout, targets)
    assert _leftovers(marker, targets[:-1]) == []


_DRIVER = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
from magistral_kedro.rewards import code as module, sandbox
report = {"euid": os.geteuid(), "mode": sandbox.isolation_mode(), "runs": {}}
for name, (language, code, tests) in json.load(sys.stdin).items():
    if report["mode"] is None:
        break
    result = module.run_code(code, language, tests, time_limit_s=2.0, precompiled_header=False)
    report["runs"][name] = {"passed": result.passed, "statuses": result.statuses,
                            "stdout": [test.stdout for test in result.tests]}
print(json.dumps(report))
"""


def _user_namespaces_work() -> bool:
    """Whether an unprivileged user can create the namespaces at all (independently of us)."""
    command = ["unshare", "--user", "--map-root-user", "--net", "--pid", "--mount", "--fork"]
    command += ["--mount-proc", "true"]
    try:
        done = subprocess.run(command, capture_output=True, timeout=30, check=False,
                              user=NOBODY, group=NOBODY, extra_groups=[], cwd="/")  # fmt: skip
    except OSError:
        return False
    return done.returncode == 0


def _unprivileged_checkout(root: Path) -> tuple[Path, Path]:
    """A copy of the code verifier and its sandbox (standard library only) that an unprivileged
    user can import, laid out as a checkout so that it hides its own project; and that user's
    home."""
    rewards = root / "checkout" / "src" / "magistral_kedro" / "rewards"
    rewards.mkdir(parents=True)
    for name in ("code.py", "sandbox.py", "sandbox_init.py", "pool.py", "limits.py"):
        shutil.copy(Path(sandbox.__file__).with_name(name), rewards / name)
    for package in (rewards, rewards.parent):
        (package / "__init__.py").touch()
    (root / "checkout" / "pyproject.toml").write_text("[project]\nname = 'copy'\n")
    (root / "checkout" / "driver.py").write_text(_DRIVER)
    home = root / "home"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    for path in (root, *root.rglob("*")):
        path.chmod(path.stat().st_mode | 0o555 if path.is_dir() else 0o644)
    return root / "checkout", home


@pytest.mark.skipif(os.geteuid() != 0, reason="run unprivileged already: the test above covers it")
def test_an_unprivileged_user_gets_the_same_isolation():
    python = sandbox._python_executable()
    if "/" not in python:
        pytest.skip("no system python3 in /usr/local/bin, /usr/bin or /bin (programs need one)")
    root = Path(tempfile.mkdtemp(prefix="userns-test-", dir="/var/tmp"))
    try:
        checkout, home = _unprivileged_checkout(root)
        marker = f"escape-{uuid.uuid4().hex}"
        boxes = f"/var/tmp/magistral-sandbox-{NOBODY}"
        targets = [*SHARED_DIRS, str(home), str(checkout), boxes, f"{boxes}/boxes", ".."]
        probe = escape_probe(marker, targets, str(checkout / "pyproject.toml"), str(home))
        jobs = {
            name: (language, code, [{"input": "", "output": "-"}])
            for name, (language, code, _) in hostile_programs(checkout).items()
        }
        jobs["escape"] = ("python", probe, [{"input": "", "output": "-"}])
        jobs.update(RIGHT)  # and right programs still pass, compiled C++ included
        done = subprocess.run(
            [python, str(checkout / "driver.py"), str(checkout / "src")],
            input=json.dumps(jobs), capture_output=True, text=True, timeout=300, check=False,
            cwd=checkout, user=NOBODY, group=NOBODY, extra_groups=[],
            env={"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        print(json.dumps(report, indent=1)[:4000])  # shown when an assertion below fails
        assert report["euid"] == NOBODY
        if report["mode"] is None and not _user_namespaces_work():
            pytest.skip(f"this kernel forbids unprivileged user namespaces: {done.stderr[-500:]}")
        assert report["mode"] == "user"
        for name, (_, _, statuses) in hostile_programs(checkout).items():
            run = report["runs"][name]
            assert not run["passed"] and set(run["statuses"]) <= statuses, (name, run)
        check_escape_report(report["runs"]["escape"]["stdout"][0], targets)
        assert all(report["runs"][name]["passed"] for name in RIGHT), report["runs"]
        assert _leftovers(marker, targets[:-1]) == [] and not (checkout / "PWNED").exists()
        deadline = time.monotonic() + 5  # the fork bomb is gone with its namespace
        while processes_in(boxes) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_in(boxes) == []
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def forbidden_namespaces(monkeypatch):
    """A machine whose kernel forbids the namespaces: every probe fails."""
    monkeypatch.setattr(sandbox, "_probe", lambda mode: f"{mode}: Operation not permitted")
    sandbox.isolation_mode.cache_clear()
    yield
    sandbox.isolation_mode.cache_clear()


def test_forbidden_namespaces_are_said_once_and_limits_still_apply(forbidden_namespaces, caplog):
    assert isolation_mode() is None and isolation_mode() is None
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert (
        "NO ISOLATION" in warnings[0].message and "Operation not permitted" in warnings[0].message
    )
    result = run_code("print(int(input()) + 1)", "python", [{"input": "1\n", "output": "2\n"}])
    assert result.passed, result
    looping = run_code(
        "while True:\n    pass", "python", [{"input": "", "output": ""}], time_limit_s=1
    )
    assert looping.statuses == ["timeout"]


def test_workers_leave_the_warning_to_the_process_that_scores(forbidden_namespaces, caplog):
    """Every worker probes for itself; only the scoring process warns (score_batch probes there
    first), so a run's log says it once, not once per worker."""
    from magistral_kedro.rewards import pool

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pool, "_IN_WORKER", True)
        assert isolation_mode() is None
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_mount_points_with_escaped_characters_are_read_back_as_named():
    """/proc/self/mountinfo writes space, tab, newline and backslash as octal escapes; the init
    must remount the very path (a wrong name fails with ENOENT and is skipped: left writable)."""
    from magistral_kedro.rewards.sandbox_init import _unescape

    assert _unescape("/plain/path") == "/plain/path"
    assert _unescape("/mnt/my\\040disk") == "/mnt/my disk"
    assert _unescape("/a\\011b\\012c\\134d") == "/a\tb\nc\\d"
    assert _unescape("\\040lead\\040") == " lead "
    assert _unescape("/not\\12an\\escape\\") == "/not\\12an\\escape\\"  # kept as written


def test_the_init_refuses_a_malformed_command_before_any_set_up(monkeypatch):
    """Missing or miscounted arguments end in status 125 before anything is mounted or run
    (set-up and exec are stubbed: nothing here touches this machine's mounts)."""
    from magistral_kedro.rewards import sandbox_init

    calls = []
    monkeypatch.setattr(sandbox_init, "_set_up", lambda *args: calls.append(("set_up", args)))
    monkeypatch.setattr(sandbox_init, "_run_and_reap", lambda *args: calls.append(("run", args)))
    head = ["init", "root", "/box", "1000", "4"]
    for argv in (
        ["init"],
        head,
        [*head, "0"],  # no program
        [*head, "x", "/bin/true"],  # no count
        [*head, "-1", "/tmp", "/bin/true"],  # a negative count would hide nothing
        [*head, "2", "/tmp", "/bin/true"],  # the program counted as a path to hide
    ):
        with pytest.raises(SystemExit) as stopped:
            sandbox_init.main(argv)
        assert stopped.value.code == sandbox_init.SETUP_FAILED, argv
    assert calls == []
    with pytest.raises(SystemExit):  # well formed: set up, then run
        sandbox_init.main([*head, "1", "/tmp", "/bin/true", "-v"])
    assert calls == [("set_up", ("root", "/box", 1000, 4, ["/tmp"])),
                     ("run", (["/bin/true", "-v"],))]  # fmt: skip
