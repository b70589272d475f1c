"""Fit every group of a results table, bootstrap it, and compare groups: the fits.json document (docs/DESIGN.md)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from . import bootstrap as bs
from . import design, identify
from .chinchilla import DEFAULT_DELTA, ConvergenceWarning, fit_approach3, log_law_jacobian, predict_loss
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


RESAMPLE = ("auto", "cells", "wild", "runs")
WIDENED = ("alpha", "beta", "a")  # the exponent-type quantities whose intervals take the small-sample t factor


def _entry(res, compute_budgets, predict) -> dict:
    entry = res.to_json()
    entry.update(bs.derived_point(res.params, compute_budgets, predict))
    entry["derived"] = {k: v for k, v in bs.derived_point(res.params, compute_budgets, predict).items()
                        if k not in bs.SAMPLE_NAMES and k != "a"}
    entry["ci"] = {}
    entry["bootstrap"] = {"n": 0, "n_converged": 0, "n_unconverged": 0, "n_skipped_unidentifiable": 0,
                          "samples": []}
    return entry


def _add_intervals(entry: dict, b, *, level, compute_budgets, predict, factor: float = 1.0) -> np.ndarray:
    """Percentile intervals of every reported quantity from resamples ``b``; exponents widened by ``factor``."""
    samples = b.samples
    good = samples[b.converged_mask]
    ci = {k: bs.percentile_ci(v, level) for k, v in bs.derived_samples(good, compute_budgets, predict).items()}
    for k in WIDENED:
        ci[k] = bs.widen(entry.get(k), ci.get(k), factor)
    entry["ci"] = ci
    entry["bootstrap"] = {"n": b.n, "n_converged": b.n_converged, "n_unconverged": b.n - b.n_converged - b.n_skipped,
                          "n_skipped_unidentifiable": b.n_skipped, "level": level, "t_factor": factor,
                          "samples": good.tolist()}
    return samples


def cell_labels(df: pd.DataFrame) -> pd.Series:
    """The error-sharing cell of each run: its size name and seed (runs of one size and seed share their
    initialisation and batch order, in every architecture)."""
    seed = df["seed"].astype(str) if "seed" in df.columns else pd.Series("0", index=df.index)
    return df["size"].astype(str) + "|seed " + seed


def resample_method(df: pd.DataFrame, resample: str) -> str:
    if resample not in RESAMPLE:
        raise FittingInputError(f"--resample must be one of {', '.join(RESAMPLE)}; got {resample!r}")
    if resample == "auto":
        return "cells" if "size" in df.columns else "runs"
    if resample in ("cells", "wild") and "size" not in df.columns:
        raise FittingInputError(f"--resample {resample} needs a 'size' column (a sweep's results table has one)")
    return resample


def method_text(kind: str, df: pd.DataFrame, n_boot: int) -> str:
    if kind == "runs":
        return f"case bootstrap over runs ({n_boot} resamples; runs treated as independent)"
    seeds = df["seed"].nunique() if "seed" in df.columns else 1
    unit = "(size, seed) cell" if seeds > 1 else "model size (one seed per size)"
    if kind == "wild":
        return (f"wild cluster bootstrap, one Webb weight per {unit} shared by the architectures "
                f"({n_boot} resamples, CR2-adjusted residuals)")
    return (f"parametric bootstrap on the fixed design: a shared error per {unit} and one per run, SDs estimated "
            f"from the residuals, paired across architectures by cell ({n_boot} resamples, t-widened)")


def _t_factor(df_: float, level: float) -> float:
    from scipy.stats import norm, t

    q = (1 + level) / 2
    return float(t.ppf(q, df_) / norm.ppf(q)) if np.isfinite(df_) and df_ > 0 else 1.0


def fit_groups(table: RunTable | pd.DataFrame, *, method: str = "both", n_boot: int = 200, seed: int = 0,
               level: float = 0.95, delta: float = DEFAULT_DELTA, starts="published", bound_e: bool = False,
               compute_budgets=(), predict=(), jobs: int | None = None, on_insufficient: str = "error",
               compare: list[tuple[str, str]] | None = None, pair_tol: float = 0.01, meta: dict | None = None,
               resample: str = "auto", effect: float = design.DEFAULT_EFFECT) -> dict:
    """Fit each group; returns the fits.json document (plain Python, NaN already replaced by None).

    ``table``: a ``RunTable``, a DataFrame with columns N, D, L, group, or a raw results table (columns params,
    tokens, loss, arch, status; read with ``read_table`` defaults). ``on_insufficient="error"`` raises
    ``FittingInputError`` for a group with fewer runs than parameters or one N / one D only; ``"mark"`` records it
    with ``status: "not enough runs"`` and a ``reason`` (what the report uses). ``compare``: (A, B) pairs,
    reported as "B - A"; by default every other group against the first (sorted). ``resample`` (docs/FITTING.md):
    "cells" (parametric bootstrap with per-(size, seed) and per-run errors, paired across groups by cell), "wild"
    (wild cluster bootstrap over cells), "runs" (case bootstrap over runs, the procedure of Hoffmann et al. and
    Epoch's replication), "auto" (cells when the table has a ``size`` column, else runs).
    """
    if not isinstance(table, RunTable) and not {"N", "D", "L", "group"} <= set(table.columns):
        table = read_table(table)  # a raw results table (docs/DESIGN.md columns): validated as the CLI does
    df = table.df if isinstance(table, RunTable) else table
    if on_insufficient not in ("error", "mark"):
        raise ValueError(f"on_insufficient must be 'error' or 'mark', got {on_insufficient!r}")
    if not delta > 0:
        raise FittingInputError(f"--delta (the Huber delta) must be > 0, got {delta}")
    kind = resample_method(df, resample)
    methods = _methods(method)
    primary = "varpro" if method == "varpro" else "approach3"
    groups = sorted(df["group"].astype(str).unique())
    reasons = {g: insufficiency(df[df["group"].astype(str) == g]) for g in groups}
    if on_insufficient == "error":
        for g, r in reasons.items():
            if r:
                raise FittingInputError(f"group {g!r}: {r}")
    seeds = np.random.SeedSequence(seed).spawn(len(groups))  # independent resamples per group
    fits, samples, full = {}, {}, {}
    notes = [n for n in table.notes if n.startswith("WARNING")] if isinstance(table, RunTable) else []
    subs = {g: df[df["group"].astype(str) == g] for g in groups}
    # pass 1: the fits
    for g in groups:
        sub = subs[g]
        if reasons[g]:
            fits[g] = {k: None for k in bs.SAMPLE_NAMES + ("a",)}
            fits[g].update(converged=False, n_runs=int(len(sub)), method=primary, ci={}, methods={},
                           bootstrap={"n": 0, "n_converged": 0, "samples": []}, status="not enough runs",
                           reason=reasons[g], identified=False, identifiability=[reasons[g]])
            notes.append(f"group {g!r}: not enough runs ({reasons[g]})")
            continue
        for m in methods:
            res = _fit_one(m, sub, delta=delta, starts=starts, bound_e=bound_e)
            if not res.success:
                msg = f"group {g!r}, {m}: best fit did not converge: {res.message}"
                notes.append("WARNING " + msg)
                warnings.warn(msg, ConvergenceWarning, stacklevel=2)
            full[(g, m)] = res
    ok_groups = [g for g in groups if not reasons[g]]
    # pass 2: the resamples
    cells = cell_index = comps = None
    factors = {g: 1.0 for g in groups}
    if kind in ("cells", "wild"):
        labels = cell_labels(df)
        cells = sorted(labels.unique())
        cell_index = pd.Series(np.searchsorted(cells, labels.values), index=df.index)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(len(groups) + 1)[-1])
    if n_boot > 0 and kind == "wild":
        weights = bs.cell_weights(len(cells), n_boot, rng)  # one draw for every group: pairs them by cell
    if n_boot > 0 and kind == "cells" and ok_groups:
        resid = {g: (np.log(subs[g]["L"].values) - bs.log_fitted(subs[g]["N"].values, subs[g]["D"].values,
                                                                  full[(g, primary)].x),
                     cell_index[subs[g].index].to_numpy()) for g in ok_groups}
        comps = bs.variance_components(resid)
        z_common = rng.standard_normal((n_boot, len(cells)))
        jac = {g: log_law_jacobian(full[(g, primary)].params, subs[g]["N"].values, subs[g]["D"].values)
               for g in ok_groups}
        for g in ok_groups:
            c = np.zeros(5)
            dfs = []
            for k in (3, 4):
                c[:] = 0
                c[k] = 1
                dfs.append(bs.satterthwaite_df([jac[g]], [resid[g][1]], comps, c))
            factors[g] = _t_factor(min(dfs), level)
    for g, ss in zip(groups, seeds):
        if reasons[g]:
            continue
        sub = subs[g]
        N, D, L = sub["N"].values, sub["D"].values, sub["L"].values
        grng = np.random.default_rng(ss)
        logY = None
        if n_boot > 0 and kind == "cells":
            logY = bs.parametric_losses(N, D, full[(g, primary)].x, cell_index[sub.index].to_numpy(), comps,
                                        z_common, grng.standard_normal((n_boot, len(cells))),
                                        grng.standard_normal((n_boot, len(sub))))
        entries = {}
        for m in methods:
            res = full[(g, m)]
            entries[m] = _entry(res, compute_budgets, predict)
            b = None
            if n_boot > 0 and kind == "runs":
                b = bs.bootstrap(N, D, L, res, n_boot=n_boot, seed=int(ss.generate_state(1)[0]), method=m,
                                 delta=delta, starts=starts, bound_e=bound_e, jobs=jobs)
            elif n_boot > 0:
                y = logY if kind == "cells" else bs.wild_cluster_losses(N, D, L, res.x,
                                                                        cell_index[sub.index].to_numpy(), weights)
                b = bs.refit_design(N, D, y, res, method=m, delta=delta, bound_e=bound_e, starts=starts)
            samples[(g, m)] = None
            if b is not None:
                samples[(g, m)] = _add_intervals(entries[m], b, level=level, compute_budgets=compute_budgets,
                                                 predict=predict, factor=factors[g])
            entries[m]["bootstrap"]["level"] = level
            why = identify.check_fit(N, D, L, entries[m], entries[m]["ci"], samples[(g, m)], bound_e=bound_e,
                                     level=level)
            if comps is not None and comps["df_cell"] <= 0:  # no cell error drawn, no t widening: too narrow
                why.append("the error shared by a (size, seed) cell has 0 degrees of freedom (the law's N-terms fit "
                           "the cells exactly), so the intervals cannot include it")
            entries[m].update(identified=not why, identifiability=why)
        top = dict(entries[primary])
        top.update(methods=entries, status="ok", reason=None)
        if len(entries) == 2:
            top["methods_agree"] = _agreement(entries["approach3"], entries["varpro"])
        if not top["identified"]:
            notes.append(f"group {g!r}: not identified: " + "; ".join(top["identifiability"]))
        fits[g] = top
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
        sub_a, sub_b = subs[a], subs[b]
        why = identify.comparison_reasons({a: (sub_a["N"].values, fits[a]["identified"], None),
                                           b: (sub_b["N"].values, fits[b]["identified"], None)})
        comp = compare_samples(fits[a], fits[b], samples.get((a, primary)), samples.get((b, primary)), level)
        factor = 1.0
        if comps is not None:
            jac = [log_law_jacobian(full[(g, primary)].params, subs[g]["N"].values, subs[g]["D"].values)
                   for g in (a, b)]
            cb = [cell_index[subs[g].index].to_numpy() for g in (a, b)]
            dfs = []
            for k in (3, 4):
                c = np.zeros(10)
                c[k], c[5 + k] = -1.0, 1.0
                dfs.append(bs.satterthwaite_df(jac, cb, comps, c))
            factor = _t_factor(min(dfs), level)
        for k, c in comp.items():
            c["ci"] = bs.widen(c["diff"], c["ci"], factor)
            c["t_factor"] = factor
            c["method"] = method_text(kind, df, n_boot) if n_boot > 0 else "none (--bootstrap 0)"
            few = ([f"only {c['n']} of {n_boot} resample pairs converged (< {identify.MIN_CONVERGED_SHARE:.0%})"]
                   if n_boot > 0 and c["n"] < identify.MIN_CONVERGED_SHARE * n_boot else [])
            c["verdict"] = identify.verdict(c["ci"], level, why + few)
            c["identifiability"] = why + few
        comparison[key] = comp
        if kind == "runs":
            paired[key] = paired_comparison(sub_a, sub_b, method=primary, n_boot=n_boot, seed=seed, level=level,
                                            rel_tol=pair_tol, jobs=jobs, delta=delta, starts=starts,
                                            bound_e=bound_e)
    doc = {"meta": dict(meta or {}, method=method, bootstrap=n_boot, seed=seed, level=level, delta=delta,
                        bound_e=bound_e, starts=starts if isinstance(starts, str) else "custom",
                        n_runs=int(len(df)), groups=groups, primary_method=primary,
                        compute_budgets=list(compute_budgets), predict=[list(p) for p in predict],
                        resample=kind, resample_method=method_text(kind, df, n_boot),
                        noise_components=comps),
           "fits": fits, "comparison": comparison, "comparison_paired": paired, "notes": notes,
           "design": _design(df, fits, ok_groups, primary, delta, effect, comps)}
    return clean_json(doc)


def residual_noise(df: pd.DataFrame, fits: dict, ok_groups: list[str]) -> float | None:
    """Pooled residual SD of log loss over the fitted groups, corrected for the 5 fitted parameters per group."""
    ss, dof = 0.0, 0
    for g in ok_groups:
        f = fits[g]
        if any(f.get(k) is None for k in bs.SAMPLE_NAMES):
            continue
        sub = df[df["group"].astype(str) == g]
        r = np.log(sub["L"].values) - np.log(predict_loss(f, sub["N"].values, sub["D"].values))
        ss += float(r @ r)
        dof += len(r) - 5
    return float(np.sqrt(ss / dof)) if dof > 0 else None


def _design(df, fits, ok_groups, primary, delta, effect, comps: dict | None = None) -> dict:
    """The design analysis (fitting.design) of the grid as run, at the residual noise the fits observed and at
    the first identified fit's parameters (the published Chinchilla law if none is identified). Where the
    resampling estimated the noise's components (a cell error with degrees of freedom), the shared share of the
    variance and its correlation across architectures are those estimates, not design.analyse's defaults."""
    noise_obs = residual_noise(df, fits, ok_groups)
    params = next((dict((k, fits[g][k]) for k in bs.SAMPLE_NAMES) for g in ok_groups if fits[g].get("identified")),
                  None)
    groups = {}
    for g, sub in sorted(df.groupby(df["group"].astype(str))):
        groups[g] = {"N": sub["N"].values, "D": sub["D"].values,
                     "seed": sub["seed"].values if "seed" in sub.columns else np.zeros(len(sub)),
                     "size": sub["size"].astype(str).values if "size" in sub.columns else None}
        if groups[g]["size"] is None:
            groups[g].pop("size")
    noise = noise_obs if noise_obs and noise_obs > 0 else design.DEFAULT_NOISE
    own = {g: {k: fits[g][k] for k in bs.SAMPLE_NAMES} for g in ok_groups if fits[g].get("identified")}
    shared, cross = design.DEFAULT_SHARED, 0.0
    if comps is not None and comps["df_cell"] > 0:
        total = comps["sigma_run"] ** 2 + comps["sigma_cell"] ** 2
        if total > 0:
            shared, cross = comps["sigma_cell"] ** 2 / total, comps["rho"]
    out = design.analyse(groups, noise=noise, shared=shared, cross_arch=cross, effect=effect, params=params,
                         delta=delta, group_params=own)
    out.update(noise_observed=noise_obs, params_source="first identified fit" if params else
               "Hoffmann et al. 2022 (no identified fit)")
    return out


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
