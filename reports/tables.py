"""The report's tables as rows of strings: number formats, the headline, parameters, fixed-budget fits, runs.

Kept apart from drawing so the numbers a page shows can be checked without rendering it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from fitting.fixed_budget import cluster, slope_difference
from reports.inputs import NOT_ENOUGH_RUNS, ReportInputs

EXPONENTS = ("alpha", "beta", "a")
EXPONENT_MEANING = {
    "alpha": "loss vs N: L = E + A/N^alpha + B/D^beta",
    "beta": "loss vs D",
    "a": "N_opt ~ C^a, a = beta/(alpha+beta)",
}


def fmt(x, kind: str = "exp") -> str:
    """One number: exponents and losses with 3 decimals, scale constants (A, B) with 4 significant digits."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    x = float(x)
    if kind == "exp":
        return f"{x:.3f}"
    if kind == "signed":
        return f"{x:+.3f}"
    if kind == "sci":
        return f"{x:.2e}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")
    if kind == "const":
        return f"{x:#.4g}".rstrip(".") if 1e-3 <= abs(x) < 1e5 else fmt(x, "sci")
    if kind == "r2":
        return f"{x:.4f}"
    if kind == "prob":
        return f"{x:.3f}"
    raise ValueError(f"unknown number format {kind!r}")


def fmt_ci(value, ci, kind: str = "exp") -> str:
    """`0.340 [0.310, 0.372]`: the form the headline and the parameter table use (and tests look for)."""
    if ci is None or len(ci) != 2:
        return fmt(value, kind)
    return f"{fmt(value, kind)} [{fmt(ci[0], kind)}, {fmt(ci[1], kind)}]"


def param_kind(name: str) -> str:
    return "const" if name in ("A", "B") else "exp"


def compute_ci_from_samples(g: dict, name: str, level: float) -> list[float] | None:
    """CI of one parameter from bootstrap samples when the fit has none stored (E, A, B, alpha, beta, a)."""
    s = g.get("_samples")
    if s is None or len(s) == 0:
        return None
    idx = {"E": 0, "A": 1, "B": 2, "alpha": 3, "beta": 4}
    x = s[:, 4] / (s[:, 3] + s[:, 4]) if name == "a" else s[:, idx[name]]
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return None
    q = (1 - level) / 2
    return [float(np.quantile(x, q)), float(np.quantile(x, 1 - q))]


def level(inputs: ReportInputs) -> float:
    lv = (inputs.fits or {}).get("meta", {}).get("level", 0.95)
    return float(lv) if isinstance(lv, (int, float)) and 0 < lv < 1 else 0.95


def exponent_a(g: dict) -> float:
    return float(g["a"]) if "a" in g else g["beta"] / (g["alpha"] + g["beta"])


def group_ci(g: dict, name: str, lv: float) -> list[float] | None:
    ci = (g.get("ci") or {}).get(name)
    return list(ci) if ci is not None else compute_ci_from_samples(g, name, lv)


def group_status(inputs: ReportInputs, arch: str) -> str:
    """'ok', 'not converged', 'not enough runs (k done)', 'no fit' or another status from the fits file."""
    if not inputs.fits:
        return "no fits"
    g = inputs.fits["fits"].get(arch)
    if g is None:
        return "no fit"
    st = g.get("status", "ok")
    if st == NOT_ENOUGH_RUNS:
        n = g.get("n_runs")
        return f"{NOT_ENOUGH_RUNS} ({n} done)" if isinstance(n, (int, float)) else NOT_ENOUGH_RUNS
    if st != "ok":
        return str(st)
    return "ok" if g.get("converged", True) else "not converged"


def parse_comparison_key(key: str) -> tuple[str, str]:
    """'simplicial - dot' -> ('simplicial', 'dot'): the difference is first minus second."""
    for sep in (" - ", "-"):
        if sep in key:
            b, a = key.split(sep, 1)
            return b.strip(), a.strip()
    return key, ""


NOT_IDENTIFIED = "not identified"
EXPONENT_WORDS = {"alpha": "N-exponent alpha", "beta": "D-exponent beta", "a": "frontier exponent a"}


def identified(g: dict | None) -> bool:
    """A fit whose exponents may be shown as numbers (fits files before issue 26 have no flag: shown)."""
    return bool(g) and g.get("identified", True) is not False


def verdict_text(c: dict, b: str, lv: float) -> str:
    """The fits file's verdict in words (reports.inputs.load_fits requires one on every comparison)."""
    v = c["verdict"]
    if v == "larger":
        return f"larger for {b} at {lv:.0%}"
    if v == "smaller":
        return f"smaller for {b} at {lv:.0%}"
    if v == NOT_IDENTIFIED:
        return NOT_IDENTIFIED
    return f"not resolved at {lv:.0%}"


def design_of(inputs: ReportInputs) -> dict | None:
    d = (inputs.fits or {}).get("design")
    return d if isinstance(d, dict) and d.get("per_arch") else None


def demonstration_only(inputs: ReportInputs) -> bool:
    """True when the grid as run cannot resolve the comparison it was built for: the design analysis gives it under
    50% power at the stated effect (fitting.design ``demonstration``), or every comparison is not identified."""
    d = design_of(inputs)
    if d is not None and len(d.get("per_arch", {})) >= 2 and d.get("demonstration", not d.get("resolvable", False)):
        return True
    comps = (inputs.fits or {}).get("comparison", {}) or {}
    verdicts = [c.get("verdict") for comp in comps.values() if isinstance(comp, dict) and "status" not in comp
                for c in comp.values() if isinstance(c, dict)]
    return bool(verdicts) and all(v == NOT_IDENTIFIED for v in verdicts)


def headline_rows(inputs: ReportInputs) -> tuple[list[str], list[list[str]]]:
    """Title-page table: one row per exponent, a column per architecture, then each difference and its verdict."""
    archs = inputs.archs
    lv = level(inputs)
    comps = (inputs.fits or {}).get("comparison", {}) or {}
    header = ["exponent"] + archs
    for key in sorted(comps):
        header += [f"{key}", "verdict"]
    rows = []
    for name in EXPONENTS:
        row = [name]
        for arch in archs:
            g = inputs.group_fit(arch)
            if g is None:
                row.append(group_status(inputs, arch))
                continue
            if not identified(g):
                row.append(NOT_IDENTIFIED)
                continue
            val = exponent_a(g) if name == "a" else g[name]
            cell = fmt_ci(val, group_ci(g, name, lv))
            if not g.get("converged", True):
                cell += " (not converged)"
            row.append(cell)
        for key in sorted(comps):
            c = comps[key].get(name)
            if not c:
                row += ["-", "-"]
                continue
            b, _ = parse_comparison_key(key)
            if c["verdict"] == NOT_IDENTIFIED:
                row += [NOT_IDENTIFIED, NOT_IDENTIFIED]
                continue
            row += [fmt_ci(c.get("diff"), c.get("ci"), "signed"), verdict_text(c, b, lv)]
        rows.append(row)
    return header, rows


def eval_set_views(inputs: ReportInputs) -> list[tuple[str, ReportInputs]]:
    """(name, inputs whose fits are that set's) for validation ("val", fits.json) and each evaluation set with its
    own fits (fits_<name>.json): every table of one set reads from the same functions as the headline."""
    views = [("val", inputs)] if inputs.fits else []
    return views + [(name, dataclasses.replace(inputs, fits=doc)) for name, doc in sorted(inputs.eval_fits.items())]


def eval_set_rows(inputs: ReportInputs) -> tuple[list[str], list[list[str]]]:
    """The headline's alpha and beta rows per evaluation set (the set's name first): what each set says about the
    difference in exponents, and where it cannot say."""
    header, rows = [], []
    for name, view in eval_set_views(inputs):
        h, r = headline_rows(view)
        header = ["evaluation set"] + h
        rows += [[name] + row for row in r if row[0] in ("alpha", "beta")]
    return header, rows


def verdict_lines(inputs: ReportInputs) -> list[str]:
    """Plain sentences: for each difference its verdict, the method behind it, and why when not identified
    (exponents not identified for one shared set of reasons share one sentence)."""
    comps = (inputs.fits or {}).get("comparison", {}) or {}
    lv = level(inputs)
    out = []
    methods = set()
    decided = False
    for key in sorted(comps):
        b, a = parse_comparison_key(key)
        unidentified: dict[str, list[str]] = {}
        for name in ("alpha", "beta", "a"):
            c = comps[key].get(name)
            if not c or c.get("diff") is None:
                continue
            what = EXPONENT_WORDS[name]
            if c["verdict"] == NOT_IDENTIFIED:
                unidentified.setdefault("; ".join(c.get("identifiability") or []), []).append(name)
                continue
            decided = True
            if c.get("method"):
                methods.add(c["method"])
            out.append(f"{what}: {b} - {a} = {fmt_ci(c['diff'], c.get('ci'), 'signed')}: "
                       f"{verdict_text(c, b, lv)}.")
        for why, names in unidentified.items():
            out.append(f"{', '.join(names)}: {b} - {a} not identified" + (f" ({why})." if why else "."))
    for m in sorted(methods):
        out.append(f"Intervals: {m}.")
    if decided:
        out.append(f"Multiplicity: three exponents are compared (a is a function of alpha and beta, so two "
                   f"independent ones); each interval holds {lv:.0%} on its own, and the chance that at least one "
                   f"of two true nulls reads 'larger' or 'smaller' is up to {1 - lv ** 2:.0%}.")
    return out


def parameter_rows(inputs: ReportInputs) -> tuple[list[str], list[list[str]]]:
    """Joint-fit parameters per architecture and method, with CIs where the file has them."""
    names = ("E", "A", "B", "alpha", "beta", "a")
    header = ["arch", "method", *names, "runs", "status"]
    rows = []
    lv = level(inputs)
    for arch in inputs.archs:
        g_all = (inputs.fits or {}).get("fits", {}).get(arch)
        if inputs.group_fit(arch) is None:
            reason = (g_all or {}).get("reason", "")
            rows.append([arch, "-", *(["-"] * len(names)), str((g_all or {}).get("n_runs", "-")),
                         group_status(inputs, arch) + (f": {reason}" if reason else "")])
            continue
        methods = g_all.get("methods") or {g_all.get("method", "approach3"): g_all}
        primary = g_all.get("method", "approach3")
        for m in sorted(methods, key=lambda m: (m != primary, m)):
            gm = methods[m]
            if not all(k in gm for k in ("E", "A", "B", "alpha", "beta")):
                rows.append([arch, m, *(["-"] * len(names)), "-", str(gm.get("status", "incomplete"))])
                continue
            cells = []
            for k in names:
                if not identified(gm):
                    cells.append(NOT_IDENTIFIED)
                    continue
                val = exponent_a(gm) if k == "a" else gm[k]
                ci = (gm.get("ci") or {}).get(k)
                if ci is None and m == primary:
                    ci = group_ci(g_all, k, lv)
                cells.append(fmt_ci(val, ci, param_kind(k)))
            status = "converged" if gm.get("converged", True) else "not converged"
            boot = gm.get("bootstrap") or {}
            dropped = int(boot.get("n", 0)) - int(boot.get("n_converged", 0))
            if boot.get("n"):
                status += f", {dropped}/{boot['n']} dropped"
            rows.append([arch, m + (" *" if m == primary else ""), *cells,
                         str(gm.get("n_runs", g_all.get("n_runs", "-"))),
                         status])
    return header, rows


def fit_notes(inputs: ReportInputs) -> list[str]:
    """Identifiability and method-disagreement notes for the parameters page, one sentence each."""
    out = []
    for arch in inputs.archs:
        g = (inputs.fits or {}).get("fits", {}).get(arch) or {}
        said = set()
        for m, gm in sorted((g.get("methods") or {}).items(), key=lambda kv: kv[0] != g.get("method")):
            why = [w.split(" = ")[0] if w.startswith("E = ") else w for w in gm.get("identifiability") or []]
            if gm.get("identified") is False and tuple(why) not in said:  # the other method's same reasons: once
                said.add(tuple(why))
                out.append(f"{arch} ({m}): not identified: " + "; ".join(gm.get("identifiability") or []) + ".")
        bad = [k for k, v in (g.get("methods_agree") or {}).items() if v.get("within_cis") is False]
        if bad:
            out.append(f"{arch}: approach3 and varpro disagree beyond each other's intervals on {', '.join(bad)}: "
                       "the optimum is not well determined by these runs.")
    return out


def comparison_rows(inputs: ReportInputs) -> tuple[list[str], list[list[str]]]:
    header = ["difference", "exponent", "diff [CI]", "ratio [CI]", "verdict"]
    rows = []
    lv = level(inputs)
    for key, comp in sorted(((inputs.fits or {}).get("comparison") or {}).items()):
        b, _ = parse_comparison_key(key)
        for name in EXPONENTS:
            c = comp.get(name)
            if not c:
                continue
            if c["verdict"] == NOT_IDENTIFIED:
                rows.append([key, name, NOT_IDENTIFIED, NOT_IDENTIFIED, NOT_IDENTIFIED])
                continue
            rows.append([key, name, fmt_ci(c.get("diff"), c.get("ci"), "signed"),
                         fmt_ci(c.get("ratio"), c.get("ratio_ci")), verdict_text(c, b, lv)])
    return header, rows


def _slices(fb: dict, archs: list[str], which: str, key: str) -> dict[float, dict]:
    """The rows of `fixed_budget_rows`: {sort key: {arch: that arch's fixed_budget.json entry}}.

    Fixed params with two or more archs: the sizes of each arch, which differ between archs, matched by rank.
    Otherwise one row per budget: each architecture's mean D of a budget differs slightly (whole numbers of
    batches), so budgets within fitting's own tolerance (fitting.fixed_budget.cluster) are one row, as within an
    architecture."""
    if which == "fixed_params" and len(archs) > 1:
        per_arch = {a: sorted(float(r[key]) for r in fb[a] if isinstance(r, dict) and key in r) for a in archs}
        out = {}
        for i in range(max(len(v) for v in per_arch.values())):
            entry = {}
            for a in archs:
                if i < len(per_arch[a]):
                    val = per_arch[a][i]
                    entry[a] = next(r for r in fb[a] if float(r[key]) == val)
            out[float(i)] = entry
        return out
    found = [(a, r) for a in archs for r in fb[a] if isinstance(r, dict) and isinstance(r.get(key), (int, float))]
    labels = cluster([r[key] for _, r in found]) if found else []
    out: dict[float, dict] = {}
    for lab in sorted(set(labels)):
        members = [(a, r) for (a, r), k in zip(found, labels) if k == lab]
        if len({a for a, _ in members}) < len(members):  # chained through another arch's budget: keep them apart
            for a, r in members:
                out.setdefault(float(r[key]), {})[a] = r
            continue
        out[float(np.exp(np.mean([np.log(r[key]) for _, r in members])))] = dict(members)
    return out


def fixed_budget_rows(inputs: ReportInputs, which: str) -> tuple[list[str], list[list[str]]]:
    """The paper's Table 3 layout: one row per budget, each architecture's log-linear local slope with its
    interval and R^2, and the difference of the slopes (second architecture minus first).

    which: "fixed_tokens" (local slope in N at fixed D) or "fixed_params" (local slope in D at fixed N). The slope
    of log L against log N at fixed D is alpha A N^-alpha / L, not alpha: it falls as E dominates, so it can move
    opposite to alpha between architectures (docs/FITTING.md).
    """
    fb = (inputs.fixed_budget or {}).get(which) or {}
    archs = [a for a in inputs.archs if a in fb]
    key = "tokens" if which == "fixed_tokens" else "params"
    sym = "D" if which == "fixed_tokens" else "N"
    header = [sym] + [f"{a}: pts" for a in archs] + [f"{a}: local slope [CI]" for a in archs]
    if len(archs) == 2:
        header.append("difference")
    header += [f"{a}: R^2" for a in archs] + [f"{a}: sat. fit" for a in archs]
    rows = []
    budgets = _slices(fb, archs, which, key)
    for b in sorted(budgets):
        entry = budgets[b]
        if which == "fixed_params" and len(archs) > 1:
            label = " / ".join(fmt(entry[a][key], "sci") if a in entry else "-" for a in archs)
        else:
            label = fmt(b, "sci")
        slopes, cis = {}, {}
        row = [label]
        row += [str(entry[a].get("n_points", "-")) if a in entry else "-" for a in archs]
        for a in archs:
            ll = (entry.get(a) or {}).get("loglinear") or {}
            slopes[a], cis[a] = ll.get("alpha"), ll.get("ci")
            row.append(fmt_ci(slopes[a], cis[a]) if a in entry else "-")
        if len(archs) == 2:
            diff, ci = slope_difference(slopes[archs[0]], cis[archs[0]], slopes[archs[1]], cis[archs[1]])
            if diff is None:
                row.append("-")
            elif ci:
                row.append(f"{diff:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]")
            else:
                row.append(f"{diff:+.3f}")
        for a in archs:
            ll = (entry.get(a) or {}).get("loglinear") or {}
            row.append(fmt(ll.get("r2"), "r2") if a in entry else "-")
        for a in archs:
            r = entry.get(a)
            if r is None:
                row.append("-")
                continue
            e = "alpha" if which == "fixed_tokens" else "beta"
            txt = fmt(r.get(e))
            if r.get("converged") is False:
                txt += " (not converged)"
            row.append(txt)
        rows.append(row)
    return header, rows


def last_error_line(err: str, width: int = 70) -> str:
    """The line of a traceback that says what went wrong (its last non-empty line), shortened."""
    lines = [ln.strip() for ln in str(err or "").splitlines() if ln.strip()]
    if not lines:
        return ""
    s = lines[-1]
    return s if len(s) <= width else s[: width - 3] + "..."


def shape_text(r: pd.Series) -> str:
    def i(x):
        return "?" if not (isinstance(x, (int, float)) and math.isfinite(x)) else str(int(x))
    s = f"{i(r.get('n_layers'))}L x {i(r.get('d_model'))}d x {i(r.get('n_heads'))}h"
    every = r.get("simplicial_every")
    if isinstance(every, (int, float)) and math.isfinite(every) and every > 0:
        s += f", 2s/{int(every)} w{i(r.get('w1'))}/{i(r.get('w2'))}"
    return s


def runs_rows(inputs: ReportInputs) -> tuple[list[str], list[list[str]], list[str]]:
    """One row per run in table order; returns header, rows and each row's status (for colouring)."""
    header = ["run id", "arch", "size", "shape", "N", "D", "FLOPs", "train loss", "val loss", "tok/s", "status",
              "reason"]
    rows, statuses = [], []
    for _, r in inputs.results.iterrows():
        rows.append([
            r["run_id"], r["arch"], r["size"], shape_text(r), fmt(r["params"], "sci"), fmt(r["tokens"], "sci"),
            fmt(r["flops"], "sci"), fmt(r["train_loss"]), fmt(r["val_loss"]),
            fmt(r["tokens_per_s"], "sci"), r["status"], last_error_line(r["error"]) if r["status"] != "done" else "",
        ])
        statuses.append(r["status"])
    return header, rows, statuses


def status_counts(results: pd.DataFrame) -> dict[str, int]:
    counts = results["status"].value_counts()
    order = ["done", "diverged", "failed", "running", "pending", "preempted", "timeout"]
    keys = [k for k in order if k in counts] + sorted(k for k in counts.index if k not in order)
    return {k: int(counts[k]) for k in keys}


def code_versions(results: pd.DataFrame) -> str:
    """The commits the runs' code came from, each with its number of runs and whether it had uncommitted changes
    (results.csv's git_commit and code_dirty, from each result.json's `code`), most used first."""
    known = results[results["git_commit"] != ""]
    if known.empty:
        return "unknown"
    dirty = known["code_dirty"].str.lower() == "true"
    groups = known.assign(dirty=dirty).groupby(["git_commit", "dirty"]).size().sort_values(ascending=False)
    parts = [f"{commit}{' with uncommitted changes' if is_dirty else ''} ({n} run{'s' if n != 1 else ''})"
             for (commit, is_dirty), n in groups.items()]
    missing = len(results) - len(known)
    return "; ".join(parts) + (f"; {missing} run(s) without a record" if missing else "")
