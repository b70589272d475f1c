"""Where each run of a sweep stands, read from its run folder, the journal and (for live jobs) the scheduler.

Order of evidence: a `result.json` that says done/diverged, or that is newer than the run's latest submission, is
final; otherwise the job's scheduler state says queued / running / preempted (requeued) / timeout / failed. A job
that ended without a result (scancel, node failure, OOM, a hard kill) is `failed` with the scheduler's state, its
exit code and the tail of its log.

SLURM jobs are re-attached from the journal with one `squeue` (the controller's fresh view) and one `sacct` (for jobs
the controller has forgotten) per status call, by array id, each under a timeout: nothing here waits on a job, so
`status`, `collect` and a re-launch never hang. A job the scheduler cannot tell us about is `unknown`, and the
launcher treats that as possibly alive (never resubmits it: no duplicate jobs).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sweeps.grid import RunSpec
from sweeps.journal import JournalEntry, latest

# SLURM job states (sacct/squeue) -> our run statuses
_SLURM_STATES = {
    "PENDING": "queued", "CONFIGURING": "queued", "REQUEUED": "preempted", "REQUEUE_HOLD": "preempted",
    "REQUEUE_FED": "preempted", "RESIZING": "running", "RUNNING": "running", "COMPLETING": "running",
    "SUSPENDED": "running", "STAGE_OUT": "running", "SIGNALING": "running", "STOPPED": "running",
    "PREEMPTED": "preempted", "TIMEOUT": "timeout", "DEADLINE": "timeout", "CANCELLED": "failed",
    "FAILED": "failed", "NODE_FAIL": "failed", "OUT_OF_MEMORY": "failed", "BOOT_FAIL": "failed",
    "REVOKED": "failed", "SPECIAL_EXIT": "failed", "COMPLETED": "completed",
}
ACTIVE = ("queued", "running", "preempted", "unknown")  # a job exists (or may exist) and will still run
SCHEDULER_TIMEOUT_S = 20.0


@dataclass
class RunState:
    run_id: str
    arch: str
    size: str
    # done | diverged | failed | timeout | running | queued | preempted | pending (no live job) | unknown, and for a
    # replicate seed's run on an lr axis with lr_tuning_seeds (`tune_lr`): awaiting-lr | not-tuned
    status: str
    error: str | None = None
    job_id: str | None = None
    scheduler_state: str | None = None
    step: int | None = None
    total_steps: int | None = None
    elapsed_s: float | None = None
    log_tail: str | None = None
    result: dict | None = None

    @property
    def trained(self) -> bool:
        return self.status in ("done", "diverged")

    @property
    def finished(self) -> bool:
        """Nothing is left to do: the run trained, or another lr won the tuning (not-tuned)."""
        return self.trained or self.status == "not-tuned"

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def to_run(self) -> bool:
        """A launch should start it: not finished, no job of it alive, and not waiting for its lr to be tuned."""
        return not (self.finished or self.active or self.status == "awaiting-lr")


@dataclass(frozen=True)
class SchedulerInfo:
    state: str  # the scheduler's word, e.g. RUNNING, "CANCELLED by 0"
    reason: str | None = None
    exit_code: str | None = None
    elapsed_s: float | None = None


def last_line(text: str | None) -> str | None:
    """The last non-blank line of a traceback or log, stripped (the exception that ended a run); None if none."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else None


def read_result(run_dir: Path) -> dict | None:
    path = Path(run_dir) / "result.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def last_step(run_dir: Path) -> int | None:
    """The last logged step in metrics.jsonl (cheap: reads the file's tail)."""
    path = Path(run_dir) / "metrics.jsonl"
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            f.seek(max(0, size - 4096))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def _job_paths(entry: JournalEntry):
    from submitit.core.utils import JobPaths

    return JobPaths(entry.folder, job_id=entry.job_id, task_id=0)


def log_tail(entry: JournalEntry, lines: int = 15) -> str | None:
    """The last lines of the job's stderr (then stdout): where a traceback or the scheduler's kill message lands."""
    paths = _job_paths(entry)
    for p in (paths.stderr, paths.stdout):
        try:
            text = Path(p).read_text(errors="replace").splitlines()
        except OSError:
            continue
        if text:
            return "\n".join(text[-lines:])
    return None


def _has_started(entry: JournalEntry) -> bool:
    """The job wrote a log: it ran at least once (a PENDING job that did was requeued)."""
    paths = _job_paths(entry)
    return Path(paths.stdout).exists() or Path(paths.stderr).exists()


# ----------------------------------------------------------------------------------------------------------------
# the scheduler, queried in bulk and never waited on


def _duration_s(text: str) -> float | None:
    """SLURM's [D-]HH:MM:SS / MM:SS / MM:SS.mmm -> seconds."""
    text = (text or "").strip()
    m = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)", text)
    if not m:
        return None
    d, h, mi, s = m.groups()
    return int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi) * 60 + float(s)


def _expand_ids(job_id: str) -> list[str]:
    """'12_[3-5,7%2]' -> ['12_3', '12_4', '12_5', '12_7'] (pending array tasks are grouped so); '12_4' -> ['12_4']."""
    m = re.fullmatch(r"(\d+)_\[([^\]]+)\]", job_id)
    if not m:
        return [job_id]
    base, spec = m.group(1), m.group(2).split("%")[0]
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out += [f"{base}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def _run_tool(args: list[str], timeout: float) -> str | None:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def slurm_job_states(job_ids: list[str], timeout: float = SCHEDULER_TIMEOUT_S) -> dict[str, SchedulerInfo]:
    """job id (array task ids like '12_3' too) -> SchedulerInfo, from one squeue and one sacct call per 200 arrays.

    squeue first (fresh: a requeued job is PENDING there at once); sacct for jobs the controller no longer lists.
    Jobs neither knows are missing from the answer."""
    bases = sorted({j.split("_")[0] for j in job_ids})
    found: dict[str, SchedulerInfo] = {}
    for i in range(0, len(bases), 200):
        ids = ",".join(bases[i : i + 200])
        out = _run_tool(["squeue", "-h", "-r", "-t", "all", "-j", ids, "-o", "%i|%T|%r|%M"], timeout) or ""
        for line in out.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 4:
                for jid in _expand_ids(parts[0]):
                    found[jid] = SchedulerInfo(parts[1], parts[2] or None, None, _duration_s(parts[3]))
        missing = [j for j in job_ids if j not in found and j.split("_")[0] in bases[i : i + 200]]
        if not missing:
            continue
        out = _run_tool(["sacct", "-n", "-X", "-P", "-j", ids, "-o", "JobID,State,Reason,ExitCode,Elapsed"],
                        timeout) or ""
        for line in out.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 5:
                for jid in _expand_ids(parts[0]):
                    if jid not in found:
                        found[jid] = SchedulerInfo(parts[1], parts[2] or None, parts[3] or None,
                                                   _duration_s(parts[4]))
    return found


def _word(state: str) -> str:
    return state.split()[0].upper() if state else "UNKNOWN"


def _local_state(entry: JournalEntry) -> tuple[str, str]:
    """A local-executor job is a process on the launching machine. Its journaled identity (host, boot, start time)
    must match before its pid is believed: a reused pid is another process, and the job is gone."""
    proc = entry.process
    if proc is not None:
        alive = proc.alive()
        if alive is None:
            return "unknown", f"pid {proc.pid} on host {proc.host}: cannot be checked from this host"
        return ("running", "process alive") if alive else ("ended", "process gone")
    try:  # a journal line without an identity (written before they were recorded): the pid is all there is
        pid = int(entry.job_id)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, PermissionError):
        return "ended", "process gone"
    from sweeps.procs import started_at

    begun = started_at(pid)
    try:
        submitted = datetime.fromisoformat(entry.submitted_at).timestamp()
    except ValueError:
        submitted = None
    if begun is not None and submitted is not None and begun > submitted + 60:
        return "ended", f"process gone (pid {pid} is now a process started after the submission)"
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
    states: list[RunState] = []
    pending_slurm: list[tuple[RunState, JournalEntry]] = []
    for run in runs:
        entry = journal.get(run.run_id)
        st = RunState(run.run_id, run.arch, run.size, "pending", job_id=entry.job_id if entry else None,
                      total_steps=run.steps, step=last_step(run.run_dir))
        states.append(st)
        result = read_result(run.run_dir)
        if result is not None and (result.get("status") in ("done", "diverged") or _newer(result, entry)):
            st.status, st.error, st.result = result.get("status", "failed"), result.get("error"), result
            st.elapsed_s = result.get("wall_time_s")
            if st.status == "failed" and entry is not None:
                st.log_tail = log_tail(entry)
            continue
        if entry is None or not query_scheduler:
            continue
        if entry.executor == "slurm":
            pending_slurm.append((st, entry))
        elif entry.executor == "local":
            status, word = _local_state(entry)
            st.scheduler_state = word
            if status == "ended":
                _ended_without_result(st, entry, word)
            elif status == "unknown":
                st.status, st.error = "unknown", f"job {entry.job_id}: {word}"
            else:
                st.status = status
                st.elapsed_s = _since(entry.submitted_at)
    if pending_slurm:
        infos = slurm_job_states([e.job_id for _, e in pending_slurm])
        for st, entry in pending_slurm:
            info = infos.get(entry.job_id)
            if info is None:
                st.status, st.scheduler_state = "unknown", None
                st.error = f"job {entry.job_id}: neither squeue nor sacct knows it (scheduler unreachable?)"
                continue
            st.scheduler_state, st.elapsed_s = info.state, info.elapsed_s
            status = _SLURM_STATES.get(_word(info.state), "failed")
            if status == "queued" and _has_started(entry):
                status = "preempted"  # it ran, and is queued again: requeued after preemption or a time limit
            if status == "completed":
                _ended_without_result(st, entry, info.state)
            elif status in ("failed", "timeout"):
                st.status = status
                detail = ", ".join(x for x in (f"exit code {info.exit_code}" if info.exit_code else None,
                                               f"reason {info.reason}" if info.reason not in (None, "None") else None)
                                   if x)
                st.error = f"job {entry.job_id} {info.state} without writing result.json" + (f" ({detail})" if detail else "")
                st.log_tail = log_tail(entry)
            else:
                st.status = status
    tune_lr(runs, states)
    return states


@dataclass(frozen=True)
class LrTuning:
    """The lr tuning of one (arch, size) under `training.lr_tuning_seeds`: `left` tuning runs at the largest budget
    (`top` tokens) still to finish, else the winning multiplier `best` (None: every multiplier diverged)."""
    tuning_seeds: tuple[int, ...]
    top: int
    n_trials: int
    left: int
    best: float | None


def lr_tunings(runs: list[RunSpec], states: list[RunState]) -> dict[tuple[str, str], LrTuning]:
    """The lr tuning of every (arch, size) on a tuned lr axis whose tuning runs are all among `runs` (a subset of
    the sweep, one run being claimed, has none). The winner is the multiplier of lowest validation loss at the
    largest budget, averaged over the tuning seeds (a diverged run counts as infinite): one lr serves a whole wsd
    ladder, and its longest run is where a wrong lr costs most."""
    groups: dict[tuple[str, str], list[tuple[RunSpec, RunState]]] = {}
    for run, st in zip(runs, states):
        if run.tuned_axis:
            groups.setdefault((run.arch, run.size), []).append((run, st))
    out = {}
    for key, members in groups.items():
        tuning = tuple(sorted(members[0][0].training["lr_tuning_seeds"]))
        top = max(r.tokens for r, _ in members)
        trials = [(r, st) for r, st in members if not r.lr_replicate and r.tokens == top]
        if len(trials) != len(tuning) * len(members[0][0].training["lr_multipliers"]):
            continue
        left = sum(not st.trained for _, st in trials)
        best = None
        if not left:
            losses: dict[float, list[float]] = {}
            for r, st in trials:
                loss = (st.result or {}).get("val_loss") if st.status == "done" else None
                losses.setdefault(r.lr_mult, []).append(float("inf") if loss is None else float(loss))
            mean = {m: sum(v) / len(v) for m, v in losses.items()}
            best = min(mean, key=mean.get)
            if mean[best] == float("inf"):
                best = None
        out[key] = LrTuning(tuning, top, len(trials), left, best)
    return out


def tune_lr(runs: list[RunSpec], states: list[RunState]) -> None:
    """Resolve the lr of replicate seeds (`training.lr_tuning_seeds`), in place. On an lr axis, only the tuning
    seeds train every multiplier; another seed's run waits (`awaiting-lr`) until every tuning run of its
    (architecture, size) at the largest budget has finished, then trains if its multiplier won the tuning
    (`lr_tunings`) and is otherwise `not-tuned`: nothing to do. A replicate that ran or has a job keeps its own
    state: no result is discarded.

    Why: a tuned lr per size is what a fair comparison needs (an untuned one biases the fitted exponents), and
    tuning it on every seed multiplies the cost of the replicates that estimate the noise by the axis's length. The
    replicates' lr is chosen without their own losses, so their errors stay honest; the results table fits the
    winner in their cells (sweeps/collect.py mark_best_lr), and the tuning seeds' own best in theirs."""
    tunings = lr_tunings(runs, states)
    for run, st in zip(runs, states):
        t = tunings.get((run.arch, run.size))
        if t is None or not run.lr_replicate or st.status != "pending" or st.job_id is not None:
            continue
        where = f"{run.arch}/{run.size} and {t.top:,} tokens"
        if t.left:
            st.status = "awaiting-lr"
            st.error = (f"waits for the lr tuning of seed(s) {list(t.tuning_seeds)} at {run.arch}/{run.size}: "
                        f"{t.left} of {t.n_trials} tuning run(s) at {t.top:,} tokens still to finish; launch again "
                        f"after")
        elif t.best is None:
            st.status = "not-tuned"
            st.error = f"every lr of seed(s) {list(t.tuning_seeds)} at {where} diverged"
        elif run.lr_mult != t.best:
            st.status = "not-tuned"
            st.error = (f"lr x{run.lr_mult:g} lost the tuning: x{t.best:g} has the lowest validation loss of seed(s) "
                        f"{list(t.tuning_seeds)} at {where}")


def _ended_without_result(st: RunState, entry: JournalEntry, word: str) -> None:
    st.status = "failed"
    st.error = f"job {entry.job_id} ended without writing result.json ({word})"
    st.log_tail = log_tail(entry)


def _since(iso: str) -> float | None:
    try:
        return (datetime.now().astimezone() - datetime.fromisoformat(iso)).total_seconds()
    except ValueError:
        return None


@dataclass(frozen=True)
class StaleRun:
    """A finished run in the sweep folder that the sweep no longer names because its data changed since."""

    run_id: str
    arch: str
    size: str
    tokens: int
    val_loss: float | None


def stale_runs(runs: list[RunSpec], sweep_dir: Path) -> list[StaleRun]:
    """Finished runs under `<sweep_dir>/runs/` trained on another version of the data than the sweep's runs now use
    (their config.json's data fingerprint differs): kept on disk, no longer counted, listed by `status`."""
    if not runs:
        return []
    current = {r.run_id for r in runs}
    fingerprint = runs[0].data.get("fingerprint")
    folder = Path(sweep_dir) / "runs"
    out = []
    for run_dir in sorted(folder.iterdir()) if folder.is_dir() else []:
        if run_dir.name in current:
            continue
        result = read_result(run_dir)
        if not result or result.get("status") not in ("done", "diverged"):
            continue
        try:
            config = json.loads((run_dir / "config.json").read_text())
        except (OSError, ValueError):
            continue
        data = config.get("data") or {}
        if data.get("fingerprint") != fingerprint:
            out.append(StaleRun(run_dir.name, config.get("arch", "?"), config.get("size", "?"),
                                int(config.get("tokens") or 0), result.get("val_loss")))
    return out

