"""Run a pipeline on every rank of a multi-process launch (DeepSpeed's launcher or torchrun).

One node with 8 GPUs::

    deepspeed --num_gpus 8 --module magistral_kedro.launch --env gpu --pipeline rl

Several nodes (a hostfile with one ``<host> slots=<gpus>`` line per node, the project and its
data at the same path on each, ``rl.checkpoint_dir`` an absolute path on a filesystem they
share; both are checked before training, see docs/real-scale.md)::

    deepspeed --hostfile hostfile --num_nodes 2 --num_gpus 8 \\
        --module magistral_kedro.launch --env gpu --pipeline rl

On CPU, two processes over gloo (what the tests run)::

    torchrun --nproc_per_node 2 -m magistral_kedro.launch --env micro --pipeline rl

Options after the module are those of ``kedro run``. Every rank joins the process group, then
opens a KedroSession on the project and runs the same pipeline: the training node runs once per
process group (its ranks train one model together, see :mod:`magistral_kedro.grpo.loop`). Rank 0
alone writes datasets (on other ranks every output stays in memory) and logs to MLflow
(kedro-mlflow's hook is disabled there, and rank 0's run id is broadcast to the trainers).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch.distributed as dist
from kedro.framework.cli.utils import find_run_command
from kedro.framework.project import configure_project

from magistral_kedro.training import distributed


def main(argv: list[str] | None = None) -> None:
    """Join the launcher's process group, then ``kedro run`` with the remaining options."""
    args = list(sys.argv[1:] if argv is None else argv)
    # DeepSpeed's launcher appends --local_rank=N; LOCAL_RANK in the environment says the same.
    args = [a for a in args if not a.startswith("--local_rank")]
    if distributed.launched():
        distributed.init_from_env()
    package_name = Path(__file__).parent.name
    configure_project(package_name)  # after init: settings read the rank (rank 0 writes)
    find_run_command(package_name)(args, standalone_mode=False)
    if dist.is_initialized():  # a failed rank raised above; the others stop at their timeout
        distributed.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
