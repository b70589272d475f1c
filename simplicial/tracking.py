"""Live training curves beside metrics.jsonl: TensorBoard event files and Weights & Biases, from a sweep's
`tracking:` section (sweeps.spec.TrackingSpec). The trainer's metrics writer (simplicial.train.MetricsLog) hands
every row it appends to each tracker here.

A tracker is keyed by the run id, and a resumed run (a SLURM requeue, or a re-launch after a crash) continues the
same tracked run instead of starting a second one:
- TensorBoard: one folder per run, `<run_dir>/tensorboard/`; the writer reopened at checkpoint step k purges the
  events after k that the interrupted process wrote (SummaryWriter's `purge_step`), as metrics.jsonl drops its rows
  after k, so the redone steps are not drawn twice.
- W&B: the W&B run id is derived from the run id and the run is opened with `resume="allow"`: the first start
  creates it, every later start appends to it. Online, W&B knows the last step logged and rows up to it are not sent
  again. Offline (clusters without network), each start writes `<wandb_dir>/wandb/offline-run-*-<id>/`, all with
  the same id; `wandb sync` uploads them into one run.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

WANDB_ID_MAX = 64  # W&B's limit on run ids


class Tracker:
    """What the metrics writer calls: `log(row)` for every metrics row (numbers keyed by name, `step` among them),
    `close(ok)` once at the end (ok False: the run failed or diverged)."""

    def log(self, row: dict) -> None:
        raise NotImplementedError

    def close(self, ok: bool = True) -> None:
        raise NotImplementedError


def _scalars(row: dict) -> dict[str, float]:
    return {k: float(v) for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


class TensorBoardTracker(Tracker):
    def __init__(self, log_dir: Path, resume_step: int):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: events at steps >= it, written before this restart, are hidden by TensorBoard's reader
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=resume_step + 1 if resume_step > 0 else None)

    def log(self, row: dict) -> None:
        for key, value in _scalars(row).items():
            self.writer.add_scalar(key, value, global_step=int(row["step"]))

    def close(self, ok: bool = True) -> None:
        self.writer.close()


def wandb_run_id(run_id: str) -> str:
    """The run id, or (over W&B's 64 characters) its head and a hash of the whole: stable, so a restart finds it."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)
    if len(safe) <= WANDB_ID_MAX and safe == run_id:
        return run_id
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:12]
    return f"{safe[:WANDB_ID_MAX - 13]}-{digest}"


class WandbTracker(Tracker):
    def __init__(self, run, settings: dict):
        import wandb

        folder = Path(settings.get("wandb_dir") or run.sweep_dir)
        if not folder.is_absolute():
            folder = Path(run.sweep_dir) / folder
        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=settings.get("wandb_project") or run.sweep, entity=settings.get("wandb_entity"),
            id=wandb_run_id(run.run_id), name=run.run_id, group=run.sweep, job_type=run.arch,
            tags=list(settings.get("wandb_tags") or []), config=run.to_dict(), dir=str(folder),
            mode=settings["wandb"], resume="allow",
            settings=wandb.Settings(console="off"))  # submitit already keeps stdout/stderr per job
        self.last_step = int(self.run.step or 0)  # online resume: the last step W&B holds; offline: 0

    def log(self, row: dict) -> None:
        step = int(row["step"])
        if step < self.last_step:  # logged before the restart (W&B steps only grow)
            return
        self.run.log(_scalars(row), step=step)
        self.last_step = step

    def close(self, ok: bool = True) -> None:
        import wandb

        self.run.finish(exit_code=0 if ok else 1)
        # finish() returns before W&B's service has written the offline log out (measured with wandb 0.31: the
        # .wandb file held only its header); teardown waits for the service, so the run is complete on disk when
        # the job ends or the next run of this process starts
        wandb.teardown()


def open_trackers(run, resume_step: int) -> list[Tracker]:
    """The trackers a run's `tracking` settings ask for (none by default), opened at `resume_step`."""
    settings = run.tracking or {}
    trackers: list[Tracker] = []
    if settings.get("tensorboard"):
        trackers.append(TensorBoardTracker(run.run_dir / "tensorboard", resume_step))
    if settings.get("wandb", "off") != "off":
        trackers.append(WandbTracker(run, settings))
    return trackers


def missing_packages(tracking: dict) -> list[str]:
    """Packages the settings need that this interpreter cannot import (checked by the launcher before any run)."""
    import importlib.util

    need = (["tensorboard"] if tracking.get("tensorboard") else []) + \
        (["wandb"] if tracking.get("wandb", "off") != "off" else [])
    return [name for name in need if importlib.util.find_spec(name) is None]
