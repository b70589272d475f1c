"""Comparing exponents between two architectures, with bootstrap intervals.

The i-th resample of group A is set against the i-th resample of group B; the difference B - A and the ratio B / A
of alpha, beta and a = beta/(alpha+beta) get percentile intervals. With the wild cluster bootstrap (fitting.pipeline,
resample "cells") the i-th resamples of both groups use one weight per (size, seed) cell, so the comparison is paired
by grid cell; with the case bootstrap over runs they are independent (unpaired). No fraction of resamples is
reported: a bootstrap fraction is not the probability that B > A (under a null it is often near 0 or 1).
``paired_comparison`` (case bootstrap only, tables without a size column): runs of A and B at the same (N, D)
within a tolerance are matched and matched PAIRS are resampled.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import bootstrap as bs
from .chinchilla import fit_approach3
from .varpro import fit_varpro

COMPARED = ("alpha", "beta", "a")


def compare_samples(point_a: dict, point_b: dict, samples_a: np.ndarray | None, samples_b: np.ndarray | None,
                    level: float = 0.95) -> dict:
    """{"alpha": {"diff", "ci", "ratio", "ratio_ci", "n", "n_dropped"}, ...} for B - A (None where undefined);
    ``n`` resample pairs in which both fits converged, ``n_dropped`` the others."""
    out = {}
    da = bs.derived_samples(samples_a) if samples_a is not None else None
    db = bs.derived_samples(samples_b) if samples_b is not None else None
    for k in COMPARED:
        pa, pb = point_a.get(k), point_b.get(k)
        entry = {"diff": None, "ci": None, "ratio": None, "ratio_ci": None, "n": 0, "n_dropped": 0}
        if pa is None or pb is None or not (np.isfinite(pa) and np.isfinite(pb)):
            out[k] = entry
            continue
        entry["diff"] = float(pb - pa)
        entry["ratio"] = float(pb / pa) if pa != 0 else None
        if da is not None and db is not None:
            m = min(len(da[k]), len(db[k]))
            sa, sb = da[k][:m], db[k][:m]
            ok = np.isfinite(sa) & np.isfinite(sb)
            d = sb[ok] - sa[ok]
            entry["n"] = int(ok.sum())
            entry["n_dropped"] = int(m - ok.sum())
            entry["ci"] = bs.percentile_ci(d, level)
            with np.errstate(all="ignore"):
                entry["ratio_ci"] = bs.percentile_ci(sb[ok] / sa[ok], level)
        out[k] = entry
    return out


def match_pairs(a: pd.DataFrame, b: pd.DataFrame, rel_tol: float = 0.01) -> list[tuple[int, int]]:
    """Positional index pairs (i in a, j in b) with N and D equal within rel_tol; each run used once."""
    la, lb = np.log(a[["N", "D"]].to_numpy(float)), np.log(b[["N", "D"]].to_numpy(float))
    used, pairs = set(), []
    for i, row in enumerate(la):
        d = np.abs(lb - row).max(axis=1)
        for j in np.argsort(d):
            if d[j] > np.log1p(rel_tol):
                break
            if j not in used:
                used.add(int(j))
                pairs.append((i, int(j)))
                break
    return pairs


def paired_comparison(a: pd.DataFrame, b: pd.DataFrame, *, method: str = "approach3", n_boot: int = 200, seed=0,
                      level: float = 0.95, rel_tol: float = 0.01, jobs=None, **fitkw) -> dict:
    """Refit both groups on their matched runs, resampling matched pairs together; B - A as ``compare_samples``."""
    pairs = match_pairs(a, b, rel_tol)
    out = {"n_pairs": len(pairs), "rel_tol": rel_tol}
    ia = [i for i, _ in pairs]
    ib = [j for _, j in pairs]
    sa, sb = a.iloc[ia], b.iloc[ib]
    from .data import insufficiency  # local: data imports nothing from here, but keep the dependency visible
    reason = insufficiency(sa) or insufficiency(sb)
    if reason:
        out.update(status="not enough matched runs", reason=f"matched runs: {reason}")
        return out
    fit = fit_approach3 if method == "approach3" else fit_varpro
    kw = {k: v for k, v in fitkw.items() if method == "approach3" or k == "delta"}
    fa = fit(sa["N"].values, sa["D"].values, sa["L"].values, **kw)
    fb = fit(sb["N"].values, sb["D"].values, sb["L"].values, **kw)
    samples_a = samples_b = None
    if n_boot > 0:
        counts = bs.resample_counts(len(pairs), n_boot, seed)  # one draw of pairs for both groups
        bkw = {k: v for k, v in fitkw.items() if k in ("delta", "starts", "bound_e")}
        ba = bs.bootstrap(sa["N"].values, sa["D"].values, sa["L"].values, fa, counts=counts, method=method,
                          jobs=jobs, **bkw)
        bb = bs.bootstrap(sb["N"].values, sb["D"].values, sb["L"].values, fb, counts=counts, method=method,
                          jobs=jobs, **bkw)
        samples_a, samples_b = ba.samples, bb.samples
    out.update(status="ok", converged=bool(fa.success and fb.success),
               **compare_samples(fa.params, fb.params, samples_a, samples_b, level))
    return out
