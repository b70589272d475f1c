"""Sweep specs, grid expansion, submission and collection: the orchestration half of simplex-scaling."""

from sweeps.spec import SweepError, SweepSpec, load_sweep, parse_sweep
from sweeps.grid import RunSpec, expand

__all__ = ["SweepError", "SweepSpec", "load_sweep", "parse_sweep", "RunSpec", "expand"]
