"""launch.py against the real (local) SLURM: job arrays chunked below MaxArraySize, the journal, status / collect /
re-launch from fresh processes, scancel'd and preempted runs, a run that raises, a GPU request.

Needs `scripts/local_slurm.sh up` (make test runs it, with SLURM_MAX_ARRAY_SIZE=5); skipped otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from sweeps import expand, load_sweep
from sweeps.executors import cluster_max_array_size
from sweeps.journal import latest
from tests.conftest import REPO_ROOT, write_sweep
from tests.slurm_utils import (launch, max_array_size, require_slurm, sacct_state, single_run_sweep,
                               wait_for_job_state, wait_sweep)

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(240)]

CHUNK = 5  # arrays of at most 5 tasks: the 8-run sweep goes out as 2 arrays (5 + 3)
RES = "resources: {cpus_per_task: 1, timeout_min: 20}"


@pytest.fixture(autouse=True)
def _slurm():
    require_slurm()


def _ok(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 0, f"rc {out.returncode}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out.stdout


def _status(path: Path, rc: int) -> str:
    """`launch.py status` in a fresh process; its exit status must be `rc` (0 all finished, 3 a failed or unknown
    run, 4 runs still pending or running)."""
    out = launch("status", path, timeout=60)
    assert out.returncode == rc, f"rc {out.returncode}, expected {rc}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out.stdout


def _status_rows(path: Path) -> dict[str, dict]:
    """run id -> {status, job, scheduler} from `launch.py status` (a fresh process each time)."""
    out = launch("status", path, timeout=60)
    assert out.returncode in (0, 3, 4), f"rc {out.returncode}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    out = out.stdout
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and re.match(r"^(dot|simplicial)-", parts[0]):
            rows[parts[0]] = {"status": parts[1], "job": parts[2], "scheduler": parts[3]}
    return rows


def _wait_status(path: Path, run_id: str, wanted: set[str], timeout: float) -> tuple[dict, float]:
    t0 = time.monotonic()
    row = None
    while time.monotonic() - t0 < timeout:
        row = _status_rows(path).get(run_id)
        if row and row["status"] in wanted:
            return row, time.monotonic() - t0
        time.sleep(0.5)
    pytest.fail(f"{run_id} not in {wanted} within {timeout} s (last: {row})")


def _wait_all_finished(path: Path, timeout: float) -> None:
    try:
        wait_sweep(path, timeout)
    except TimeoutError as e:
        pytest.fail(str(e))


def _wait_step(run_dir: Path, step: int, timeout: float) -> int:
    from sweeps.state import last_step

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = last_step(run_dir) or 0
        if s >= step:
            return s
        time.sleep(0.1)
    pytest.fail(f"{run_dir.name} did not reach step {step} within {timeout} s")


def _job_log(entry) -> str:
    from submitit.core.utils import JobPaths

    p = JobPaths(entry.folder, job_id=entry.job_id, task_id=0)
    return "".join(Path(x).read_text(errors="replace") for x in (p.stdout, p.stderr) if Path(x).exists())


# ----------------------------------------------------------------------------------------------------------------
# one 2 archs x 2 sizes x 2 budgets sweep, launched once, shared by the first tests


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory):
    require_slurm()
    folder = tmp_path_factory.mktemp("grid")
    limit = max_array_size()
    extra = f"# slurm\n  {RES}\n" + (f"  max_array_size: {CHUNK}\n" if limit > CHUNK else "")
    path = write_sweep(folder, executor="slurm", budgets="2560, 5120", extra=extra)
    t0 = time.monotonic()
    out = _ok(launch(path))  # executor from the YAML
    submit_s = time.monotonic() - t0
    _wait_all_finished(path, timeout=150)
    return {"path": path, "launch_out": out, "submit_s": submit_s, "limit": limit,
            "sweep_dir": load_sweep(path).sweep_dir}


def test_sweep_goes_out_as_chunked_arrays(grid_sweep):
    out = grid_sweep["launch_out"]
    assert "8 to run (slurm)" in out and "queued; follow with" in out, out
    assert grid_sweep["submit_s"] < 30  # the launcher queues and returns, it does not wait for training
    journal = latest(grid_sweep["sweep_dir"])
    assert len(journal) == 8 and {e.executor for e in journal.values()} == {"slurm"}
    arrays: dict[str, list[int]] = {}
    for e in journal.values():
        base, _, task = e.job_id.partition("_")
        arrays.setdefault(base, []).append(int(task))
    chunk = min(CHUNK, grid_sweep["limit"])
    assert sorted(len(t) for t in arrays.values()) == sorted([chunk] * (8 // chunk) + ([8 % chunk] if 8 % chunk else []))
    assert all(max(t) < grid_sweep["limit"] for t in arrays.values())  # indices below MaxArraySize
    assert out.count("submitted array") == len(arrays) == 2
    # the launcher reads the cluster's own limit (make test starts the cluster with MaxArraySize=5)
    assert cluster_max_array_size() == grid_sweep["limit"]


def test_jobs_run_the_code_snapshot(grid_sweep):
    """Every job imported the code copied at launch (sweeps/snapshot.py), not the live checkout, and result.json
    records its commit and dirty flag."""
    from sweeps.snapshot import code_state

    sweep_dir = grid_sweep["sweep_dir"]
    assert "code snapshot: " in grid_sweep["launch_out"], grid_sweep["launch_out"]
    state = code_state(REPO_ROOT)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    for run in expand(load_sweep(grid_sweep["path"])):
        code = json.loads((run.run_dir / "result.json").read_text())["code"]
        assert Path(code["snapshot"]).parent == sweep_dir / "code", code  # where the job's modules came from
        assert code["commit"] == head and code["dirty"] == state["dirty"], (code, state)


def test_status_and_collect_after_launcher_exit(grid_sweep):
    path = grid_sweep["path"]
    t0 = time.monotonic()
    out = _status(path, 0)
    assert time.monotonic() - t0 < 30
    assert "done 8 (of 8)" in out, out
    rows = _status_rows(path)
    assert len(rows) == 8 and all(r["status"] == "done" and "_" in r["job"] for r in rows.values())
    csv = grid_sweep["sweep_dir"] / "r.csv"
    _ok(launch("collect", path, "-o", csv, timeout=60))
    table = pd.read_csv(csv)
    assert len(table) == 8 and (table["status"] == "done").all()
    assert table["loss"].notna().all() and (table["loss"] < math.log(256)).all()
    assert set(table["arch"]) == {"dot", "simplicial"} and set(table["size"]) == {"a", "b"}


def test_relaunch_submits_nothing(grid_sweep):
    path = grid_sweep["path"]
    n_lines = len((grid_sweep["sweep_dir"] / "journal.jsonl").read_text().splitlines())
    out = _ok(launch(path))
    assert "8 done or in flight, 0 to run" in out and "submitted array" not in out, out
    assert len((grid_sweep["sweep_dir"] / "journal.jsonl").read_text().splitlines()) == n_lines


# ----------------------------------------------------------------------------------------------------------------
# scancel and preemption: two long runs (seeds 0 and 1) of one sweep, running side by side


def _reference_val_loss(run, folder: Path) -> dict:
    """The same RunSpec trained uninterrupted in this process (own folder, one thread like the SLURM job)."""
    from simplicial.train import train_run

    ref = dataclasses.replace(run, sweep_dir=str(folder / "ref" / run.sweep), training={**run.training, "threads": 1})
    return train_run(ref)


@pytest.mark.timeout(300)
def test_scancel_fails_relaunch_resubmits_only_it_and_preempted_run_resumes(tmp_path):
    steps = 800
    path = single_run_sweep(tmp_path, budgets=str(256 * steps), seeds="[0, 1]", extra=RES)
    spec = load_sweep(path)
    killed, preempted = expand(spec)
    assert killed.seed == 0 and preempted.seed == 1 and killed.steps == steps
    _ok(launch(path))
    journal = latest(spec.sweep_dir)
    kill_entry, pre_entry = journal[killed.run_id], journal[preempted.run_id]

    # both run; kill one with scancel and preempt the other (submitit's USR2 + requeue) mid-training
    _wait_step(killed.run_dir, 10, timeout=90)
    _wait_step(preempted.run_dir, 10, timeout=90)
    t_kill = time.monotonic()
    subprocess.run(["scancel", kill_entry.job_id], check=True)
    import submitit

    submitit.SlurmJob(folder=pre_entry.folder, job_id=pre_entry.job_id)._interrupt()

    # the preempted run shows as preempted while it waits to restart (requeued jobs wait cred_expire, 10 s, here);
    # polled first, since the requeued job restarts (and may finish) while the killed run's status is checked
    from sweeps.state import run_states

    seen, deadline = set(), time.monotonic() + 60
    while time.monotonic() < deadline and "preempted" not in seen and "done" not in seen:
        seen.add(run_states([preempted], spec.sweep_dir)[0].status)
        time.sleep(0.2)
    assert "preempted" in seen, seen

    # the killed run is reported failed with the scheduler's reason and its log tail, well within a minute
    row, _ = _wait_status(path, killed.run_id, {"failed"}, timeout=60)
    assert time.monotonic() - t_kill < 60
    assert row["scheduler"] == "CANCELLED", row
    status = _status(path, 3)
    assert f"--- {killed.run_id} (failed) ---" in status and "CANCELLED" in status and "log tail" in status, status
    assert not (killed.run_dir / "result.json").exists()

    # re-launch: only the killed run is submitted (the preempted one is queued or running again)
    again = _ok(launch(path))
    assert "1 to run" in again and again.count("submitted array") == 1, again
    new_entry = latest(spec.sweep_dir)[killed.run_id]
    assert new_entry.job_id != kill_entry.job_id
    assert latest(spec.sweep_dir)[preempted.run_id].job_id == pre_entry.job_id

    reference = _reference_val_loss(preempted, tmp_path)  # meanwhile, in this process
    _wait_all_finished(path, timeout=150)

    # the preempted run resumed from its checkpoint, finished once, and equals the uninterrupted run bit for bit
    log = _job_log(pre_entry)
    resumed = [int(m) for m in re.findall(r"resuming from step (\d+)/", log)]
    assert len(resumed) == 1 and 0 < resumed[0] < steps, log[-3000:]
    assert "preempted at step" in log
    result = json.loads((preempted.run_dir / "result.json").read_text())
    assert result["status"] == "done" and result["steps"] == steps
    assert result["val_loss"] == reference["val_loss"] and result["train_loss"] == reference["train_loss"]
    # result.json is the job's last write; the job itself ends, and accounting records it, a moment later
    deadline = time.monotonic() + 60
    while sacct_state(pre_entry.job_id) != "COMPLETED" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sacct_state(pre_entry.job_id) == "COMPLETED"
    metric_steps = [json.loads(l)["step"] for l in (preempted.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert metric_steps == sorted(set(metric_steps)) and metric_steps[-1] == steps

    # the cancelled run, resubmitted, resumed from its last checkpoint too
    log = _job_log(new_entry)
    assert re.search(r"resuming from step [1-9]\d*/", log), log[-3000:]
    assert json.loads((killed.run_dir / "result.json").read_text())["steps"] == steps
    rows = _status_rows(path)
    assert {r["status"] for r in rows.values()} == {"done"}, rows


# ----------------------------------------------------------------------------------------------------------------
# a run that raises; a GPU request


def test_run_that_raises_shows_traceback_in_status(tmp_path):
    (tmp_path / "missing").mkdir()
    missing = single_run_sweep(tmp_path / "missing", extra=RES,
                               data=f"  source: text\n  path: {tmp_path / 'missing-corpus.txt'}")
    refused = launch(missing)  # a corpus that is not there is known at launch: nothing is submitted
    assert refused.returncode == 2 and "missing-corpus.txt" in refused.stderr and "data.path" in refused.stderr
    assert not (load_sweep(missing).sweep_dir / "journal.jsonl").exists()
    # a run that raises inside its job: CUDA asked for on the CPU-only test node
    path = single_run_sweep(tmp_path, extra=RES)
    path.write_text(path.read_text().replace("  checkpoint_every: 5\n", "  checkpoint_every: 5\n  device: cuda\n"))
    _ok(launch(path))
    run_id = expand(load_sweep(path))[0].run_id
    _wait_status(path, run_id, {"failed"}, timeout=90)
    out = _status(path, 3)
    assert "failed 1 (of 1)" in out and "Traceback (most recent call last)" in out, out
    assert "training.device is 'cuda' but no CUDA device is visible" in out, out
    table_out = _ok(launch("collect", path, timeout=60))
    assert "0 done" in table_out
    # a re-launch retries it (failed is neither done nor in flight)
    again = _ok(launch(path, "--dry-run"))
    assert "1 to submit" in again


def test_gpu_request_schedules_on_fake_gpus(tmp_path):
    path = single_run_sweep(tmp_path, extra="resources: {cpus_per_task: 1, timeout_min: 20, gpus_per_node: 1}")
    _ok(launch(path))
    spec = load_sweep(path)
    run = expand(spec)[0]
    entry = latest(spec.sweep_dir)[run.run_id]
    _wait_all_finished(path, timeout=90)
    assert json.loads((run.run_dir / "result.json").read_text())["status"] == "done"  # trains on CPU there
    # the controller allocated one of the node's fake GPUs to it (finished jobs stay visible for MinJobAge=300 s)
    shown = subprocess.run(["scontrol", "show", "job", "-d", entry.job_id], capture_output=True, text=True,
                           check=True).stdout
    assert "JOB_GRES=gpu:1" in shown, shown
    assert "--gpus-per-node=1" in Path(entry.folder, f"{entry.job_id.split('_')[0]}_submission.sh").read_text()


def test_cancel_cancels_queued_and_running_jobs(tmp_path):
    path = single_run_sweep(tmp_path, budgets=str(256 * 2000), seeds="[0, 1, 2]", extra=RES)  # 3 long runs, 2 CPUs
    _ok(launch(path))
    spec = load_sweep(path)
    runs = expand(spec)
    wait_for_job_state(latest(spec.sweep_dir)[runs[0].run_id].job_id, {"RUNNING"}, timeout=60)  # third waits
    out = _ok(launch("cancel", path, timeout=60))
    assert "cancelled 3 job(s)" in out, out
    states = wait_sweep(path, timeout=60)
    assert [s.status for s in states] == ["failed"] * 3, [(s.status, s.scheduler_state) for s in states]
    assert all(s.scheduler_state.startswith("CANCELLED") for s in states)


def test_sbatch_refusal_is_a_clear_error(tmp_path):
    path = single_run_sweep(tmp_path, extra="resources: {partition: no-such-partition, timeout_min: 20}")
    out = launch(path)
    assert out.returncode == 1
    assert "launch.py: sbatch refused an array of 1 runs" in out.stderr and "partition" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_unknown_job_is_left_alone_until_resubmit_unknown(tmp_path):
    """A journaled job that neither squeue nor sacct knows is 'unknown': status explains it, a plain re-launch does not
    resubmit it (it may still exist where the scheduler cannot be asked), --resubmit-unknown does."""
    from sweeps.journal import JournalEntry, record

    path = single_run_sweep(tmp_path, extra=RES)
    spec = load_sweep(path)
    run = expand(spec)[0]
    spec.sweep_dir.mkdir(parents=True, exist_ok=True)
    record(spec.sweep_dir, [JournalEntry(run.run_id, "987654_0", "slurm", str(tmp_path / "nowhere"), "2026-01-01")])
    assert _status_rows(path)[run.run_id]["status"] == "unknown"
    status = _status(path, 3)
    assert "--resubmit-unknown" in status and "1 run(s) unknown" in status, status
    again = _ok(launch(path))
    assert "0 to run" in again and "submitted array" not in again, again
    forced = _ok(launch(path, "--resubmit-unknown"))
    assert "1 to run" in forced and forced.count("submitted array") == 1, forced
    assert latest(spec.sweep_dir)[run.run_id].job_id != "987654_0"
    _wait_all_finished(path, timeout=120)
    assert _status_rows(path)[run.run_id]["status"] == "done"
