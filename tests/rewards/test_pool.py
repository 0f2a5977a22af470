"""Worker pool: hard deadlines, crashes and memory bombs end as outcomes, never as a hung caller."""

import os
import time

from magistral_kedro.rewards.pool import WorkerPool


def _allocate(gigabytes: int) -> int:
    return len(bytearray(gigabytes * 2**30))


def test_order_deadlines_crashes_and_memory():
    pool = WorkerPool(n_workers=2, memory_mb=512)
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
    return arg
