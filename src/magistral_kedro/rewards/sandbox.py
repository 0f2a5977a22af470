"""The code sandbox: one untrusted program at a time, in its box, inside limits.

Every program (and the C++ compiler working on untrusted source) runs

* in a fresh directory (its box), in its own process group, under ``RLIMIT_AS`` (memory),
  ``RLIMIT_CPU`` (the time limit a process, rounded up to whole seconds), ``RLIMIT_FSIZE`` (files
  it writes), ``RLIMIT_NOFILE`` and ``RLIMIT_NPROC`` (no fork bomb), with a wall-clock kill at
  :data:`WALL_FACTOR` times the time limit (a program that waits instead of computing); the
  verdict compares the CPU time of all its processes with the limit, so it does not depend on
  how busy the host is (``sandbox_init`` reaps every process of the program, so that their CPU
  time is counted; without namespaces, only the processes the program reaped are);
* in new network, PID and mount namespaces (util-linux ``unshare``, then ``sandbox_init``): no
  network interface, every process dies with the namespace, empty read-only file systems over
  ``/tmp``, ``/dev/shm``, ``/run``, ``$HOME``, the project and the other boxes, and every other
  mount read-only, so the program can neither read the project nor write outside its box.
  As root the program then runs as a uid of its own box, one no account has (group ``nogroup``);
  as an ordinary user the same isolation comes from an unprivileged user namespace
  (``unshare --user``), the program keeping no capability in it.
  Which of the two works is probed once per process; where neither does (no ``unshare``, or a
  kernel that forbids user namespaces) a warning says so, once, and programs run under the
  resource limits alone;
* with its output read up to a cap, never into unbounded memory.

:func:`open_box` makes a box and :func:`run_in_box` runs one program in it; ``rewards.code``
judges programs with them. Standard library only, like ``sandbox_init``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import math
import os
import resource
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Literal

from magistral_kedro.rewards.limits import WALL_FACTOR

logger = logging.getLogger(__name__)

NOBODY_UID = SANDBOX_GID = 65534  # nobody / nogroup
#: As root, the programs of each box run as a uid of their own, drawn from a range no account
#: uses (the top of systemd's range for containers). RLIMIT_NPROC counts a uid's processes on the
#: whole machine: with one uid for every box (``nobody``), other programs' processes (a fork bomb,
#: many concurrent runs) used up a program's quota, and g++ or the program itself could not start.
BOX_UIDS = range(0x60000000, 0x70000000)
_FILE_SIZE_MB = 16
#: How long a program whose output has closed gets to end by itself before it is killed.
_REAP_GRACE_S = 1.0
STDERR_CAP = 4096
_INIT = Path(__file__).with_name("sandbox_init.py")
_PATH = "/usr/local/bin:/usr/bin:/bin"  # programs' PATH: system tools only
IsolationMode = Literal["root", "user"]


@cache
def isolation_mode() -> IsolationMode | None:
    """How this process isolates programs: ``"root"`` (namespaces, program as its box's own uid),
    ``"user"`` (an unprivileged user namespace), or None (resource limits only; a warning says
    why, once, from the process that scores rather than from each worker). Probed once per
    process by running the real set-up on an empty command."""
    if shutil.which("unshare") is None:
        reasons = ["util-linux `unshare` is not installed"]
    else:
        modes: list[IsolationMode] = ["root", "user"] if os.geteuid() == 0 else ["user"]
        reasons = []
        for mode in modes:
            reason = _probe(mode)
            if not reason:
                return mode
            reasons.append(f"{mode}: {reason}")
    from magistral_kedro.rewards.pool import in_worker

    # A worker's log line would repeat per worker: the scoring process says it (score_batch).
    logger.log(
        logging.DEBUG if in_worker() else logging.WARNING,
        "code sandbox: NO ISOLATION: programs run with resource limits only, and can reach the "
        "network, read your files and write wherever your user can (%s). Unprivileged user "
        "namespaces fix this: check `sysctl kernel.unprivileged_userns_clone`, "
        "`user.max_user_namespaces` and `kernel.apparmor_restrict_unprivileged_userns`",
        "; ".join(reasons),
    )
    return None


def _probe(mode: IsolationMode) -> str:
    """Why the set-up fails in ``mode`` ("" when it works)."""
    box = Path(tempfile.mkdtemp(prefix="probe-", dir=_boxes_dir()))
    try:
        if mode == "root":
            _give_own_uid(box)
        done = subprocess.run(
            _namespaced(mode, box, ["true"], processes=4),
            cwd=box,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return "" if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")
    except (OSError, subprocess.SubprocessError) as error:
        return str(error)
    finally:
        shutil.rmtree(box, ignore_errors=True)


def _sandbox_base() -> Path:
    """Where boxes and the precompiled header live: outside /tmp (which programs do not see),
    per user, traversable but not listable by others."""
    uid = os.getuid()
    default = Path("/var/tmp") / ("magistral-sandbox" if uid == 0 else f"magistral-sandbox-{uid}")
    if not os.access("/var/tmp", os.W_OK):
        default = Path(tempfile.gettempdir()) / f"magistral-sandbox-{uid}"
    base = Path(os.environ.get("MAGISTRAL_SANDBOX_DIR", default))
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o711)
    return base


def _boxes_dir() -> Path:
    boxes = _sandbox_base() / "boxes"
    boxes.mkdir(exist_ok=True)
    boxes.chmod(0o711)
    return boxes


@contextlib.contextmanager
def open_box() -> Iterator[Path]:
    """A fresh box for one program (its compilation and its runs), removed afterwards with all
    it holds; as root, owned by the uid of its own that its programs run as."""
    box = Path(tempfile.mkdtemp(prefix="run-", dir=_boxes_dir()))
    try:
        if isolation_mode() == "root":
            _give_own_uid(box)
        box.chmod(0o700)
        yield box
    finally:
        shutil.rmtree(box, ignore_errors=True)


def _give_own_uid(box: Path) -> None:
    """Make ``box`` the property of a uid drawn from :data:`BOX_UIDS` (at random, by the operating
    system's generator: a seeded ``random`` would give every process the same uids). A container
    that maps only 65536 uids has none of them: there the box goes to ``nobody``, shared."""
    try:
        os.chown(box, BOX_UIDS[secrets.randbelow(len(BOX_UIDS))], SANDBOX_GID)
    except OSError as error:
        if error.errno != errno.EINVAL:  # EINVAL: a uid this user namespace does not map
            raise
        os.chown(box, NOBODY_UID, SANDBOX_GID)


def _project_dir() -> Path | None:
    """The source checkout this module runs from (not an installed package's directories)."""
    parents = Path(__file__).resolve().parents
    root = parents[3] if len(parents) > 3 else None
    return root if root is not None and (root / "pyproject.toml").is_file() else None


def _hidden_paths(box: Path) -> list[str]:
    """Directories covered by an empty tmpfs inside the namespace: the shared temporary
    directories, /run (sockets of services the user may reach), home, the project and the
    other boxes. Never a path the programs need (/, /usr, /etc, the system interpreter), and
    never a path inside another hidden one (it is hidden already, and no longer a mount point)."""
    candidates = [Path(p) for p in ("/tmp", "/dev/shm", "/run")]
    candidates += [Path.home(), Path.cwd(), box.parent]
    candidates += [path for path in (_project_dir(),) if path is not None]
    needed = [Path(p) for p in ("/usr", "/etc", "/bin", "/lib", _python_executable())]
    usable = [
        path
        for path in dict.fromkeys(c.resolve() for c in candidates)
        if path.is_dir() and not any(n.is_relative_to(path) for n in needed)
    ]
    return [
        str(path)
        for path in usable
        if not any(path != other and path.is_relative_to(other) for other in usable)
    ]


def _namespaced(mode: IsolationMode, box: Path, argv: Sequence[str], processes: int) -> list[str]:
    """``unshare`` into new namespaces, then ``sandbox_init`` (with the system interpreter, which
    stays visible) sets up and runs ``argv`` (its program resolved here, on the caller's PATH)."""
    hidden = _hidden_paths(box)
    uid = box.stat().st_uid  # as root, the program runs as its box's owner
    spec = [mode, str(box), str(uid), str(processes), str(len(hidden)), *hidden]
    user = ["--user", "--map-root-user"] if mode == "user" else []
    program = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=_PATH) or argv[0]
    interpreter = _python_executable()
    if "/" not in interpreter:
        interpreter = sys.executable
    namespaces = ["--net", "--pid", "--mount", "--fork", "--kill-child", "--mount-proc"]
    init = [interpreter, "-I", "-S", str(_INIT), *spec]
    return ["unshare", *user, *namespaces, "--", *init, program, *argv[1:]]


def _limits(memory_mb: int, cpu_s: float, processes: int | None) -> Callable[[], None]:
    """rlimits for the child before exec; ``processes`` None when ``sandbox_init`` sets
    ``RLIMIT_NPROC`` inside the namespace (here it would count every process of the user)."""

    def apply() -> None:
        # Die with the parent: a killed verifier worker takes its programs along.
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        memory = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        cpu = math.ceil(cpu_s)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        size = _FILE_SIZE_MB * 2**20
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        if processes is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


@dataclass(frozen=True)
class Run:
    """What became of one run: exit status, output up to its caps, wall-clock seconds, CPU
    seconds (of every process of it that was reaped), and whether the wall-clock backstop or
    the stdout cap stopped it."""

    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float
    cpu_seconds: float
    timed_out: bool
    output_capped: bool


def run_in_box(
    box: Path,
    argv: Sequence[str],
    stdin: str,
    cpu_s: float,
    memory_mb: int,
    output_cap: int,
    processes: int = 32,
) -> Run:
    """Run ``argv`` sandboxed in ``box``, feeding ``stdin``, under ``cpu_s`` CPU seconds (rounded
    up) a process; kill everything at ``WALL_FACTOR * cpu_s`` of wall-clock time."""
    mode = isolation_mode()
    stdin_path = box / ".stdin"
    stdin_path.write_text(stdin)
    started = time.monotonic()
    with stdin_path.open("rb") as stdin_file:
        process = subprocess.Popen(
            list(argv) if mode is None else _namespaced(mode, box, argv, processes),
            cwd=box,
            stdin=stdin_file,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": _PATH, "LANG": "C.UTF-8", "HOME": str(box)},
            start_new_session=True,
            # rlimits must be set in the child before exec; nothing else runs there.
            preexec_fn=_limits(memory_mb, cpu_s, processes if mode is None else None),  # noqa: PLW1509
        )
    assert process.stdout is not None and process.stderr is not None
    stdout, stderr, timed_out, capped = _read_capped(
        process.stdout, process.stderr, started + WALL_FACTOR * cpu_s, output_cap
    )
    if not (timed_out or capped):  # let it end by itself: sandbox_init reaps what is left
        _wait_for_exit(process.pid, _REAP_GRACE_S)
    _kill_tree(process.pid)
    try:
        # wait4, not Popen.wait: its rusage holds the CPU time of every process reaped below it
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        cpu_seconds = usage.ru_utime + usage.ru_stime
    except ChildProcessError:  # reaped already (SIGCHLD ignored): count its wall-clock time
        process.wait()
        cpu_seconds = time.monotonic() - started
    finally:
        process.stdout.close()
        process.stderr.close()
    return Run(
        returncode=process.returncode,
        stdout=stdout,
        stderr=stderr,
        seconds=time.monotonic() - started,
        cpu_seconds=cpu_seconds,
        timed_out=timed_out,
        output_capped=capped,
    )


def _read_capped(
    stdout: IO[bytes], stderr: IO[bytes], deadline: float, output_cap: int
) -> tuple[bytes, bytes, bool, bool]:
    """A program's stdout and stderr, each read up to its cap (``output_cap``, ``STDERR_CAP``)
    until both close; then whether ``deadline`` (monotonic) passed and whether stdout went over
    its cap, either of which stops the reading."""
    chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    sizes = {"stdout": 0, "stderr": 0}
    caps = {"stdout": output_cap, "stderr": STDERR_CAP}
    selector = selectors.DefaultSelector()
    selector.register(stdout, selectors.EVENT_READ, "stdout")
    selector.register(stderr, selectors.EVENT_READ, "stderr")
    timed_out = capped = False
    while selector.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for key, _ in selector.select(timeout=remaining):
            data = os.read(key.fd, 65536)
            if not data:
                selector.unregister(key.fileobj)
                continue
            name = key.data
            if sizes[name] < caps[name]:
                chunks[name].append(data[: caps[name] - sizes[name]])
            sizes[name] += len(data)
            if name == "stdout" and sizes[name] > caps[name]:
                capped = True
        if capped:
            break
    selector.close()
    return b"".join(chunks["stdout"]), b"".join(chunks["stderr"]), timed_out, capped


def _wait_for_exit(pid: int, seconds: float) -> None:
    """Wait up to ``seconds`` for the child ``pid`` to exit, leaving it to be reaped (by wait4,
    whose rusage then holds the CPU time of everything it reaped)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return
        time.sleep(0.005)


def _kill_tree(pid: int) -> None:
    """Kill the children of ``pid``, then its group. Under ``unshare`` the child is the
    namespace's init (``sandbox_init``): killing it first lets ``unshare`` reap it (and the
    kernel every other process inside)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(child), signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _python_executable() -> str:
    # A system interpreter: the project's virtualenv is hidden from (and unreadable to) programs.
    found = shutil.which("python3", path=_PATH)
    return found or "python3"
