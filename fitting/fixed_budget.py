"""Fixed-budget forms: L(N) at each token budget D, and L(D) at each model size N.

Two fits per slice (x = N at fixed D, or x = D at fixed N):
- nonlinear L(x) = E' + A' x^-alpha': for each alpha' on a grid the pair (E', A') >= 0 is solved in closed form by
  least squares on relative residuals, then alpha' is refined by a bounded scalar search (variable projection in
  one dimension; exactly determined with 3 points, so ``converged`` only says the search ended inside its range);
- log-linear -log L = alpha log x + beta, the form of the 2-simplicial paper, with R^2 and a t interval of the
  slope (``ci``). That slope is a LOCAL slope: at fixed D, d log L / d log N = -alpha A N^-alpha / L, which shrinks
  as E dominates, so between architectures it can move opposite to the joint fit's alpha.
Token budgets of different runs that differ by less than ``rel_tol`` (default 2%) are one budget: token counts are
whole numbers of batches, so "the same D" can differ slightly between model sizes.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from ._threads import single_blas_thread
from .result import STATUS_MESSAGES

ALPHA_GRID = np.linspace(0.005, 3.0, 600)  # decaying power laws only; a fit at an end of the range is flagged


def cluster(values, rel_tol: float = 0.02) -> np.ndarray:
    """Label values so that sorted neighbours within rel_tol (in log) share a label."""
    v = np.log(np.asarray(values, dtype=float))
    order = np.argsort(v)
    labels = np.empty(len(v), dtype=int)
    lab, prev = 0, None
    for i in order:
        if prev is not None and v[i] - prev > np.log1p(rel_tol):
            lab += 1
        labels[i] = lab
        prev = v[i]
    return labels


def _profile(alpha: float, x: np.ndarray, L: np.ndarray):
    """Non-negative (E', A') minimising sum ((E' + A' x^-alpha)/L - 1)^2, and that sum."""
    f = x ** -alpha
    Xw = np.column_stack([1.0 / L, f / L])
    best = (np.inf, 0.0, 0.0)
    sol, *_ = np.linalg.lstsq(Xw, np.ones_like(L), rcond=None)
    cands = [sol] if (sol >= 0).all() else []
    # Otherwise the optimum lies on a face: A' = 0 or E' = 0, each a one-variable least-squares problem.
    cands += [np.array([(1 / L).sum() / (1 / L**2).sum(), 0.0]), np.array([0.0, (f / L).sum() / ((f / L) ** 2).sum()])]
    for E, A in cands:
        r = (E + A * f) / L - 1.0
        s = float(r @ r)
        if s < best[0]:
            best = (s, float(E), float(A))
    return best


def slope_ci(lx: np.ndarray, y: np.ndarray, slope: float, level: float = 0.95):
    """Student-t interval of a least-squares slope (n - 2 degrees of freedom); None with fewer than 3 points.

    At fixed D the runs are different model sizes (or seeds), whose errors are independent; at fixed N they share
    their size's error, which moves every point together and so cancels in the slope (it is the intercept's)."""
    from scipy.stats import t

    n = len(lx)
    if n < 3 or len(np.unique(lx)) < 2:
        return None
    resid = y - (slope * lx + (y.mean() - slope * lx.mean()))
    sxx = float(((lx - lx.mean()) ** 2).sum())
    se = float(np.sqrt((resid @ resid) / (n - 2) / sxx))
    q = float(t.ppf((1 + level) / 2, n - 2))
    return [float(slope - q * se), float(slope + q * se)]


def slope_difference(s0, ci0, s1, ci1):
    """(s1 - s0, its interval or None) for two local slopes of different runs (two architectures' sizes or budgets):
    the half-widths add in quadrature, as for independent estimates. Runs of one seed share their batches across
    architectures, which correlates the slopes positively and makes this interval wider than it needs to be; its
    coverage on the H100 study's grid is measured in benchmarks/results/calibration-2026-12-07.md."""
    if s0 is None or s1 is None:
        return None, None
    d = float(s1 - s0)
    if not (ci0 and ci1):
        return d, None
    hw = math.hypot((ci0[1] - ci0[0]) / 2, (ci1[1] - ci1[0]) / 2)
    return d, [d - hw, d + hw]


def loglinear(x, L) -> dict | None:
    """The log-linear form -log L = alpha log x + beta of one slice: its local slope (alpha), intercept, R^2 and the
    slope's t interval; None with fewer than two distinct x."""
    x, L = np.asarray(x, dtype=float), np.asarray(L, dtype=float)
    if len(np.unique(x)) < 2:
        return None
    lx, y = np.log(x), -np.log(L)
    slope, intercept = np.polyfit(lx, y, 1)
    ss_res = float(((y - (slope * lx + intercept)) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return {"alpha": float(slope), "beta": float(intercept),
            "r2": (1.0 - ss_res / ss_tot) if ss_tot > 0 else None, "ci": slope_ci(lx, y, slope)}


def fit_power_law(x, L) -> dict:
    """L(x) = E' + A' x^-alpha' and the log-linear form for one slice; JSON-ready dict (None where undefined)."""
    x, L = np.asarray(x, dtype=float), np.asarray(L, dtype=float)
    out: dict = {"n_points": int(len(x)), "loglinear": loglinear(x, L)}
    if len(np.unique(x)) < 3:
        out.update(E=None, A=None, alpha=None, converged=False, objective=None,
                   message=f"{STATUS_MESSAGES[5]}: {len(np.unique(x))} distinct value(s), the nonlinear form has 3 parameters")
        return out
    vals = np.array([_profile(a, x, L)[0] for a in ALPHA_GRID])
    i = int(np.argmin(vals))
    lo, hi = ALPHA_GRID[max(i - 1, 0)], ALPHA_GRID[min(i + 1, len(ALPHA_GRID) - 1)]
    res = minimize_scalar(lambda a: _profile(a, x, L)[0], bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-10})
    alpha = float(res.x)
    s, E, A = _profile(alpha, x, L)
    at_edge = i in (0, len(ALPHA_GRID) - 1)
    ok = bool(res.success and not at_edge and np.isfinite(s))
    msg = STATUS_MESSAGES[0] if ok else (f"{STATUS_MESSAGES[4]} (alpha' at an end of [{ALPHA_GRID[0]}, {ALPHA_GRID[-1]}])"
                                         if at_edge else str(res.message))
    out.update(E=E, A=A, alpha=alpha, converged=ok, objective=s, message=msg)
    return out


def fixed_budget(df: pd.DataFrame, rel_tol: float = 0.02) -> dict:
    """fixed_budget.json (docs/DESIGN.md) from a table with columns N, D, L, group."""
    with single_blas_thread():
        return _fixed_budget(df, rel_tol)


def _fixed_budget(df: pd.DataFrame, rel_tol: float) -> dict:
    out: dict = {"fixed_tokens": {}, "fixed_params": {}}
    for g, sub in sorted(df.groupby("group"), key=lambda kv: str(kv[0])):
        rows_t, rows_p = [], []
        lab = cluster(sub["D"].values, rel_tol)
        for k in np.unique(lab):
            s = sub[lab == k]
            r = fit_power_law(s["N"].values, s["L"].values)
            rows_t.append({"tokens": float(np.exp(np.log(s["D"].values).mean())), **r})
        lab = cluster(sub["N"].values, rel_tol)
        for k in np.unique(lab):
            s = sub[lab == k]
            r = fit_power_law(s["D"].values, s["L"].values)
            r["B"], r["beta"] = r.pop("A"), r.pop("alpha")  # L(D) = E' + B' D^-beta'
            rows_p.append({"params": float(np.exp(np.log(s["N"].values).mean())), **r})
        out["fixed_tokens"][str(g)] = rows_t
        out["fixed_params"][str(g)] = rows_p
    return out
