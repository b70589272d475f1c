"""Fit every group of a results table, bootstrap it, and compare groups: the fits.json document (docs/DESIGN.md)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from . import bootstrap as bs
from .chinchilla import DEFAULT_DELTA, ConvergenceWarning, fit_approach3
from .compare import compare_samples, paired_comparison
from .data import FittingInputError, RunTable, insufficiency, read_table
from .varpro import fit_varpro

METHODS = ("approach3", "varpro")


def _methods(method: str) -> list[str]:
    if method == "both":
        return list(METHODS)
    if method in METHODS:
        return [method]
    raise ValueError(f"unknown method {method!r}; expected approach3, varpro or both")


def _fit_one(method: str, sub: pd.DataFrame, *, delta, starts, bound_e):
    N, D, L = sub["N"].values, sub["D"].values, sub["L"].values
    if method == "approach3":
        return fit_approach3(N, D, L, delta=delta, starts=starts, bound_e=bound_e, warn=False)
    return fit_varpro(N, D, L, delta=delta)


def _method_entry(res, sub, method, *, n_boot, seed, level, delta, starts, bound_e, jobs, compute_budgets,
                  predict):
    entry = res.to_json()
    entry.update(bs.derived_point(res.params, compute_budgets, predict))
    entry["derived"] = {k: v for k, v in bs.derived_point(res.params, compute_budgets, predict).items()
                        if k not in bs.SAMPLE_NAMES and k != "a"}
    samples = None
    if n_boot > 0:
        b = bs.bootstrap(sub["N"].values, sub["D"].values, sub["L"].values, res, n_boot=n_boot, seed=seed,
                         method=method, delta=delta, starts=starts, bound_e=bound_e, jobs=jobs)
        samples = b.samples
        good = samples[b.converged_mask]
        entry["ci"] = {k: bs.percentile_ci(v, level)
                       for k, v in bs.derived_samples(good, compute_budgets, predict).items()}
        entry["bootstrap"] = {"n": b.n, "n_converged": b.n_converged, "n_skipped_unidentifiable": b.n_skipped,
                              "level": level, "samples": good.tolist()}
    else:
        entry["ci"] = {}
        entry["bootstrap"] = {"n": 0, "n_converged": 0, "n_skipped_unidentifiable": 0, "level": level,
                              "samples": []}
    return entry, samples


def fit_groups(table: RunTable | pd.DataFrame, *, method: str = "both", n_boot: int = 200, seed: int = 0,
               level: float = 0.95, delta: float = DEFAULT_DELTA, starts="published", bound_e: bool = False,
               compute_budgets=(), predict=(), jobs: int | None = None, on_insufficient: str = "error",
               compare: list[tuple[str, str]] | None = None, pair_tol: float = 0.01, meta: dict | None = None) -> dict:
    """Fit each group; returns the fits.json document (plain Python, NaN already replaced by None).

    ``table``: a ``RunTable``, a DataFrame with columns N, D, L, group, or a raw results table (columns params,
    tokens, loss, arch, status; read with ``read_table`` defaults). ``on_insufficient="error"`` raises
    ``FittingInputError`` for a group with fewer runs than parameters or one N / one D only; ``"mark"`` records it
    with ``status: "not enough runs"`` and a ``reason`` (what the report uses). ``compare``: (A, B) pairs,
    reported as "B - A"; by default every other group against the first (sorted).
    """
    if isinstance(table, RunTable):
        df = table.df
    elif {"N", "D", "L", "group"} <= set(table.columns):
        df = table
    else:  # a raw results table (docs/DESIGN.md columns): validate it as the CLI does
        df = read_table(table).df
    if on_insufficient not in ("error", "mark"):
        raise ValueError(f"on_insufficient must be 'error' or 'mark', got {on_insufficient!r}")
    methods = _methods(method)
    primary = "varpro" if method == "varpro" else "approach3"
    groups = sorted(df["group"].astype(str).unique())
    reasons = {g: insufficiency(df[df["group"].astype(str) == g]) for g in groups}
    if on_insufficient == "error":
        for g, r in reasons.items():
            if r:
                raise FittingInputError(f"group {g!r}: {r}")
    seeds = np.random.SeedSequence(seed).spawn(len(groups))  # independent resamples per group
    fits, samples, notes = {}, {}, []
    for g, ss in zip(groups, seeds):
        sub = df[df["group"].astype(str) == g]
        if reasons[g]:
            fits[g] = {k: None for k in bs.SAMPLE_NAMES + ("a",)}
            fits[g].update(converged=False, n_runs=int(len(sub)), method=primary, ci={}, methods={},
                           bootstrap={"n": 0, "n_converged": 0, "samples": []}, status="not enough runs",
                           reason=reasons[g])
            notes.append(f"group {g!r}: not enough runs ({reasons[g]})")
            continue
        grp_seed = int(ss.generate_state(1)[0])
        entries = {}
        for m in methods:
            res = _fit_one(m, sub, delta=delta, starts=starts, bound_e=bound_e)
            if not res.success:
                msg = f"group {g!r}, {m}: best fit did not converge: {res.message}"
                notes.append("WARNING " + msg)
                warnings.warn(msg, ConvergenceWarning, stacklevel=2)
            entries[m], samples[(g, m)] = _method_entry(
                res, sub, m, n_boot=n_boot, seed=grp_seed, level=level, delta=delta, starts=starts,
                bound_e=bound_e, jobs=jobs, compute_budgets=compute_budgets, predict=predict)
        top = dict(entries[primary])
        top.update(methods=entries, status="ok", reason=None)
        if len(entries) == 2:
            top["methods_agree"] = _agreement(entries["approach3"], entries["varpro"])
        fits[g] = top
    ok_groups = [g for g in groups if fits[g]["status"] == "ok"]
    if compare is None:
        compare = [(groups[0], g) for g in groups[1:]] if groups else []
    comparison, paired = {}, {}
    for a, b in compare:
        for g in (a, b):
            if g not in fits:
                raise FittingInputError(f"--compare: group {g!r} not in the table; groups are {groups}")
        key = f"{b} - {a}"
        if a not in ok_groups or b not in ok_groups:
            comparison[key] = {"status": "not enough runs", "reason": "one of the groups could not be fitted"}
            continue
        comparison[key] = compare_samples(fits[a], fits[b], samples.get((a, primary)), samples.get((b, primary)),
                                          level)
        sub_a = df[df["group"].astype(str) == a]
        sub_b = df[df["group"].astype(str) == b]
        paired[key] = paired_comparison(sub_a, sub_b, method=primary, n_boot=n_boot, seed=seed, level=level,
                                        rel_tol=pair_tol, jobs=jobs, delta=delta, starts=starts, bound_e=bound_e)
    doc = {"meta": dict(meta or {}, method=method, bootstrap=n_boot, seed=seed, level=level, delta=delta,
                        bound_e=bound_e, starts=starts if isinstance(starts, str) else "custom",
                        n_runs=int(len(df)), groups=groups, primary_method=primary,
                        compute_budgets=list(compute_budgets), predict=[list(p) for p in predict]),
           "fits": fits, "comparison": comparison, "comparison_paired": paired, "notes": notes}
    return clean_json(doc)


def _agreement(a3: dict, vp: dict) -> dict:
    """Per parameter: the difference varpro - approach3 and whether each point lies in the other's CI."""
    out = {}
    for k in bs.SAMPLE_NAMES + ("a",):
        x, y = a3.get(k), vp.get(k)
        ca, cv = a3["ci"].get(k), vp["ci"].get(k)
        ok = None
        if None not in (x, y) and ca and cv:
            ok = bool(ca[0] <= y <= ca[1] and cv[0] <= x <= cv[1])
        out[k] = {"diff": None if None in (x, y) else y - x, "within_cis": ok}
    return out


def clean_json(obj):
    """Recursively make obj JSON-safe: numpy scalars/arrays -> Python, NaN/inf -> None."""
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean_json(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj
