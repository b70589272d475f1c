"""Sweep specs, grid expansion, submission and collection: the orchestration half of simplex-scaling.

`SweepSpec`, `load_sweep` and `parse_sweep` need only PyYAML; `RunSpec` and `expand` (model shapes and FLOP counts)
import torch, so they load on first use: `python -m reports SWEEP.yaml` reads a sweep file without torch.
"""

from sweeps.spec import SweepError, SweepSpec, load_sweep, parse_sweep

__all__ = ["SweepError", "SweepSpec", "load_sweep", "parse_sweep", "RunSpec", "expand"]


def __getattr__(name: str):
    if name in ("RunSpec", "expand"):
        from sweeps import grid

        return getattr(grid, name)
    raise AttributeError(f"module 'sweeps' has no attribute {name!r}")
