"""Multi-task runs: 2 processes with DistributedDataParallel (gloo on CPU), set up from submitit's environment,
give the loss of 1 process with the same global batch; only rank 0 writes the run folder.

Through launch.py with the local executor (submitit LocalExecutor, tasks_per_node=2) and, when the local cluster is
up, through SLURM (srun starts the 2 tasks).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from sweeps import expand, load_sweep
from sweeps.journal import latest
from tests.slurm_utils import launch, require_slurm, single_run_sweep, wait_sweep

STEPS = 40
BUDGET = str(256 * STEPS)  # global batch 256 tokens = 8 sequences, micro-batches of 4: one per rank with 2 ranks


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The run trained by one process (in this one), one thread."""
    from simplicial.train import train_run

    folder = tmp_path_factory.mktemp("ddp_ref")
    run = expand(load_sweep(single_run_sweep(folder, executor="local", budgets=BUDGET)))[0]
    run = dataclasses.replace(run, training={**run.training, "threads": 1})
    result = train_run(run)
    assert result["status"] == "done" and result["world_size"] == 1
    return run, result, _metrics(run.run_dir)


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def _check_two_task_run(path: Path, out, reference, launcher_files: tuple[str, ...] = ()) -> None:
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    ref_run, ref_result, ref_rows = reference
    run = expand(load_sweep(path))[0]
    assert run.run_id == ref_run.run_id  # the same run (resources are not part of its identity)
    result = json.loads((run.run_dir / "result.json").read_text())
    assert result["status"] == "done" and result["world_size"] == 2 and result["steps"] == STEPS
    assert math.isclose(result["val_loss"], ref_result["val_loss"], rel_tol=1e-4), (result["val_loss"],
                                                                                  ref_result["val_loss"])
    assert math.isclose(result["train_loss"], ref_result["train_loss"], rel_tol=1e-4)
    # rank 0 alone logs, and what it logs is the global-batch mean (both ranks appending would duplicate rows)
    rows = _metrics(run.run_dir)
    assert [r["step"] for r in rows] == [r["step"] for r in ref_rows]
    for mine, theirs in zip(rows, ref_rows):
        assert math.isclose(mine["train_loss"], theirs["train_loss"], rel_tol=1e-4), (mine, theirs)
    files = sorted(p.name for p in run.run_dir.iterdir() if p.name != "checkpoint.prev.pt")
    assert files == sorted(["checkpoint.pt", "config.json", "metrics.jsonl", "result.json", *launcher_files]), files


@pytest.mark.timeout(240)
def test_two_tasks_local_executor_match_one_task(tmp_path, reference):
    path = single_run_sweep(tmp_path, executor="local", budgets=BUDGET, extra="resources: {tasks_per_node: 2}")
    out = launch(path, timeout=200)
    _check_two_task_run(path, out, reference, launcher_files=("threads",))  # the local launcher's thread share
    assert "[1/1] done" in out.stdout


@pytest.mark.slurm
@pytest.mark.timeout(240)
def test_two_tasks_on_slurm_match_one_task(tmp_path, reference):
    require_slurm()
    path = single_run_sweep(tmp_path, budgets=BUDGET,
                            extra="resources: {tasks_per_node: 2, cpus_per_task: 1, timeout_min: 20}")
    out = launch(path, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    wait_sweep(path, timeout=150)
    spec = load_sweep(path)
    entry = latest(spec.sweep_dir)[expand(spec)[0].run_id]
    from submitit.core.utils import JobPaths

    logs = "".join(Path(JobPaths(entry.folder, job_id=entry.job_id, task_id=k).stderr).read_text(errors="replace")
                   for k in (0, 1) if Path(JobPaths(entry.folder, job_id=entry.job_id, task_id=k).stderr).exists())
    assert (expand(spec)[0].run_dir / "result.json").exists(), logs[-3000:]
    _check_two_task_run(path, out, reference)
