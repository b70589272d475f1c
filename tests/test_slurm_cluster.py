"""Smoke tests of the local SLURM test cluster itself, through submitit (what the launcher relies on).

Needs `scripts/local_slurm.sh up` (make test runs it); skipped otherwise. About a minute in all.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.slurm_utils import (
    CheckpointableCounter,
    add,
    gpu_env,
    max_array_size,
    require_slurm,
    slurm_executor,
    square,
    touch_and_sleep,
    wait_for_job_state,
)

submitit = pytest.importorskip("submitit")

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]


@pytest.fixture(autouse=True)
def _slurm():
    require_slurm()


def _wait_for_file(path: Path, timeout: float, job=None) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        if job is not None and job.done():
            pytest.fail(f"job {job.job_id} finished before writing {path}: {job.state}\n{job.stderr()}")
        time.sleep(0.25)
    pytest.fail(f"{path} not written within {timeout} s")


def test_cluster_config_visible():
    out = subprocess.run(["sinfo", "-h", "-o", "%P %a %G"], capture_output=True, text=True, check=True).stdout
    assert "debug*" in out and "up" in out and "gpu:" in out
    assert max_array_size() >= 2
    # accounting answers (submitit needs sacct to notice jobs killed without a result file)
    subprocess.run(["sacct", "-n", "-X", "-S", "now-1hours"], capture_output=True, check=True, timeout=15)


def test_submit_returns_result(tmp_path):
    executor = slurm_executor(tmp_path / "logs")
    job = executor.submit(add, 2, 3)
    assert job.result() == 5
    assert wait_for_job_state(job.job_id, {"COMPLETED"}, timeout=30) == "COMPLETED"
    # the job used the same interpreter as the tests (the venv), not the system python
    assert sys.executable in Path(job.paths.submission_file).read_text()


def test_map_array(tmp_path):
    executor = slurm_executor(tmp_path / "logs", slurm_array_parallelism=3)
    jobs = executor.map_array(square, [1, 2, 3])
    assert len(jobs) == 3 and all("_" in j.job_id for j in jobs)
    assert [j.result() for j in jobs] == [1, 4, 9]


def test_fake_gpu_is_scheduled(tmp_path):
    executor = slurm_executor(tmp_path / "logs", gpus_per_node=1)
    job = executor.submit(gpu_env)
    env = job.result()
    assert env["SLURM_JOB_ID"] == job.job_id.split("_")[0]
    assert env["CUDA_VISIBLE_DEVICES"] in {"0", "1"}, env
    assert env["SLURM_JOB_GPUS"] in {"0", "1"}, env


def test_scancel_gives_uncompleted_job_error(tmp_path):
    executor = slurm_executor(tmp_path / "logs")
    marker = tmp_path / "running"
    job = executor.submit(touch_and_sleep, str(marker), 600)
    _wait_for_file(marker, 60, job)
    t0 = time.monotonic()
    job.cancel()
    with pytest.raises(submitit.core.utils.UncompletedJobError):
        job.result()  # without accounting this would hang: there is no result file
    assert time.monotonic() - t0 < 60
    assert wait_for_job_state(job.job_id, "CANCELLED", timeout=60) == "CANCELLED"


def test_interrupt_requeues_checkpointable(tmp_path):
    executor = slurm_executor(tmp_path / "logs")
    progress = tmp_path / "progress"
    n_steps = 12
    job = executor.submit(CheckpointableCounter(), n_steps, str(progress), 1.0)
    # interrupt once it has made some progress, as a preemption would
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = progress.read_text().split() if progress.exists() else []
        if text and int(text[0]) >= 3:
            break
        time.sleep(0.25)
    else:
        pytest.fail(f"job {job.job_id} made no progress: {job.state}")
    job._interrupt()  # SIGTERM (ignored by submitit) then USR2: checkpoint + scontrol requeue
    result = job.result()  # requeued job restarts after cred_expire (10 s) and resumes from the checkpoint
    assert result["step"] == n_steps
    assert result["starts"] == 2, result  # started twice: checkpointed state (step) survived the requeue
    # job.result() returns once the result pickle exists, which can be before the controller records the end
    # (RUNNING / COMPLETING for a moment): wait for the state with a deadline instead of reading it once
    assert wait_for_job_state(job.job_id, "COMPLETED", timeout=60) == "COMPLETED"
    log = Path(job.paths.stderr).read_text() if Path(job.paths.stderr).exists() else ""
    assert "Requeued job" in log or "requeue" in log.lower(), log[-2000:]


def test_max_array_size_is_enforced(tmp_path):
    limit = max_array_size()  # `scontrol show config`; set at `up` time with SLURM_MAX_ARRAY_SIZE
    too_big = subprocess.run(["sbatch", "--hold", f"--array=0-{limit}", "-o", "/dev/null", "--wrap", "true"],
                             capture_output=True, text=True, cwd=tmp_path)
    assert too_big.returncode != 0 and "array" in too_big.stderr.lower(), too_big.stderr
    ok = subprocess.run(["sbatch", "--parsable", "--hold", f"--array=0-{limit - 1}", "-o", "/dev/null", "--wrap",
                         "true"], capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    subprocess.run(["scancel", ok.stdout.strip().split(";")[0]], check=True)
