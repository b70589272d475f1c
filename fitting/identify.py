"""Whether a fit's exponents are identified by its data, as data: a list of reasons, empty when identified.

A converged optimiser says nothing about whether the data pin the parameters down. Four kinds of check:
- structural: the joint law has one exponent per axis, and an exponent is not determined by fewer than 3
  distinct values on its axis (2 values fit any exponent with a suitable scale and E); an exponent comparison
  needs at least ``MIN_SIZES_COMPARE`` distinct model sizes per architecture (one more than the three that
  E + A N^-alpha needs, so the comparison is not exactly determined by the model sizes);
- E at a boundary: E driven to 0 (or to min(loss) under --bound-e) means the curvature that separates E from
  the power laws is not in the data, and alpha, beta absorb it (Besiroglu et al. 2024 discuss the
  E-alpha trade-off of Approach 3);
- exponents outside the plausible range ``PLAUSIBLE_EXPONENT`` (decaying power laws of the magnitudes
  published for language models: Kaplan et al. 2020, Hoffmann et al. 2022);
- interval width: a resampling interval of alpha or beta wider than ``MAX_CI_WIDTH`` covers most of the
  plausible range, so the number is not a measurement;
- the data's direction: with A, B >= 0 and alpha, beta > 0 the law's loss falls with N at fixed D and with D at
  fixed N. Where the runs' loss rises along an axis in a good share of neighbouring cells (``rising``), the law
  cannot describe them whatever the optimiser returns: in the H100 pilot of studies/dot-vs-simplicial-h100 the
  loss rose with N at fixed D because the larger models took fewer optimizer steps.
"""
from __future__ import annotations

import numpy as np

MIN_DISTINCT = 3
MIN_SIZES_COMPARE = 4
PLAUSIBLE_EXPONENT = (0.02, 2.0)
MAX_CI_WIDTH = 0.5
E_FLOOR = 0.01  # E below 1% of the smallest loss is at its lower boundary
E_ZERO_SHARE = 0.25  # ... and so is an E that reaches that floor in a quarter of the resamples
# A rise of the mean log loss from one cell to its neighbour along an axis counts when above RISE (2%, twice the
# 1% run-to-run noise the design analysis assumes); the axis is flagged when RISING_SHARE of its neighbouring pairs
# rise, and at least two do.
RISE = 0.02
RISING_SHARE = 1 / 3
# A comparison whose interval rests on fewer converged resample pairs is not given a verdict: the resamples
# that fail are not a random tenth (they are the ones pushed to a boundary), so the rest understate the spread.
MIN_CONVERGED_SHARE = 0.9


def structural(N, D) -> list[str]:
    """Reasons from the grid alone (no fit needed)."""
    out = []
    n_N, n_D = len(np.unique(np.asarray(N, float))), len(np.unique(np.asarray(D, float)))
    if n_N < MIN_DISTINCT:
        out.append(f"{n_N} distinct model size(s): alpha needs at least {MIN_DISTINCT}")
    if n_D < MIN_DISTINCT:
        out.append(f"{n_D} distinct token budget(s): beta needs at least {MIN_DISTINCT}")
    return out


def _same(values: np.ndarray, rel: float = 0.02) -> np.ndarray:
    """Labels that put values within `rel` of their sorted neighbour together (token budgets trained in whole
    batches differ by a fraction of a percent between sizes)."""
    order = np.argsort(values)
    labels = np.empty(len(values), int)
    label, prev = 0, None
    for i in order:
        if prev is not None and values[i] > prev * (1 + rel):
            label += 1
        labels[i], prev = label, values[i]
    return labels


def rising(N, D, L) -> list[str]:
    """Reasons where the loss rises with N at fixed D or with D at fixed N (see the module docstring): the mean
    log loss of each (N, D) cell against its neighbour along the axis, the other axis held within 2%."""
    N, D, logL = np.asarray(N, float), np.asarray(D, float), np.log(np.asarray(L, float))
    out = []
    for axis, held, name, other in ((N, D, "N", "D"), (D, N, "D", "N")):
        groups = _same(held)
        rises, n_pairs = [], 0
        for g in np.unique(groups):
            at = groups == g
            xs = np.unique(axis[at])
            means = [logL[at & (axis == x)].mean() for x in xs]
            for a, b in zip(means, means[1:]):
                n_pairs += 1
                if b - a > RISE:
                    rises.append(b - a)
        if len(rises) >= 2 and len(rises) >= RISING_SHARE * n_pairs:
            out.append(f"the loss rises with {name} at fixed {other} in {len(rises)} of {n_pairs} neighbouring pairs "
                       f"(by up to {np.expm1(max(rises)):.0%}), where L(N, D) can only fall: the runs measure "
                       f"something the law does not describe (for one, too few optimizer steps for the larger "
                       f"models)")
    return out


def check_fit(N, D, L, fit: dict, ci: dict | None = None, samples: np.ndarray | None = None, *,
              bound_e: bool = False, level: float = 0.95) -> list[str]:
    """Every reason the fit ``fit`` (a fits.json entry: E, alpha, beta, converged) is not identified."""
    out = structural(N, D) + rising(N, D, L)
    if not fit.get("converged", False):
        out.append("the fit did not converge")
    Lmin = float(np.min(L))
    E = fit.get("E")
    if E is not None:
        if E < E_FLOOR * Lmin:
            out.append(f"E = {E:.3g} is at its lower boundary 0: the data do not separate E from the power laws")
        elif bound_e and E >= 0.999 * Lmin:
            out.append(f"E = {E:.4g} is at its upper bound min(loss) = {Lmin:.4g}")
    if samples is not None and len(samples):
        share = float(np.mean(samples[:, 0] < E_FLOOR * Lmin))
        if share >= E_ZERO_SHARE and not (E is not None and E < E_FLOOR * Lmin):
            out.append(f"E reaches 0 in {share:.0%} of the resamples")
    lo, hi = PLAUSIBLE_EXPONENT
    for k in ("alpha", "beta"):
        v = fit.get(k)
        if v is None or not np.isfinite(v):
            out.append(f"{k} has no value")
        elif not lo <= v <= hi:
            out.append(f"{k} = {v:.3g} is outside the plausible range [{lo}, {hi}]")
        c = (ci or {}).get(k)
        if c is not None and c[1] - c[0] > MAX_CI_WIDTH:
            out.append(f"the {level:.0%} interval of {k} is {c[1] - c[0]:.2f} wide (> {MAX_CI_WIDTH})")
    return out


def comparison_reasons(groups: dict) -> list[str]:
    """Why an exponent comparison between groups ({name: (N array, identified, reasons)}) is not identified."""
    out = []
    for g, (N, identified, _reasons) in groups.items():
        n = len(np.unique(np.asarray(N, float)))
        if n < MIN_SIZES_COMPARE:
            out.append(f"{g}: {n} distinct model sizes; comparing exponents needs at least {MIN_SIZES_COMPARE}")
        if not identified:
            out.append(f"{g}: fit not identified")
    return out


def verdict(ci, level: float, reasons: list[str]) -> str:
    """'not identified', 'larger' (interval above 0), 'smaller' (below 0) or 'not resolved'."""
    if reasons:
        return "not identified"
    if ci is None:
        return "not resolved"
    if ci[0] > 0:
        return "larger"
    if ci[1] < 0:
        return "smaller"
    return "not resolved"
