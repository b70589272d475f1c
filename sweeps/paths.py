"""The files of a run folder, named in one place: `RunPaths(run_dir)` (`RunSpec.paths`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunPaths:
    """`<output_root>/<sweep>/runs/<run_id>/` and what lives there (docs/DESIGN.md "Run folder")."""

    root: Path

    @property
    def config(self) -> Path:  # the resolved RunSpec
        return self.root / "config.json"

    @property
    def metrics(self) -> Path:  # the loss curve, one JSON row per logged step
        return self.root / "metrics.jsonl"

    @property
    def checkpoint(self) -> Path:  # the latest checkpoint; the one before it is checkpoint.prev.pt
        return self.root / "checkpoint.pt"

    @property
    def result(self) -> Path:  # written last: the run's outcome
        return self.root / "result.json"

    @property
    def claim(self) -> Path:  # locked by the launcher that starts the run (sweeps/claims.py)
        return self.root / "claim.lock"

    @property
    def threads(self) -> Path:  # CPU threads the local launcher gives the run now; the trainer re-reads it
        return self.root / "threads"
