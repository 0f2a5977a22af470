"""Worker processes that run untrusted work under a hard wall-clock limit.

Each worker is a fresh interpreter (no state inherited from a multi-threaded parent, and no
dependence on how the parent was started) running :func:`_worker_main` of this module as imported
(not as ``__main__``, a second copy whose flag :func:`in_worker` would not see) with an
address-space limit, talking length-prefixed pickles over its stdin/stdout. A task that outlives
its deadline gets its worker killed (with every process the worker started, see ``rewards.sandbox``)
and replaced; a task that crashes its worker is reported, and the worker replaced. The caller
always gets one :class:`Outcome` per task, in order.
"""

from __future__ import annotations

import atexit
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
from multiprocessing.connection import wait
from typing import IO, Any

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

    def send(self, obj: Any) -> None:
        _write(self.requests, obj)

    def recv(self) -> Any:
        return _read(self.replies)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=5)
        self.requests.close()
        self.replies.close()


class WorkerPool:
    """``n_workers`` sandboxed processes; :meth:`map` runs tasks on them with per-task deadlines."""

    def __init__(self, n_workers: int = 2, memory_mb: int = WORKER_MEMORY_MB) -> None:
        if n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        self.memory_mb = memory_mb
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
        """Run ``fn(*args)`` for every ``args`` in ``tasks``; each gets ``timeout_s`` seconds.

        ``fn`` must be importable by name (a module-level function). Order is preserved.
        ``on_done`` is called once per finished task (done, failed or timed out), e.g. a
        progress bar's ``update``.
        """
        timeouts = [timeout_s] * len(tasks) if isinstance(timeout_s, int | float) else timeout_s
        outcomes: list[Outcome | None] = [None] * len(tasks)
        pending = list(range(len(tasks)))[::-1]
        busy: dict[int, tuple[int, float, float]] = {}  # worker -> (task, started, deadline)
        while pending or busy:
            for w in range(len(self._workers)):
                if w not in busy and pending:
                    task = pending.pop()
                    started = time.monotonic()
                    try:
                        self._workers[w].send((fn, tasks[task]))
                    except OSError:  # a broken pipe: the worker is gone
                        self._replace(w)
                        self._workers[w].send((fn, tasks[task]))
                    busy[w] = (task, started, started + float(timeouts[task]))
            now = time.monotonic()
            next_deadline = min(deadline for _, _, deadline in busy.values())
            ready = wait(
                [self._workers[w].replies for w in busy],  # type: ignore[misc]
                timeout=max(0.0, next_deadline - now),
            )
            now = time.monotonic()
            for w in list(busy):
                task, started, deadline = busy[w]
                if self._workers[w].replies in ready:
                    outcomes[task] = self._receive(w, now - started)
                elif now >= deadline:
                    outcomes[task] = Outcome(
                        False, error=f"timeout after {timeouts[task]} s", seconds=now - started
                    )
                    self._replace(w)
                else:
                    continue
                del busy[w]
                if on_done is not None:
                    on_done()
        return [o for o in outcomes if o is not None]

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
