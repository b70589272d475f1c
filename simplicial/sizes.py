"""The model-shape family used when a sweep gives a size as a target parameter count.

Family: head dimension 64 (32 below d_model 256), depth-to-width aspect ratio d_model = 64 * n_layers (Kaplan et
al. 2020 find loss flat over aspect ratios ~20-200; 64 is mid-range and keeps tiny models at least 1 layer deep),
d_model a multiple of the head dim. Among depths 1..64 we pick the shape whose non-embedding parameter count of the
DOT-PRODUCT architecture is closest (in log) to the target, so both architectures of a pair get the same shape;
the 2-simplicial model then has its extra K'/V' projections on top, and its own N is reported.
"""

from __future__ import annotations

import math
from dataclasses import replace

from simplicial.counting import param_counts
from simplicial.config import ModelConfig

ASPECT_RATIO = 64


def family_shape(n_layers: int) -> tuple[int, int, int]:
    d_model = ASPECT_RATIO * n_layers
    head_dim = 64 if d_model >= 256 else 32
    return n_layers, d_model, d_model // head_dim


def shape_for_params(target: float, base: ModelConfig) -> tuple[int, int, int]:
    """(n_layers, d_model, n_heads) of the family member closest to `target` non-embedding parameters."""
    if not target > 0:
        raise ValueError(f"target parameter count must be > 0, got {target}")
    lo, hi = (param_counts(replace(base, n_layers=L, d_model=d, n_heads=H, n_kv_heads=None, arch="dot"))
              ["params_non_embedding"] for L, d, H in (family_shape(1), family_shape(64)))
    if not lo / 2 <= target <= hi * 2:  # off the family's ends: the closest member would be no answer
        raise ValueError(f"{target:.3g} parameters is outside the shape family's range ({lo:.3g} to {hi:.3g}); "
                         "give an explicit shape (n_layers, d_model, n_heads)")
    best, best_err = None, math.inf
    for n_layers in range(1, 65):
        L, d, H = family_shape(n_layers)
        cfg = replace(base, n_layers=L, d_model=d, n_heads=H, n_kv_heads=None, arch="dot")
        err = abs(math.log(param_counts(cfg)["params_non_embedding"] / target))
        if err < best_err:
            best, best_err = (L, d, H), err
    return best
