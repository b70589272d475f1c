"""Sweep specs, grid expansion, submission and collection: the orchestration half of simplex-scaling.

None of these import torch (shapes and FLOP counts are plain arithmetic), so `python -m reports SWEEP.yaml` and the
analysis-only install read and expand a sweep without it; tests/test_install.py holds that.
"""

from sweeps.grid import RunSpec, expand
from sweeps.spec import SweepError, SweepSpec, load_sweep, parse_sweep

__all__ = ["SweepError", "SweepSpec", "load_sweep", "parse_sweep", "RunSpec", "expand"]
