"""Hostile programs for the code sandbox, shared by the tests that run them as root and as an
unprivileged user: (language, code, the statuses a contained run may end with)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def hostile_programs(project: Path) -> dict[str, tuple[str, str, set[str]]]:
    """Programs that loop, eat memory, fork, flood stdout, reach out, or touch ``project``."""
    return {
        "infinite_loop": ("python", "while True:\n    pass", {"timeout"}),
        "10GB_allocation": ("python", "x = bytearray(10 * 1024**3)", {"memory"}),
        "10GB_allocation_cpp": (
            "cpp",
            "#include <vector>\nint main() { std::vector<char> v(10ull << 30, 1); return v[7]; }",
            {"memory", "runtime_error"},
        ),
        "fork_bomb": (
            "python",
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
            "        pass",
            {"timeout", "runtime_error"},
        ),
        "print_1GB": (
            "python",
            "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)",
            {"wrong_answer"},
        ),
        "socket": (
            "python",
            "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)\nprint(1)",
            {"runtime_error"},
        ),
        "read_project": (
            "python",
            f"print(open({str(project / 'pyproject.toml')!r}).read())",
            {"runtime_error"},
        ),
        "write_outside": (
            "python",
            f"open({str(project / 'PWNED')!r}, 'w').write('x')",
            {"runtime_error"},
        ),
    }


def escape_probe(marker: str, targets: list[str], project_file: str, home: str) -> str:
    """A program that tries to write ``marker`` into each of ``targets`` and looks around; it
    prints a JSON report (its run ends as a wrong answer, with the report as stdout)."""
    return f"""
import json, os, socket
report = {{"writes": {{}}}}
for directory in {json.dumps(targets)}:
    try:
        with open(os.path.join(directory, {marker!r}), "w") as out:
            out.write("escaped")
        report["writes"][directory] = "wrote"
    except OSError as error:
        report["writes"][directory] = error.strerror
with open("in-box", "w") as out:
    report["box_write"] = out.write("ok")
report["tmp"] = os.listdir("/tmp")
report["project_visible"] = os.path.exists({project_file!r})
report["home"] = os.listdir({home!r}) if os.path.isdir({home!r}) else []
report["pid"] = os.getpid()
report["pids"] = sum(name.isdigit() for name in os.listdir("/proc"))
report["interfaces"] = [name for _, name in socket.if_nameindex()]
try:
    socket.create_connection(("1.1.1.1", 80), timeout=1)
    report["network"] = "connected"
except OSError as error:
    report["network"] = str(error)
status = open("/proc/self/status").read()
report["capabilities"] = status.split("CapEff:")[1].split()[0]
print(json.dumps(report))
"""


def check_escape_report(stdout: str, targets: list[str]) -> None:
    """Assert that the escape probe wrote nowhere outside its box and saw nothing it should not."""
    report = json.loads(stdout)
    assert all(result != "wrote" for result in report["writes"].values()), report["writes"]
    assert set(report["writes"]) == set(targets)
    assert report["box_write"] == 2
    assert report["tmp"] == [] and report["home"] == [] and not report["project_visible"]
    # its own PID namespace, where only the sandbox's init (pid 1, its parent) runs besides it
    assert report["pid"] == 2 and report["pids"] == 2
    assert report["interfaces"] == ["lo"] and report["network"] != "connected"
    assert int(report["capabilities"], 16) == 0


def processes_in(directory: str) -> list[int]:
    """Processes working under ``directory`` (the boxes of one sandbox directory): give a test a
    directory of its own (``MAGISTRAL_SANDBOX_DIR``), the default one holds the boxes of every run
    of the same user on the machine."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "cwd").startswith(directory):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return found
