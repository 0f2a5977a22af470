"""Worker processes that run untrusted work under a CPU-time limit and a memory limit.

Each worker is a fresh interpreter (no state inherited from a multi-threaded parent, and no
dependence on how the parent was started) running :func:`_worker_main` of this module as imported
(not as ``__main__``, a second copy whose flag :func:`in_worker` would not see) with an
address-space limit, talking length-prefixed pickles over its stdin/stdout. A task's limit is in
CPU seconds of its worker (the worker's own and its reaped children's: a sandboxed program counts
once it has ended), so a verdict does not depend on how busy the host is: a fresh worker's
imports or a saturated machine slow a task down without timing it out. A task that waits
instead of computing (sleeps, blocks) is stopped by a wall-clock backstop, ``wall_factor``
times its limit; where a worker's CPU time cannot be read, the limit is on the wall clock. A
task over either gets its worker killed (with every process the worker started, see
``rewards.sandbox``) and replaced; a task that crashes its worker is reported, and the worker
replaced. The caller always gets one :class:`Outcome` per task, in order.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import resource
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from multiprocessing.connection import wait
from typing import IO, Any

import psutil

from magistral_kedro.rewards.limits import WALL_FACTOR

logger = logging.getLogger(__name__)
_IN_WORKER = False
#: Address-space limit of a worker (SymPy on a pathological input must fail, not swap).
WORKER_MEMORY_MB = 2048
_WORKER_COMMAND = (
    "import sys; from magistral_kedro.rewards.pool import _worker_main; "
    "_worker_main(int(sys.argv[1]))"
)


def in_worker() -> bool:
    """True inside a pool worker: work there is already under a time and memory limit."""
    return _IN_WORKER


@dataclass(frozen=True)
class Outcome:
    """What became of one task: its value, or why there is none."""

    ok: bool
    value: Any = None
    error: str = ""
    seconds: float = 0.0


def _write(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError("worker pipe closed")
    (size,) = struct.unpack("<Q", header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("worker pipe closed mid-message")
    return pickle.loads(data)


def _worker_main(memory_mb: int) -> None:
    """Serve tasks from stdin until EOF (fd 1 goes to stderr: prints cannot corrupt replies)."""
    global _IN_WORKER
    _IN_WORKER = True
    limit = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    while True:
        try:
            message = _read(requests)
        except EOFError:
            return
        fn, args = message
        try:
            reply = (True, fn(*args), "")
        except MemoryError:
            reply = (False, None, "memory limit")
        except BaseException as error:
            reply = (False, None, f"{type(error).__name__}: {error}\n{traceback.format_exc()}")
        _write(replies, reply)


class _Worker:
    def __init__(self, memory_mb: int) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WORKER_COMMAND, str(memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.requests: IO[bytes] = self.process.stdin
        self.replies: IO[bytes] = self.process.stdout
        self._usage = psutil.Process(self.process.pid)  # read twice a wake-up of the pool's loop

    def send(self, obj: Any) -> None:
        _write(self.requests, obj)

    def recv(self) -> Any:
        return _read(self.replies)

    def cpu_seconds(self) -> float | None:
        """CPU time of the worker and its reaped children; None where it cannot be read (the
        worker is gone, or the system hides it)."""
        try:
            times = self._usage.cpu_times()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return None
        except psutil.Error as error:
            _say_cpu_unreadable(type(error).__name__)
            return None
        return times.user + times.system + times.children_user + times.children_system

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=5)
        self.requests.close()
        self.replies.close()


@cache  # once per kind of failure, not once per worker
def _say_cpu_unreadable(why: str) -> None:
    logger.warning("a worker's CPU time cannot be read (%s): limits are on the wall clock", why)


@dataclass(frozen=True)
class _Running:
    """A task on a worker: its CPU limit, and the wall clock and worker's CPU when it began."""

    task: int
    limit_s: float
    started: float
    cpu_at_start: float | None

    def used_s(self, cpu_now: float | None, now: float) -> float:
        """CPU seconds the task has used; wall-clock seconds where CPU time is not known."""
        if cpu_now is None or self.cpu_at_start is None:
            return now - self.started
        return cpu_now - self.cpu_at_start

    def left_s(self, cpu_now: float | None, now: float, wall_factor: float) -> float:
        """Wall seconds before either limit can be reached (CPU time runs no faster than wall
        time in a single-threaded worker)."""
        cpu_left = self.limit_s - self.used_s(cpu_now, now)
        return min(cpu_left, wall_factor * self.limit_s - (now - self.started))

    def over_limit(self, cpu_now: float | None, now: float, wall_factor: float) -> str:
        """Why the task is stopped now, or "" while it is within both limits."""
        if self.used_s(cpu_now, now) >= self.limit_s:
            return f"timeout: over {self.limit_s:g} s of CPU"
        if now - self.started >= wall_factor * self.limit_s:
            return f"timeout: no answer in {wall_factor * self.limit_s:g} s (wall clock)"
        return ""


class WorkerPool:
    """``n_workers`` sandboxed processes; :meth:`map` runs tasks on them with per-task limits."""

    def __init__(
        self,
        n_workers: int = 2,
        memory_mb: int = WORKER_MEMORY_MB,
        wall_factor: float = WALL_FACTOR,
    ) -> None:
        if n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        if wall_factor < 1:
            raise ValueError(f"wall_factor must be >= 1, got {wall_factor}")
        self.memory_mb = memory_mb
        self.wall_factor = wall_factor
        self._workers = [_Worker(memory_mb) for _ in range(n_workers)]

    @property
    def size(self) -> int:
        """Number of worker processes."""
        return len(self._workers)

    def map(
        self,
        fn: Callable[..., Any],
        tasks: Sequence[tuple[Any, ...]],
        timeout_s: float | Sequence[float],
        on_done: Callable[[], object] | None = None,
    ) -> list[Outcome]:
        """Run ``fn(*args)`` for every ``args`` in ``tasks``; each gets ``timeout_s`` CPU seconds
        (and ``wall_factor`` times that of wall-clock time).

        ``fn`` must be importable by name (a module-level function). Order is preserved.
        ``on_done`` is called once per finished task (done, failed or timed out), e.g. a
        progress bar's ``update``.
        """
        limits = [timeout_s] * len(tasks) if isinstance(timeout_s, int | float) else timeout_s
        outcomes: list[Outcome | None] = [None] * len(tasks)
        pending = list(range(len(tasks)))[::-1]
        running: dict[int, _Running] = {}  # worker -> its task
        while pending or running:
            for w in range(len(self._workers)):
                if w not in running and pending:
                    task = pending.pop()
                    running[w] = self._start(w, fn, tasks[task], task, float(limits[task]))
            now = time.monotonic()
            left = [
                r.left_s(self._workers[w].cpu_seconds(), now, self.wall_factor)
                for w, r in running.items()
            ]
            ready = wait(
                [self._workers[w].replies for w in running],  # type: ignore[misc]
                timeout=max(0.01, min(left)),
            )
            now = time.monotonic()
            for w, run in list(running.items()):
                if self._workers[w].replies in ready:
                    outcomes[run.task] = self._receive(w, now - run.started)
                elif reason := run.over_limit(
                    self._workers[w].cpu_seconds(), now, self.wall_factor
                ):
                    outcomes[run.task] = Outcome(False, error=reason, seconds=now - run.started)
                    self._replace(w)
                else:
                    continue
                del running[w]
                if on_done is not None:
                    on_done()
        return [o for o in outcomes if o is not None]

    def _start(
        self, w: int, fn: Callable[..., Any], args: tuple[Any, ...], task: int, limit_s: float
    ) -> _Running:
        """Send ``fn(*args)`` to worker ``w`` (replacing it first if it is gone)."""
        try:
            self._workers[w].send((fn, args))
        except OSError:  # a broken pipe: the worker is gone
            self._replace(w)
            self._workers[w].send((fn, args))
        return _Running(task, limit_s, time.monotonic(), self._workers[w].cpu_seconds())

    def _receive(self, w: int, seconds: float) -> Outcome:
        """Worker ``w``'s reply; a worker that died instead is replaced."""
        try:
            ok, value, error = self._workers[w].recv()
            return Outcome(ok, value, error, seconds)
        except (EOFError, OSError):
            code = self._workers[w].process.poll()
            self._replace(w)
            return Outcome(False, error=f"worker died (exit {code})", seconds=seconds)

    def run(self, fn: Callable[..., Any], args: tuple[Any, ...], timeout_s: float) -> Outcome:
        """One task; see :meth:`map`."""
        return self.map(fn, [args], timeout_s)[0]

    def _replace(self, index: int) -> None:
        self._workers[index].kill()
        self._workers[index] = _Worker(self.memory_mb)

    def close(self) -> None:
        """Stop every worker."""
        for worker in self._workers:
            worker.kill()
        self._workers = []


_SHARED: dict[int, WorkerPool] = {}


def shared_pool(n_workers: int = 1) -> WorkerPool:
    """A process-wide pool of ``n_workers`` (started once, stopped at exit)."""
    pool = _SHARED.get(n_workers)
    if pool is None:
        pool = _SHARED[n_workers] = WorkerPool(n_workers)
        atexit.register(pool.close)
    return pool
