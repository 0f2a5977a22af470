"""Two nodes on one machine: GRPO under ``torchrun --nnodes 2 --nproc-per-node 1`` (gloo), each
node a separate copy of the project at its own path, sharing only what a cluster shares: the
checkpoint directory (``rl.checkpoint_dir``) and the MLflow store (tracking database and
artifacts, set in the copies' ``conf/base/mlflow.yml``)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from transformers import AutoModelForCausalLM

from tests.support.e2e import kedro_run, new_project, output_of
from tests.support.node_probe import weights_sha256
from tests.support.paths import PROJECT_ROOT
from tests.support.ranks import LAUNCHER_VARIABLES, free_port

pytestmark = pytest.mark.slow

#: What the rl pipeline reads, made once on node 0 and copied to node 1 with the project.
RL_INPUTS = "rl_problems,eval_problems,sft_model,base_model"


def _share_mlflow(project: Path, shared: Path) -> None:
    """Point the copy's MLflow store (runs and artifacts) at the shared directory."""
    path = project / "conf" / "base" / "mlflow.yml"
    conf = yaml.safe_load(path.read_text())
    conf["server"]["mlflow_tracking_uri"] = f"sqlite:///{shared / 'mlflow.db'}"
    experiment = conf["tracking"]["experiment"]
    experiment["create_experiment_kwargs"] = {"artifact_location": str(shared / "mlartifacts")}
    path.write_text(yaml.safe_dump(conf))


def _files(root: Path) -> dict[str, int]:
    """Every file under ``root``, with its modification time (ns)."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def _runs(shared: Path) -> set[str]:
    db = sqlite3.connect(shared / "mlflow.db")
    return {run for (run,) in db.execute("SELECT run_uuid FROM runs")}


def _run_nodes(root: Path, *options: str) -> tuple[list[int], list[str]]:
    """GRPO on both nodes (``root/node0``, ``root/node1``) with ``kedro run`` ``options``; the
    exit codes and the ends of the logs."""
    port = free_port()
    nodes = [_start_node(rank, root, port, options) for rank in (0, 1)]
    codes = [node.wait(timeout=900) for node in nodes]
    return codes, [(root / f"node{rank}.log").read_text()[-6000:] for rank in (0, 1)]


def _start_node(
    node_rank: int, root: Path, port: int, options: tuple[str, ...]
) -> subprocess.Popen:
    """One node's torchrun (one process) in its project copy, rendezvous at node 0's
    127.0.0.1:``port``; its output in ``root/node<node_rank>.log``."""
    project, log = root / f"node{node_rank}", root / f"node{node_rank}.log"
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    python_path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env |= {"PYTHONPATH": python_path, "WEIGHTS_PROBE": str(root / "probe"), "OMP_NUM_THREADS": "1",
            "KEDRO_DISABLE_TELEMETRY": "true"}  # fmt: skip
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
        "--node-rank", str(node_rank), "--master-addr", "127.0.0.1", "--master-port", str(port),
        "-m", "tests.support.node_probe", "--env", "micro", "--pipeline", "rl", *options,
    ]  # fmt: skip
    with log.open("w") as out:
        return subprocess.Popen(command, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> dict[str, Any]:
    """The two-node GRPO run, done: the nodes' project copies, the shared and probe directories,
    the MLflow runs it opened and the files of node 1's copy it added, removed or touched."""
    root = tmp_path_factory.mktemp("cluster")
    shared, probe = root / "shared", root / "probe"
    shared.mkdir()
    probe.mkdir()
    node0 = new_project(root / "node0")
    _share_mlflow(node0, shared)
    made = kedro_run(node0, "--to-outputs", RL_INPUTS)
    assert made.returncode == 0, output_of(made)
    node1 = Path(shutil.copytree(node0, root / "node1"))  # the project and its data, on node 1
    node1_before, runs_before = _files(node1), _runs(shared)
    codes, logs = _run_nodes(root, "--params", f"rl.checkpoint_dir={shared / 'rl_state'}")
    assert codes == [0, 0], "\n".join(logs)
    return {"root": root, "node0": node0, "node1": node1, "shared": shared, "probe": probe,
            "new_runs": _runs(shared) - runs_before,
            "node1_changed": set(_files(node1).items()) ^ set(node1_before.items())}  # fmt: skip


def test_rank_zero_alone_logs_one_mlflow_run_in_the_shared_store(cluster):
    shared = cluster["shared"]
    new = cluster["new_runs"]
    assert len(new) == 1, "node 1 must not open an MLflow run"
    (run,) = new
    db = sqlite3.connect(shared / "mlflow.db")
    query = "SELECT step FROM metrics WHERE key = 'reward/total' AND run_uuid = ? ORDER BY step"
    assert [s for (s,) in db.execute(query, (run,))] == [1, 2, 3, 4]
    uploaded = shared / "mlartifacts"
    assert list(uploaded.glob(f"{run}/artifacts/checkpoints/rl/step_000004/config.json"))


def test_both_nodes_write_their_shards_into_the_shared_checkpoint_directory(cluster):
    state = cluster["shared"] / "rl_state"
    assert (state / "COMPLETE").is_file()
    for step in ("step_000002", "step_000004"):
        assert (state / step / "trainer_state.json").is_file(), step
        assert (state / step / "rng_rank1.pt").is_file(), f"node 1 wrote no state in {step}"
        assert list((state / step / "deepspeed").glob("zero_pp_rank_1_*optim_states.pt")), step
    for node in ("node0", "node1"):  # conf/base's own checkpoint directory: no step there
        assert not list((cluster[node] / "data" / "06_models").glob("rl_state/step_*")), node


def test_both_nodes_end_with_the_weights_rank_zero_exported(cluster):
    probe = cluster["probe"]
    node0, node1 = ((probe / f"rank{r}.sha256").read_text() for r in (0, 1))
    assert node0 == node1, "the nodes' trainers hold different weights"
    exported = cluster["shared"] / "rl_state" / "step_000004" / "hf"
    assert weights_sha256(AutoModelForCausalLM.from_pretrained(exported)) == node0


def test_node_one_writes_nothing_into_its_own_copy(cluster):
    node1, node0 = cluster["node1"], cluster["node0"]
    assert cluster["node1_changed"] == set()
    for node in (node0, node1):
        assert not (node / "mlflow.db").exists() and not (node / "mlruns").exists(), node
    # Node 0's rank 0 writes the datasets: one version of the trained model, in its copy.
    assert len(list((node0 / "data" / "06_models" / "rl_model").iterdir())) == 1


def test_a_checkpoint_directory_in_each_node_s_copy_stops_both_before_training(cluster):
    """conf/base's relative rl.checkpoint_dir is each node's own: both nodes stop at the start,
    saying so, instead of training and failing at the end (rank 1's shards missing)."""
    codes, logs = _run_nodes(cluster["root"])
    assert 0 not in codes
    for log in logs:
        flat = " ".join(log.split())
        assert "rl.checkpoint_dir" in flat and "is not shared" in flat, log
    state = cluster["node0"] / "data" / "06_models" / "rl_state"
    assert not list(state.glob("step_*")), "a step was trained"


def test_a_node_with_other_problems_stops_both_before_training(cluster):
    """Each node reads the latest versions in its own data/: where node 1's problem set is not
    node 0's, both nodes stop at the start naming rank 1, instead of training on two sets."""
    problems = cluster["node1"] / "data" / "05_model_input" / "rl_problems.jsonl"
    kept = problems.read_text()
    rows = kept.splitlines(keepends=True)
    trained = next(i for i, row in enumerate(rows) if json.loads(row)["kind"] == "math")
    problems.write_text("".join(rows[:trained] + rows[trained + 1 :]))  # one math problem fewer
    try:
        options = ("--params", f"rl.checkpoint_dir={cluster['shared'] / 'rl_state'}")
        codes, logs = _run_nodes(cluster["root"], *options)
    finally:
        problems.write_text(kept)
    assert 0 not in codes
    for log in logs:
        flat = " ".join(log.split())
        assert "differ from rank 0's" in flat and "rank 1 on" in flat, log
