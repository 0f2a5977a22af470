"""Worker pool: CPU-time limits, crashes and memory bombs end as outcomes, never a hung caller."""

import os
import signal
import threading
import time

import psutil

from magistral_kedro.rewards import pool as pool_module
from magistral_kedro.rewards.math import math_equal
from magistral_kedro.rewards.pool import Outcome, WorkerPool, in_worker


def _allocate(gigabytes: int) -> int:
    return len(bytearray(gigabytes * 2**30))


def test_order_deadlines_crashes_and_memory():
    pool = WorkerPool(n_workers=2, memory_mb=512, wall_factor=3)
    try:
        started = time.monotonic()
        finished = []
        outcomes = pool.map(
            _dispatch,
            [("sleep", 30), ("value", 7), ("exit", 3), ("memory", 4), ("value", 8)],
            timeout_s=2.0,
            on_done=lambda: finished.append(time.monotonic()),
        )
        assert time.monotonic() - started < 15
        assert len(finished) == 5  # a progress bar's update: one per task, failed ones included
        assert [o.ok for o in outcomes] == [False, True, False, False, True]
        assert "timeout" in outcomes[0].error
        assert outcomes[1].value == 7 and outcomes[4].value == 8
        assert "worker died" in outcomes[2].error
        assert "memory" in outcomes[3].error
        # The pool is whole again: replaced workers serve the next batch.
        assert [o.value for o in pool.map(_dispatch, [("value", 1), ("value", 2)], 10)] == [1, 2]
    finally:
        pool.close()


def _dispatch(kind: str, arg: int) -> int:
    if kind == "sleep":
        time.sleep(arg)
    if kind == "exit":
        os._exit(arg)
    if kind == "memory":
        return _allocate(arg)
    while kind == "spin":
        arg += 1
    return arg


def test_a_runaway_is_stopped_at_its_cpu_limit_and_a_waiting_task_by_the_wall_clock():
    # a wide wall-clock margin for the runaway, so that it meets its CPU limit on a busy host
    spinning = _run_warm(WorkerPool(n_workers=1, wall_factor=20), ("spin", 0), 0.5)
    assert not spinning.ok and "CPU" in spinning.error
    sleeping = _run_warm(WorkerPool(n_workers=1, wall_factor=4), ("sleep", 30), 0.5)
    assert not sleeping.ok and "wall clock" in sleeping.error
    assert 2.0 <= sleeping.seconds < 10


def _run_warm(pool: WorkerPool, task: tuple[str, int], timeout_s: float) -> Outcome:
    """``task`` on a worker whose imports are done, then the pool closed."""
    try:
        assert pool.run(_dispatch, ("value", 0), timeout_s=60).ok
        return pool.run(_dispatch, task, timeout_s)
    finally:
        pool.close()


def _judge_in_worker() -> tuple[bool, bool, int]:
    return in_worker(), math_equal("0.5", "\\frac12"), len(pool_module._SHARED)


def test_a_worker_knows_it_is_one_and_judges_in_place():
    """Work inside a worker is already under its limits: math_equal there must not start a pool
    of its own (a cold worker inside the worker, whose imports alone can outlast a short
    comparison deadline on a loaded machine)."""
    pool = WorkerPool(n_workers=1)
    try:
        outcome = pool.run(_judge_in_worker, (), timeout_s=60)
    finally:
        pool.close()
    assert outcome.ok, outcome.error
    assert outcome.value == (True, True, 0)
    assert not in_worker()


def _stop_self(value: int) -> int:
    os.kill(os.getpid(), signal.SIGSTOP)  # resumed by the test, as a starved process would be
    return value


def test_a_worker_starved_of_the_cpu_is_not_timed_out():
    """A limit is on the work a task does, not on how busy the host is: a worker that gets no
    CPU for three times its limit (stopped, as a process on a saturated host waits) still
    answers. Grading that timed out under load would make a reward depend on the machine."""
    pool = WorkerPool(n_workers=1, wall_factor=10)
    try:
        assert pool.run(_dispatch, ("value", 0), timeout_s=60).ok  # started, imports done
        worker = psutil.Process(pool._workers[0].process.pid)
        resume = threading.Thread(target=_resume_once_stopped, args=(worker, 1.5))
        resume.start()
        outcome = pool.run(_stop_self, (7,), timeout_s=0.5)
        resume.join()
    finally:
        pool.close()
    assert outcome.ok, outcome.error
    assert outcome.value == 7


def _resume_once_stopped(worker: psutil.Process, seconds: float) -> None:
    deadline = time.monotonic() + 30
    while worker.status() != psutil.STATUS_STOPPED and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(seconds)
    worker.send_signal(signal.SIGCONT)
