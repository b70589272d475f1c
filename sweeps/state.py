"""Where each run of a sweep stands, read from its run folder, the journal and (for live jobs) the scheduler.

Order of evidence: a `result.json` newer than the run's latest submission is final; otherwise the job's scheduler
state (submitit re-attached from the journal: `sacct`/`squeue` on SLURM, the process on the local executor) says
pending / running / preempted; a job that ended without a result is `failed` with the scheduler's reason and the tail
of its log. Nothing here waits on a job: `status` and `collect` never hang.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sweeps.grid import RunSpec
from sweeps.journal import JournalEntry, latest

# SLURM job states (sacct/squeue) -> our run statuses
_SLURM_STATES = {
    "PENDING": "queued", "CONFIGURING": "queued", "REQUEUED": "preempted", "REQUEUE_HOLD": "preempted",
    "REQUEUE_FED": "preempted", "RESIZING": "running", "RUNNING": "running", "COMPLETING": "running",
    "SUSPENDED": "running", "STAGE_OUT": "running", "SIGNALING": "running", "PREEMPTED": "preempted",
    "TIMEOUT": "timeout", "DEADLINE": "timeout", "CANCELLED": "failed", "FAILED": "failed", "NODE_FAIL": "failed",
    "OUT_OF_MEMORY": "failed", "BOOT_FAIL": "failed", "REVOKED": "failed", "COMPLETED": "completed",
}
ACTIVE = ("queued", "running", "preempted")  # a job exists and will still run


@dataclass
class RunState:
    run_id: str
    arch: str
    size: str
    status: str  # done | diverged | failed | timeout | running | queued | preempted | pending (no live job)
    error: str | None = None
    job_id: str | None = None
    scheduler_state: str | None = None
    step: int | None = None
    total_steps: int | None = None
    elapsed_s: float | None = None
    log_tail: str | None = None
    result: dict | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("done", "diverged")

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


def read_result(run_dir: Path) -> dict | None:
    path = Path(run_dir) / "result.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def last_step(run_dir: Path) -> int | None:
    """The last logged step in metrics.jsonl (cheap: reads the file's tail)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return None
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 4096))
        lines = f.read().decode(errors="replace").splitlines()
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def log_tail(entry: JournalEntry, lines: int = 15) -> str | None:
    """The last lines of the job's stderr (then stdout): where a traceback or the scheduler's kill message lands."""
    from submitit.core.utils import JobPaths

    paths = JobPaths(entry.folder, job_id=entry.job_id, task_id=0)
    for p in (paths.stderr, paths.stdout):
        try:
            text = Path(p).read_text(errors="replace").splitlines()
        except OSError:
            continue
        if text:
            return "\n".join(text[-lines:])
    return None


def _job_state(entry: JournalEntry) -> tuple[str, str | None]:
    """(our status, the scheduler's own state word) of a journaled job, without waiting."""
    if entry.executor == "slurm":
        import submitit

        try:
            raw = submitit.SlurmJob(folder=entry.folder, job_id=entry.job_id).state
        except Exception as e:  # sacct unreachable: say so rather than guess
            return "unknown", f"scheduler unreachable: {e}"
        word = raw.split()[0].upper() if raw else "UNKNOWN"
        return _SLURM_STATES.get(word, "unknown" if word == "UNKNOWN" else "failed"), raw
    if entry.executor == "local":
        try:
            pid = int(entry.job_id)
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError, PermissionError):
            return "ended", "process gone"
        return _zombie_or_running(pid)
    return "pending", None


def _zombie_or_running(pid: int) -> tuple[str, str]:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return "ended", "process exited"
    except OSError:
        pass
    return "running", "process alive"


def _newer(result: dict, entry: JournalEntry | None) -> bool:
    if entry is None or not result.get("finished_at"):
        return True
    try:
        return datetime.fromisoformat(result["finished_at"]) >= datetime.fromisoformat(entry.submitted_at)
    except ValueError:
        return True


def run_states(runs: list[RunSpec], sweep_dir: Path, query_scheduler: bool = True) -> list[RunState]:
    journal = latest(sweep_dir)
    states = []
    for run in runs:
        entry = journal.get(run.run_id)
        st = RunState(run.run_id, run.arch, run.size, "pending", job_id=entry.job_id if entry else None,
                      total_steps=run.steps, step=last_step(run.run_dir))
        result = read_result(run.run_dir)
        if result is not None and (result.get("status") in ("done", "diverged") or _newer(result, entry)):
            st.status, st.error, st.result = result.get("status", "failed"), result.get("error"), result
            st.elapsed_s = result.get("wall_time_s")
            if st.status == "failed" and entry is not None:
                st.log_tail = log_tail(entry)
        elif entry is not None and query_scheduler:
            status, word = _job_state(entry)
            st.scheduler_state = word
            if status in ("completed", "ended"):
                st.status = "failed"
                st.error = f"job {entry.job_id} ended without writing result.json ({word})"
                st.log_tail = log_tail(entry)
            elif status == "unknown":
                st.status, st.error = "pending", word
            else:
                st.status = status
                if status in ("failed", "timeout"):
                    st.error = f"job {entry.job_id}: {word}"
                    st.log_tail = log_tail(entry)
            try:
                st.elapsed_s = (datetime.now().astimezone() - datetime.fromisoformat(entry.submitted_at)).total_seconds()
            except ValueError:
                pass
        states.append(st)
    return states
