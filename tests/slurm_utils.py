"""Helpers for tests that talk to the local SLURM test cluster (scripts/local_slurm.sh up).

Import from any test (``from tests.slurm_utils import require_slurm, slurm_executor, ...``):

- ``require_slurm()``: skip the calling test unless the cluster answers; also points ``SLURM_CONF`` at the cluster.
- ``slurm_executor(folder, **params)``: a submitit ``AutoExecutor`` for the cluster whose jobs can import ``tests.*``.
- ``wait_for_job_state``, ``sacct_state``, ``squeue_state``, ``max_array_size``.

The script writes ``$SLURM_SCRATCH/env.sh`` (default scratch ``/tmp/simplex-slurm``) with ``export SLURM_CONF=...``:
the SLURM client tools (sbatch, squeue, sacct, scontrol: all that submitit calls) need it, nothing is written to
/etc. ``load_slurm_env()`` copies it into ``os.environ`` unless ``SLURM_CONF`` is already set (a real cluster).

The module-level callables at the bottom are submitted by tests: submitit pickles functions by reference, so they
must live in an importable module; ``slurm_executor`` puts the repository root on the job's ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterable

REPO_ROOT = Path(__file__).resolve().parents[1]
SKIP_MESSAGE = "SLURM test cluster not running: start it with `scripts/local_slurm.sh up` (make test does this)"

# Job states after which a job will not change any more (sacct/squeue spelling, without "by <uid>" suffixes).
TERMINAL_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
     "REVOKED"}
)


def scratch_dir() -> Path:
    return Path(os.environ.get("SLURM_SCRATCH", "/tmp/simplex-slurm"))


def env_file() -> Path:
    return scratch_dir() / "env.sh"


def load_slurm_env() -> dict[str, str]:
    """Read ``export K=V`` lines of the cluster's env.sh into os.environ (never overriding what is set).

    Returns the variables the file defines ({} when there is no file)."""
    found: dict[str, str] = {}
    path = env_file()
    if not path.is_file():
        return found
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line.startswith("export ") or "=" not in line:
            continue
        key, _, value = line[len("export "):].partition("=")
        found[key.strip()] = value.strip().strip("'\"")
    for key, value in found.items():
        os.environ.setdefault(key, value)
    return found


def _run(args: list[str], timeout: float = 15) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def slurm_available() -> bool:
    """True when sinfo reaches a controller that has at least one node (loads env.sh first)."""
    load_slurm_env()
    if shutil.which("sinfo") is None:
        return False
    try:
        out = _run(["sinfo", "-h", "-o", "%T"], timeout=10)
    except (subprocess.TimeoutExpired, OSError):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


def require_slurm() -> None:
    """Skip the calling test (or fixture) unless the SLURM test cluster answers."""
    import pytest

    if not slurm_available():
        pytest.skip(SKIP_MESSAGE)


def _base_state(raw: str) -> str:
    # "CANCELLED by 0" -> "CANCELLED"; "RUNNING" stays.
    return raw.strip().split(" ")[0].upper() if raw.strip() else ""


def sacct_state(job_id: str | int) -> str | None:
    """State of a job (or array task ``123_4``) in accounting; None when sacct has no record yet."""
    out = _run(["sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", "JobID,State"])
    if out.returncode != 0:
        return None
    rows = [line.partition("|") for line in out.stdout.splitlines() if line.strip()]
    for jid, _, state in rows:
        if jid == str(job_id):
            return _base_state(state) or None
    return (_base_state(rows[0][2]) or None) if rows else None


def squeue_state(job_id: str | int) -> str | None:
    """State the controller reports (finished jobs stay visible for MinJobAge=300 s); None when unknown."""
    out = _run(["squeue", "-h", "-j", str(job_id), "-t", "all", "-o", "%T"])
    if out.returncode != 0:
        return None
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    return _base_state(lines[0]) if lines else None


def job_state(job_id: str | int) -> str | None:
    """Controller's view first (fresh), accounting otherwise."""
    return squeue_state(job_id) or sacct_state(job_id)


def wait_for_job_state(job_id: str | int, states: Iterable[str] | str, timeout: float = 60.0,
                       poll: float = 0.5) -> str:
    """Poll until the job is in one of ``states`` (e.g. {"RUNNING"}); returns the state reached.

    Raises TimeoutError (with the last state seen) after ``timeout`` seconds, and RuntimeError early when the job
    reached a terminal state that is not wanted."""
    wanted = {states.upper()} if isinstance(states, str) else {s.upper() for s in states}
    deadline = time.monotonic() + timeout
    state = None
    while True:
        state = job_state(job_id)
        if state in wanted:
            return state
        if state in TERMINAL_STATES:
            raise RuntimeError(f"job {job_id} ended in {state}, waiting for {sorted(wanted)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} not in {sorted(wanted)} after {timeout:.0f} s (last state {state})")
        time.sleep(poll)


def max_array_size() -> int:
    """MaxArraySize of the running cluster (array indices must be < this): `scontrol show config`."""
    load_slurm_env()
    out = _run(["scontrol", "show", "config"])
    out.check_returncode()
    for line in out.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize":
            return int(value.strip())
    raise RuntimeError("MaxArraySize not in `scontrol show config`")


def slurm_executor(folder: str | os.PathLike, **params):
    """A submitit AutoExecutor on the local cluster, with test-friendly defaults (any can be overridden).

    Jobs run with this interpreter (sys.executable, i.e. .venv/bin/python) and REPO_ROOT on PYTHONPATH, so functions
    from ``tests.*`` unpickle in the job."""
    import submitit

    load_slurm_env()
    executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    setup = [f"export PYTHONPATH={REPO_ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"]
    defaults = dict(timeout_min=20, slurm_partition="debug", cpus_per_task=1, tasks_per_node=1, nodes=1,
                    slurm_setup=setup)
    extra_setup = params.pop("slurm_setup", [])
    defaults.update(params)
    defaults["slurm_setup"] = setup + list(extra_setup)
    executor.update_parameters(**defaults)
    return executor


# ----- callables submitted by tests (importable as tests.slurm_utils.*) -----

def add(a, b):
    return a + b


def square(x):
    return x * x


def gpu_env() -> dict[str, str | None]:
    """What a job sees of its (fake) GPUs."""
    keys = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "GPU_DEVICE_ORDINAL", "SLURM_JOB_ID")
    return {k: os.environ.get(k) for k in keys}


def touch_and_sleep(marker: str, seconds: float) -> str:
    """Writes ``marker`` (so a test knows the job runs), then sleeps."""
    Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "slept"


try:
    import submitit as _submitit

    _Checkpointable = _submitit.helpers.Checkpointable
except ImportError:  # pragma: no cover - helpers above still work without submitit
    _Checkpointable = object


class CheckpointableCounter(_Checkpointable):
    """Counts to ``n_steps``, one step every ``step_s`` seconds, writing progress to ``progress_file``.

    State lives on ``self``; submitit's default ``checkpoint()`` pickles ``self`` on preemption (USR2), so a requeued
    run resumes at ``self.step``. ``self.starts`` counts how many times the job started."""

    def __init__(self) -> None:
        self.step = 0
        self.starts = 0

    def __call__(self, n_steps: int, progress_file: str, step_s: float = 1.0) -> dict:
        self.starts += 1
        while self.step < n_steps:
            time.sleep(step_s)
            self.step += 1
            Path(progress_file).write_text(f"{self.step} {self.starts}\n")
        return {"step": self.step, "starts": self.starts, "job_id": os.environ.get("SLURM_JOB_ID")}


# ----- tiny sweeps for the launcher tests (tests/test_slurm_launch.py, tests/test_ddp.py) -----

def launch(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python launch.py ARGS` in a fresh process (the launcher exits; later calls re-attach from the journal)."""
    import sys

    load_slurm_env()
    return subprocess.run([sys.executable, "launch.py", *map(str, args)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def single_run_sweep(folder: Path, *, executor: str = "slurm", budgets: str = "2560", seeds: str = "[0]",
                     extra: str = "", data: str | None = None) -> Path:
    """tests/conftest.py's tiny sweep cut to one architecture (dot) and one size (a): one run per budget and seed.

    ``extra`` is YAML appended under ``executor:`` (indented two spaces), e.g. "resources: {cpus_per_task: 1}";
    ``data`` replaces the data block's source line."""
    from tests.conftest import write_sweep

    path = write_sweep(Path(folder), executor=executor, budgets=budgets)
    text = path.read_text()
    text = text.replace("  simplicial: {type: simplicial, every: 2, w1: 8, w2: 4}\n", "")
    text = text.replace("  b: {n_layers: 2, d_model: 48, n_heads: 2}\n", "")
    if data is not None:
        text = text.replace("  source: python-stdlib\n", data.rstrip("\n") + "\n")
    text += f"seeds: {seeds}\n"
    text = text.replace("executor:\n", "executor:\n" + "".join(f"  {line}\n" for line in extra.splitlines()))
    path.write_text(text)
    return path


def wait_sweep(path: Path, timeout: float, poll: float = 0.5) -> list:
    """Poll the sweep's run states (journal + squeue/sacct, as `launch.py status` does) until no run is queued,
    running or preempted; returns the states. Raises TimeoutError naming the runs still active."""
    from sweeps import expand, load_sweep
    from sweeps.state import run_states

    spec = load_sweep(path)
    runs = expand(spec)
    deadline = time.monotonic() + timeout
    while True:
        states = run_states(runs, spec.sweep_dir)
        if not any(s.active for s in states):
            return states
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: still active after {timeout:.0f} s: "
                               f"{[(s.run_id, s.status, s.job_id) for s in states if s.active]}")
        time.sleep(poll)
