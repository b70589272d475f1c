"""Submitting runs through submitit: SLURM job arrays, local subprocesses, or in-process debugging.

One function per backend, one shared journal. `submit_slurm` returns as soon as the arrays are queued (the journal
lets `launch.py status` follow them later); `run_local` keeps at most `max_parallel` runs going on this machine and
prints a line per finished run with an ETA; `run_debug` runs each job in this process (pdb-friendly).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import submitit

from simplicial.train import TrainJob
from sweeps.gpus import GpuPool, detect_devices, gpus_needed, submitit_gpu_parameters
from sweeps.grid import RunSpec
from sweeps.claims import Claim, try_claim
from sweeps.journal import JournalEntry, now, record
from sweeps.procs import ProcessId, stop
from sweeps.snapshot import REPO_ROOT, snapshot_code
from sweeps.state import last_line, last_step, run_states
from sweeps.throughput import Throughput, share_threads

DEFAULT_MAX_ARRAY_SIZE = 1001  # SLURM's default MaxArraySize (docs/REFERENCE.md section 5)
DEFAULT_TIMEOUT_MIN = 24 * 60


def submitit_folder(sweep_dir: Path) -> Path:
    # %j is expanded by submitit to the job id: one folder of logs and pickles per job, on the shared file system
    return Path(sweep_dir) / "submitit" / "%j"


# ----------------------------------------------------------------------------------------------------------------
# SLURM


def cluster_max_array_size() -> int:
    """MaxArraySize from `scontrol show config` (the cluster's own limit), else SLURM's default 1001."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return DEFAULT_MAX_ARRAY_SIZE
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
    return int(m.group(1)) if m else DEFAULT_MAX_ARRAY_SIZE


def slurm_parameters(resources: dict, max_parallel: int) -> dict:
    """Our ResourceSpec fields -> submitit SlurmExecutor parameters (None means: the cluster's default)."""
    r = resources
    params = {
        "slurm_partition": r.get("partition"), "gpus_per_node": r.get("gpus_per_node"),
        "tasks_per_node": r.get("tasks_per_node") or 1, "cpus_per_task": r.get("cpus_per_task"),
        "mem_gb": r.get("mem_gb"), "timeout_min": r.get("timeout_min") or DEFAULT_TIMEOUT_MIN,
        "slurm_qos": r.get("qos"), "slurm_account": r.get("account"), "slurm_constraint": r.get("constraint"),
        "slurm_additional_parameters": dict(r.get("additional_parameters") or {}),
        "slurm_setup": list(r.get("setup") or []), "slurm_array_parallelism": max_parallel,
    }
    return {k: v for k, v in params.items() if v is not None}


def _resource_key(run: RunSpec) -> str:
    return json.dumps(run.resources, sort_keys=True)


class SubmissionError(RuntimeError):
    """The scheduler refused a submission; the message carries sbatch's own error."""


def _with_threads(run: RunSpec, threads: int) -> RunSpec:
    """The run with `training.threads` set unless the sweep set it (threads are not part of the run's identity)."""
    if run.training.get("threads"):
        return run
    return dataclasses.replace(run, training={**run.training, "threads": threads})


def _compact(resources: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in resources.items() if v not in (None, {}, [])) or "cluster defaults"


def submit_slurm(runs: list[RunSpec], sweep_dir: Path, max_parallel: int, max_array_size: int | None = None,
                 log=print) -> list[JournalEntry]:
    """Queue runs as job arrays and return: one array per resource shape, each chunked below the cluster's
    MaxArraySize (array indices must be < it) and below `max_array_size` when the sweep sets one; at most
    `max_parallel` tasks of an array run at once. Every chunk is journaled as soon as sbatch accepted it.
    Runs are claimed (sweeps/claims.py) until journaled, so two launches never queue one run twice."""
    runs, claims = claim_runs(runs, sweep_dir, log)
    try:
        return _submit_arrays(runs, sweep_dir, max_parallel, max_array_size, log)
    finally:
        for claim in claims:
            claim.release()


def _submit_arrays(runs: list[RunSpec], sweep_dir: Path, max_parallel: int, max_array_size: int | None,
                   log) -> list[JournalEntry]:
    cluster_limit = cluster_max_array_size()
    chunk = min(cluster_limit, max_array_size) if max_array_size else cluster_limit
    folder = submitit_folder(sweep_dir)
    groups: dict[str, list[RunSpec]] = {}
    for run in runs:
        groups.setdefault(_resource_key(run), []).append(run)
    entries = []
    # jobs import a snapshot of the code as launched (sweeps/snapshot.py), not the live checkout
    code = snapshot_code(sweep_dir, log=log) or REPO_ROOT
    for group in groups.values():
        res = group[0].resources
        params = slurm_parameters(res, max_parallel)
        # the job runs this interpreter (sys.executable); the code folder on PYTHONPATH makes `simplicial` importable
        # even where the package is not installed in that interpreter's environment, and ahead of an editable install
        params["slurm_setup"] = [f"export PYTHONPATH={code}${{PYTHONPATH:+:$PYTHONPATH}}", *params["slurm_setup"]]
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        executor.update_parameters(name=f"{group[0].sweep}", **params)
        threads = int(res.get("cpus_per_task") or 1)  # one intra-op thread per allocated CPU: no oversubscription
        for start in range(0, len(group), chunk):
            part = group[start : start + chunk]
            for run in part:  # threads follow cpus_per_task there, not a local launch's thread file
                run.paths.threads.unlink(missing_ok=True)
            try:
                # sbatch from the code folder: the job starts there, and `python -m` puts its cwd first on sys.path
                with contextlib.chdir(code), executor.batch():
                    jobs = [executor.submit(TrainJob(_with_threads(run, threads))) for run in part]
            except Exception as e:  # sbatch refused it: bad partition, account, qos, limits ...
                done = f"; {len(entries)} runs were queued before (journaled)" if entries else ""
                raise SubmissionError(f"sbatch refused an array of {len(part)} runs ({_compact(res)}): "
                                      f"{str(e).strip()}{done}") from e
            batch = [JournalEntry(run.run_id, job.job_id, "slurm", str(job.paths.folder), now())
                     for run, job in zip(part, jobs)]
            record(sweep_dir, batch)
            entries += batch
            log(f"submitted array {jobs[0].job_id.split('_')[0]} ({len(part)} runs; {_compact(res)})")
    return entries


# ----------------------------------------------------------------------------------------------------------------
# Local


def _fmt_s(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _gpu_plan(runs: list[RunSpec], devices: list[str], max_parallel: int, runs_per_gpu: int, log) -> list[int]:
    """GPUs each run needs (checked for every run before any starts); logs where the runs will train."""
    needs = [gpus_needed(r.resources, r.training["device"], len(devices)) for r in runs]
    pool = GpuPool(devices, runs_per_gpu)
    if not devices:
        log(f"no GPU visible (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}, torch counts 0 CUDA "
            f"devices): runs train on the CPU")
    elif any(needs):
        per_run = max(needs)
        slots = pool.slots(per_run)
        note = (f"; max_parallel {max_parallel} is more than that (executor.runs_per_gpu packs several runs on a GPU)"
                if max_parallel > slots else "")
        log(f"GPUs {','.join(devices)}: {per_run} per run, {runs_per_gpu} run(s) per GPU, so at most "
            f"{min(slots, max_parallel)} run(s) at once{note}")
    if devices and not all(needs):
        log(f"{needs.count(0)} run(s) train on the CPU by request (gpus_per_node 0 or training.device cpu)")
    return needs


class LauncherSignal(KeyboardInterrupt):
    """SIGTERM or SIGHUP reached the launcher (a `timeout`, a closed terminal): handled like Ctrl-C, so the
    launcher's local runs are stopped rather than left training as orphans nobody watches."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def signals_interrupt():
    """While active, SIGTERM and SIGHUP raise LauncherSignal in the main thread (as SIGINT raises KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise LauncherSignal(signum)

    # A signal the launcher was started with ignored stays ignored: `nohup` sets SIGHUP to SIG_IGN on purpose.
    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)
           if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def claim_runs(runs: list[RunSpec], sweep_dir: Path, log=print) -> tuple[list[RunSpec], list[Claim]]:
    """Hold each run and confirm it is still to do (another launch of the sweep may have finished, queued or started
    it since this one planned): the runs this launcher may start now, and the claims to release after. A run not
    ours to start is logged with the reason."""
    held: list[tuple[RunSpec, Claim]] = []
    for run in runs:
        claim, who = try_claim(run.paths)
        if claim is None:
            log(f"  skip    {run.run_id}: claimed by {who}")
        else:
            held.append((run, claim))
    kept, claims = [], []
    states = run_states([run for run, _ in held], sweep_dir) if held else []
    for (run, claim), st in zip(held, states):
        if st.finished or st.status in ("queued", "running", "preempted"):
            claim.release()
            log(f"  skip    {run.run_id}: {st.status} (another launch of this sweep got there first)")
        else:
            kept.append(run)
            claims.append(claim)
    return kept, claims


def run_local(runs: list[RunSpec], sweep_dir: Path, max_parallel: int, log=print, poll_s: float = 1.0,
              heartbeat_s: float = 30.0, runs_per_gpu: int = 1, devices: list[str] | None = None,
              stop_grace_s: float = 20.0) -> dict[str, str]:
    """Run on this machine as submitit local jobs, `max_parallel` at a time; returns run id -> final status
    ("skipped" for a run another launch of the sweep holds or has done).

    Each run gets its own GPU(s) from `devices` (default: what this process sees, `sweeps.gpus.detect_devices`),
    at most `runs_per_gpu` runs on one GPU; a run waits while too few GPUs are free. CPU threads per run default to
    cores / max_parallel so parallel runs do not oversubscribe the machine. Each run is claimed (sweeps/claims.py)
    just before it starts and released when it ends; Ctrl-C, SIGTERM and SIGHUP stop the running jobs (and wait
    until they are gone) before the interrupt propagates."""
    if max_parallel < 1:
        raise ValueError(f"max_parallel must be >= 1, got {max_parallel}")
    devices = detect_devices() if devices is None else list(devices)
    needs = dict(zip((r.run_id for r in runs), _gpu_plan(runs, devices, max_parallel, runs_per_gpu, log)))
    pool = GpuPool(devices, runs_per_gpu)
    cores = len(os.sched_getaffinity(0))
    # threads follow the runs (sweeps/throughput.py) unless the sweep fixed them; not for DDP or GPU runs
    elastic = {r.run_id for r in runs if not r.training.get("threads") and (r.resources.get("tasks_per_node") or 1) == 1
               and not needs[r.run_id]}
    queue = [_with_threads(r, max(1, cores // (max_parallel * (r.resources.get("tasks_per_node") or 1))))
             for r in runs]
    queue.sort(key=lambda r: -r.flops)  # largest first: the last runs to finish are the short ones
    throughput = Throughput(budget=cores)
    outcome, active = {}, {}
    claims: dict[str, Claim] = {}
    t_start = last_beat = time.time()
    # LocalExecutor itself, not AutoExecutor(cluster="local"): only it takes `visible_gpus`
    executor = submitit.LocalExecutor(folder=submitit_folder(sweep_dir))
    n = len(queue)
    try:
        with signals_interrupt():
            while queue or active:
                while queue and len(active) < max_parallel:
                    gpus = pool.acquire(needs[queue[0].run_id])
                    if gpus is None:
                        break  # wait for a running job to free its GPUs
                    run = queue.pop(0)
                    kept, held = claim_runs([run], sweep_dir, log)
                    if not kept:
                        pool.release(gpus)
                        outcome[run.run_id] = "skipped"
                        continue
                    claims[run.run_id] = held[0]
                    _give_threads(run, run.training["threads"])
                    res = run.resources
                    executor.update_parameters(timeout_min=res.get("timeout_min") or DEFAULT_TIMEOUT_MIN,
                                               tasks_per_node=res.get("tasks_per_node") or 1,
                                               **submitit_gpu_parameters(gpus))
                    try:
                        job = executor.submit(TrainJob(run))
                    except BaseException:
                        pool.release(gpus)
                        raise
                    proc = ProcessId.of(int(job.job_id))
                    record(sweep_dir, [JournalEntry(run.run_id, job.job_id, "local", str(job.paths.folder), now(),
                                                    proc.host, proc.boot_id, proc.start_ticks)])
                    active[job.job_id] = (run, job, time.time(), gpus, proc)
                    base = last_step(run.run_dir) or 0  # a resumed run: only the steps left count
                    throughput.start(run, run.training["threads"], time.time(), base)
                    where = f"GPU {','.join(gpus)}" if gpus else "CPU"
                    log(f"  start   {run.run_id}  ({run.steps} steps, {run.flops:.2e} FLOPs; {where})")
                if not active and not queue:
                    break
                time.sleep(poll_s)
                for job_id in [j for j, (_, job, *_) in active.items() if job.done()]:
                    run, job, t0, gpus, _ = active.pop(job_id)
                    pool.release(gpus)
                    claims.pop(run.run_id).release()
                    try:
                        result = job.results()[0]  # rank 0's (a multi-task job returns one per task)
                        status = result.get("status", "failed")
                        detail = (f"val_loss {result['val_loss']:.4f}" if result.get("val_loss") is not None
                                  else result.get("error", ""))
                        detail += f" on {result['device']}" if result.get("device") else ""
                    except Exception as e:  # the run raised; result.json (if any) holds the traceback
                        # submitit's message holds the traceback: its last line is the exception that ended the job
                        status, detail = "failed", last_line(str(e)) or repr(e)
                    outcome[run.run_id] = status
                    throughput.finish(run.run_id, time.time())
                    if not queue:
                        _rebalance(active, elastic, cores, throughput, log)
                    _measure(active, throughput)
                    elapsed = time.time() - t_start
                    log(f"[{len(outcome)}/{n}] {status:8s} {run.run_id}  {detail}  ({_fmt_s(time.time() - t0)}; "
                        f"elapsed {_fmt_s(elapsed)}, ETA {_eta(throughput, queue)})")
                if active and time.time() - last_beat >= heartbeat_s:
                    last_beat = time.time()
                    parts = [f"{run.run_id}: step {last_step(run.run_dir) or 0}/{run.steps}"
                             for run, *_ in active.values()]
                    _measure(active, throughput)
                    log(f"  ... {'; '.join(parts)}  (elapsed {_fmt_s(time.time() - t_start)}, "
                        f"ETA {_eta(throughput, queue)})")
    except KeyboardInterrupt as e:
        by = f" by {e.signum and signal.Signals(e.signum).name}" if isinstance(e, LauncherSignal) else ""
        entries = list(active.values())
        gone = stop([x[-1] for x in entries], grace_s=stop_grace_s)
        stopped = [x[0].run_id for x, ok in zip(entries, gone) if ok]
        alive = [f"{x[0].run_id} (pid {x[-1].pid})" for x, ok in zip(entries, gone) if not ok]
        log(f"interrupted{by}: stopped {len(stopped)} running job(s)"
            + (f"; STILL RUNNING: {', '.join(alive)}" if alive else "")
            + "; re-launch to resume them from their checkpoints")
        raise
    finally:
        for claim in claims.values():
            claim.release()
    return outcome


def _give_threads(run: RunSpec, threads: int) -> None:
    """Write the run's `threads` file: the trainer takes it at its next log step (Trainer.retune_threads)."""
    from simplicial.checkpoint import atomic_path

    with atomic_path(run.paths.threads) as tmp:
        tmp.write_text(f"{int(threads)}\n")


def _rebalance(active: dict, elastic: set, cores: int, throughput: Throughput, log) -> None:
    """The queue is empty: share the threads the fixed runs do not hold among the running elastic ones."""
    now = time.time()
    fixed = sum(throughput.clocks[run.run_id].threads for run, *_ in active.values() if run.run_id not in elastic)
    left = {run.run_id: throughput.left_tokens(run.run_id) for run, *_ in active.values() if run.run_id in elastic}
    runs = {run.run_id: run for run, *_ in active.values()}
    for run_id, threads in share_threads(cores - fixed, left).items():
        if threads != throughput.clocks[run_id].threads:
            _give_threads(runs[run_id], threads)
            throughput.set_threads(run_id, threads, now)
            log(f"  threads {run_id}: {threads} (the queue is empty: freed cores go to the runs still going)")


def _measure(active: dict, throughput: Throughput) -> None:
    """The running runs' progress from their metrics (the last logged step)."""
    for run, *_ in active.values():
        step = last_step(run.run_dir)
        if step is not None:
            throughput.progress(run.run_id, step * run.training["batch_tokens"], time.time())


def _eta(throughput: Throughput, queue: list[RunSpec]) -> str:
    eta = throughput.eta(queue, time.time())
    return "? (no run has logged a step yet)" if eta is None else _fmt_s(eta)


def run_debug(runs: list[RunSpec], sweep_dir: Path, log=print) -> dict[str, str]:
    """Each run in this process, one after another (submitit's DebugExecutor: exceptions open pdb when asked)."""
    executor = submitit.AutoExecutor(folder=submitit_folder(sweep_dir), cluster="debug")
    outcome = {}
    for i, run in enumerate(runs, 1):
        kept, claims = claim_runs([run], sweep_dir, log)
        if not kept:
            outcome[run.run_id] = "skipped"
            continue
        run.paths.threads.unlink(missing_ok=True)  # in this process: a local launch's thread file is not ours
        try:
            job = executor.submit(TrainJob(run))
            result = job.result()
        finally:
            claims[0].release()
        outcome[run.run_id] = result.get("status", "failed")
        log(f"[{i}/{len(runs)}] {outcome[run.run_id]:8s} {run.run_id}")
    return outcome


def cancel_jobs(entries: list[JournalEntry], grace_s: float = 20.0) -> tuple[list[str], list[str]]:
    """Cancel journaled jobs; returns (job ids cancelled, "id: why not" for the others).

    SLURM jobs: scancel (cancelled once scancel accepts them; the job's signal handling is SLURM's). Local jobs: a
    process whose recorded identity (host, boot, start time) still matches is stopped and waited for (procs.stop);
    one that cannot be identified is never signalled: its pid may belong to another process by now."""
    cancelled, refused = [], []
    slurm_ids = [e.job_id for e in entries if e.executor == "slurm"]
    if slurm_ids:
        try:
            out = subprocess.run(["scancel", *slurm_ids], check=False, capture_output=True, text=True, timeout=60)
            ok, why = out.returncode == 0, (out.stderr or out.stdout).strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            ok, why = False, str(e)
        if ok:
            cancelled += slurm_ids
        else:
            refused += [f"{j}: scancel failed ({why})" for j in slurm_ids]
    local = [e for e in entries if e.executor == "local"]
    procs = [e.process for e in local]
    known = [(e, p) for e, p in zip(local, procs) if p is not None]
    for e, p in zip(local, procs):
        if p is None:
            refused.append(f"{e.job_id}: journaled without the process's identity (an older launcher); not signalled")
    for (e, p), gone in zip(known, stop([p for _, p in known], grace_s=grace_s)):
        if gone:
            cancelled.append(e.job_id)
        elif p.alive() is None:
            refused.append(f"{e.job_id}: a process on host {p.host}; cancel it there")
        elif p.alive():
            refused.append(f"{e.job_id}: still running after SIGINT and SIGKILL")
        else:
            refused.append(f"{e.job_id}: had already ended")
    return cancelled, refused


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use launch.py")
