"""One function per report page, each returning a matplotlib Figure (no pyplot: no global figure state).

Conventions stated in the captions: N = non-embedding parameters (the `params` column), D = training tokens,
C = each run's own training FLOPs (the results' `flops` column, attention included) on the frontier and IsoFLOP
pages, with C = 6ND drawn only as a labelled alternative: a 2-simplicial layer costs more FLOPs per token than
6 N, so at one C the two architectures train different (N, D).
Fitted curves come from the fits file's joint fit L(N, D) = E + A/N^alpha + B/D^beta;
bands are pointwise quantiles of the curve over the bootstrap samples. A fit that did not converge is drawn dashed
and labelled "(not converged)".
"""

from __future__ import annotations

import math
import textwrap

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from fitting import chinchilla
from reports import tables
from reports.inputs import ReportInputs, eval_sets

PAGE_SIZE = (11.69, 8.27)  # A4 landscape, inches
# Okabe-Ito colours (colour-blind safe), assigned to architectures in sorted-name order on every page.
ARCH_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
MAX_PANELS = 6
LOSS_LABEL = "final validation loss (nats/token)"
N_LABEL = "N: non-embedding parameters"
D_LABEL = "D: training tokens"
C_LABEL = "C: training FLOPs (each run's own count, attention included)"
RC = {
    "pdf.fonttype": 42,  # TrueType with a unicode map: the PDF's text can be searched and extracted
    "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "legend.fontsize": 8,
    "axes.grid": True, "grid.alpha": 0.25, "grid.linewidth": 0.6, "axes.spines.top": False,
    "axes.spines.right": False, "lines.linewidth": 1.6, "figure.dpi": 100, "savefig.dpi": 150,
    "svg.hashsalt": "simplex-scaling",
}


def no_fits_text(inputs: ReportInputs) -> str:
    src = inputs.results_path.name
    return f"no fits: run `python -m fitting chinchilla {src} --json fits.json`"


# ----------------------------------------------------------------------------------------------------------- helpers

def arch_colors(archs) -> dict[str, str]:
    return {a: ARCH_PALETTE[i % len(ARCH_PALETTE)] for i, a in enumerate(sorted(archs))}


def size_order(results: pd.DataFrame) -> list[str]:
    """Size labels from smallest to largest by median N across architectures."""
    med = results.groupby("size")["params"].median()
    return sorted(med.index, key=lambda s: (med[s] if np.isfinite(med[s]) else np.inf, s))


def size_colors(results: pd.DataFrame) -> dict[str, tuple]:
    sizes = size_order(results)
    cmap = mpl.colormaps["viridis"]
    return {s: cmap(0.9 * i / max(len(sizes) - 1, 1)) for i, s in enumerate(sizes)}


def law(p, n, d):
    """L(N, D) for a fit dict, or for a (S, 5) array of samples (rows E, A, B, alpha, beta) -> (S, len(n))."""
    n, d = np.asarray(n, float), np.asarray(d, float)
    if isinstance(p, dict):
        return chinchilla.predict_loss(p, n, d)
    E, A, B, al, be = (p[:, i:i + 1] for i in range(5))
    return chinchilla.law(E, A, B, al, be, n[None, :], d[None, :])


def frontier(p, c):
    """Compute-optimal N_opt(C), D_opt(C) for C = 6ND (docs/REFERENCE.md section 4); p a fit dict or (S, 5) samples."""
    c = np.asarray(c, float)
    if isinstance(p, dict):
        return chinchilla.compute_optimal(p, c)
    cols = {k: p[:, i:i + 1] for i, k in enumerate(("E", "A", "B", "alpha", "beta"))}
    return chinchilla.compute_optimal(cols, c[None, :])


def flops_law(inputs: ReportInputs, arch: str) -> tuple[float, float, str]:
    """Training FLOPs per token of an architecture as k N^gamma, fitted (least squares in log) to its done runs'
    own `flops` / `tokens`; (6, 1, "6ND") when the table has no usable FLOPs for it."""
    d = inputs.done
    s = d[(d["arch"] == arch) & np.isfinite(d["flops"]) & (d["flops"] > 0)] if "flops" in d.columns else d.iloc[:0]
    if s.empty:
        return 6.0, 1.0, "6ND"
    x = np.log(s["params"].to_numpy(float))
    y = np.log(s["flops"].to_numpy(float) / s["tokens"].to_numpy(float))
    if np.ptp(x) < 1e-9:
        return float(np.exp(np.mean(y - x))), 1.0, "own FLOPs"
    gamma, logk = np.polyfit(x, y, 1)
    return float(np.exp(logk)), float(gamma), "own FLOPs"


def tokens_at(c, n, k: float, gamma: float):
    """D such that the training FLOPs k N^gamma D equal c."""
    return np.asarray(c, float) / (k * np.asarray(n, float) ** gamma)


def frontier_flops(p, c, k: float, gamma: float, n_lo: float, n_hi: float, points: int = 400):
    """N_opt(C), D_opt(C) minimising the fitted L(N, D) along C = k N^gamma D (each architecture's own FLOPs),
    by a search over a log grid of N in [n_lo, n_hi]; NaN where the minimum is at an end of the grid.
    p: a fit dict or (S, 5) samples; returns arrays (len(c),) or (S, len(c))."""
    c = np.asarray(c, float)
    ng = np.geomspace(n_lo, n_hi, points)
    dg = tokens_at(c[:, None], ng[None, :], k, gamma)  # (C, G)
    if isinstance(p, dict):
        P = np.array([[p[k_] for k_ in ("E", "A", "B", "alpha", "beta")]], float)
    else:
        P = np.asarray(p, float)
    E, A, B, al, be = (P[:, i][:, None, None] for i in range(5))
    L = chinchilla.law(E, A, B, al, be, ng[None, None, :], dg[None, :, :])  # (S, C, G)
    L = np.where(np.isfinite(L), L, np.inf)
    i = np.argmin(L, axis=2)
    n_opt = ng[i]
    edge = (i == 0) | (i == points - 1)
    n_opt = np.where(edge, np.nan, n_opt)
    d_opt = tokens_at(c[None, :], n_opt, k, gamma)
    if isinstance(p, dict):
        return n_opt[0], d_opt[0]
    return n_opt, d_opt


def band(values: np.ndarray, level: float):
    """Pointwise (lo, hi) quantiles over rows, ignoring non-finite samples; None when too few samples."""
    if values is None or values.shape[0] < 5:
        return None
    v = np.where(np.isfinite(values), values, np.nan)
    ok = np.sum(np.isfinite(v), axis=0) >= 5
    if not ok.any():
        return None
    q = (1 - level) / 2
    with np.errstate(invalid="ignore"):
        lo, hi = np.nanquantile(v, [q, 1 - q], axis=0)
    return np.where(ok, lo, np.nan), np.where(ok, hi, np.nan)


def samples_of(g: dict | None):
    if g is None:
        return None
    s = g.get("_samples")
    if s is None or len(s) == 0:
        return None
    return s[np.all(np.isfinite(s), axis=1)]


def fit_style(g: dict) -> tuple[str, str]:
    """(linestyle, label suffix): a fit that did not converge is drawn dashed and says so."""
    return ("-", "") if g.get("converged", True) else ("--", " (not converged)")


def log_groups(values: np.ndarray, rtol: float = 0.05, max_groups: int = MAX_PANELS):
    """Group nearly equal positive values (relative gap < rtol), e.g. token budgets that differ by rounding.

    Returns (labels per value, representative value per group = geometric mean). When there are more than
    max_groups, values are binned into max_groups equal-width bins in log space instead.
    """
    v = np.asarray(values, float)
    uniq = np.unique(v)
    groups, start = [], None
    for x in uniq:
        if start is None or x > start * (1 + rtol):
            groups.append([x])
            start = x
        else:
            groups[-1].append(x)
    if len(groups) <= max_groups:
        edges = [g[0] for g in groups]
        lab = np.searchsorted(edges, v, side="right") - 1
    else:
        lo, hi = np.log10(uniq[0]), np.log10(uniq[-1])
        edges = np.linspace(lo, hi, max_groups + 1)
        lab = np.clip(np.searchsorted(edges, np.log10(v), side="right") - 1, 0, max_groups - 1)
    reps = {}
    for k in np.unique(lab):
        reps[int(k)] = float(np.exp(np.mean(np.log(v[lab == k]))))
    return lab, reps


def new_page(title: str, caption: str | None = None) -> Figure:
    fig = Figure(figsize=PAGE_SIZE)
    fig.text(0.04, 0.955, title, fontsize=15, weight="bold", va="top")
    if caption:
        caption_text(fig, caption)
    return fig


def _ncols(n: int) -> int:
    return 2 if n == 4 else max(min(n, 3), 1)


def caption_text(fig: Figure, caption: str):
    """Caption at the page foot, wrapped by character count (matplotlib's own wrap can run past the edge)."""
    fig.text(0.04, 0.03, textwrap.fill(caption, width=185), fontsize=8, va="bottom", color="0.25")


def panel_grid(fig: Figure, n: int, right: float = 0.78, sharey: bool = True):
    ncols = _ncols(n)
    nrows = max(1, math.ceil(n / ncols))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    fig.subplots_adjust(left=0.07, right=right, top=0.85, bottom=0.17 if nrows == 1 else 0.13, wspace=0.12,
                        hspace=0.38)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    for ax in flat[:n]:
        ax.yaxis.set_tick_params(labelleft=True)
    return flat[:n], axes


def short_sci(x: float) -> str:
    """3.2e15 style, for panel titles."""
    m, e = f"{x:.2g}".split("e") if "e" in f"{x:.2g}" else (f"{x:.2g}", "0")
    return m if int(e) == 0 else f"{m}e{int(e)}"


def _tick_label(x, _pos=None) -> str:
    """Log-axis tick as 2e6, 1e7, ...; losses (below 100) as plain numbers."""
    if x <= 0:
        return ""
    if x < 100:
        return f"{x:g}"
    m, e = f"{x:.0e}".split("e")
    return f"{m}e{int(e)}"


def set_log_ticks(axis, lo: float, hi: float):
    """Label 1-2-5 steps when an axis spans under ~2.5 decades, else whole decades; no minor labels."""
    span = np.log10(hi / lo) if lo > 0 and hi > lo else 10
    subs = (1.0, 2.0, 5.0) if span < 2.5 else (1.0,)
    if span < 1.5:
        subs = (1.0, 2.0, 3.0, 4.0, 6.0)
    if span < 0.6:  # e.g. losses between 1.8 and 2.9: a few round linear values read better than decades
        axis.set_major_locator(MaxNLocator(nbins=7, steps=[1, 2, 2.5, 5, 10]))
    else:
        axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=30))
    axis.set_major_formatter(FuncFormatter(_tick_label))
    axis.set_minor_formatter(NullFormatter())


def loglog(ax, ylog: bool = True):
    """Log x (and y) with readable tick labels; call after plotting so the limits are known."""
    ax.set_xscale("log")
    set_log_ticks(ax.xaxis, *ax.get_xlim())
    if ylog:
        ax.set_yscale("log")
        set_log_ticks(ax.yaxis, *ax.get_ylim())


def note(fig: Figure, text: str, y: float = 0.905, color: str = "#A00000"):
    fig.text(0.04, y, text, fontsize=9.5, color=color, va="top", family="monospace")


def arch_legend(fig: Figure, inputs: ReportInputs, colors, extra: list | None = None, with_fits: bool = True,
                loc=(0.795, 0.5)):
    """One legend outside the panels (right margin), so it never covers data."""
    handles = []
    for arch in inputs.archs:
        c = colors[arch]
        handles.append(Line2D([], [], color=c, marker="o", ls="none", ms=5, label=f"{arch}: runs"))
        if with_fits and inputs.fits:
            g = inputs.group_fit(arch)
            if g is None:
                handles.append(Line2D([], [], color=c, ls=":", label=f"{arch}: {tables.group_status(inputs, arch)}"))
            else:
                ls, suffix = fit_style(g)
                handles.append(Line2D([], [], color=c, ls=ls, label=f"{arch}: joint fit{suffix}"))
                if samples_of(g) is not None:
                    handles.append(Patch(color=c, alpha=0.2, label=f"{arch}: {tables.level(inputs):.0%} band"))
    handles += extra or []
    legend(fig, handles, loc)


def legend(fig: Figure, handles, loc=(0.795, 0.5), title=None):
    """The page's legend in the right margin (never over data), long labels wrapped to fit the margin."""
    for h in handles:
        lines = h.get_label().split("\n")
        h.set_label("\n".join(textwrap.fill(ln, width=34, subsequent_indent="  ") for ln in lines))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=loc, frameon=False, title=title)


def draw_fit(ax, inputs: ReportInputs, arch: str, color, n, d, x):
    """Draw one architecture's fitted L(n, d) against x (n or d), with its bootstrap band."""
    g = inputs.group_fit(arch)
    if g is None:
        return
    ls, _ = fit_style(g)
    ax.plot(x, law(g, n, d), color=color, ls=ls, zorder=3)
    s = samples_of(g)
    if s is not None:
        b = band(law(s, n, d), tables.level(inputs))
        if b is not None:
            ax.fill_between(x, b[0], b[1], color=color, alpha=0.18, lw=0, zorder=1)


def _grid(lo, hi, pad=1.4, k=60):
    return np.geomspace(lo / pad, hi * pad, k)


def _no_done_page(fig: Figure, text: str = "no done runs yet: nothing to plot") -> Figure:
    ax = fig.add_axes([0.1, 0.3, 0.8, 0.4])
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=13, color="#A00000")
    return fig


# ------------------------------------------------------------------------------------------------------------ pages

def title_page(inputs: ReportInputs) -> Figure:
    """Page 1: what was run, on what, how much of it finished, and the headline exponents with CIs."""
    res = inputs.results
    fig = new_page(f"Scaling report: {inputs.sweep_name}")
    lines = []

    def first(col):
        vals = sorted(set(res[col]) - {"", "nan"})
        return ", ".join(vals) if vals else "unknown"

    finished = sorted(set(res["finished_at"]) - {"", "nan"})
    lines.append(("Date", (finished[-1][:10] + f" (last run finished {finished[-1]})") if finished else "unknown"))
    lines.append(("Code", tables.code_versions(res)))
    lines.append(("Versions", f"torch {first('torch_version')}, triton {first('triton_version')}; report drawn with "
                              f"matplotlib {mpl.__version__}, numpy {np.__version__}"))
    lines.append(("Hardware", first("device")))
    vocab = sorted({str(int(v)) for v in res["vocab_size"] if np.isfinite(v)})
    lines.append(("Data", f"{first('dataset')}; tokenizer {first('tokenizer')}"
                          + (f" (vocabulary {', '.join(vocab)})" if vocab else "")))
    counts = tables.status_counts(res)
    lines.append(("Runs", f"{len(res)} in the table: " + ", ".join(f"{v} {k}" for k, v in counts.items())))
    per_arch = []
    for arch in inputs.archs:
        sub = res[res["arch"] == arch]
        per_arch.append(f"{arch} {int((sub['status'] == 'done').sum())}/{len(sub)} done")
    lines.append(("Per architecture", "; ".join(per_arch)))
    files = [inputs.results_path.name]
    for p in (inputs.curves_path, inputs.fits_path, inputs.fixed_budget_path):
        if p is not None:
            files.append(p.name)
    lines.append(("Inputs", ", ".join(files)))

    y = 0.875
    for k, v in lines:
        fig.text(0.04, y, k, fontsize=9.5, weight="bold", va="top")
        fig.text(0.20, y, v, fontsize=9.5, va="top")
        y -= 0.027

    missing = _missing_lines(inputs)
    if missing:
        fig.text(0.04, y - 0.005, "Missing", fontsize=10, weight="bold", va="top", color="#A00000")
        for m in missing:
            fig.text(0.20, y - 0.005, m, fontsize=9.5, va="top", color="#A00000")
            y -= 0.028
        y -= 0.01
    y -= 0.02

    demo = tables.demonstration_only(inputs)
    head = ("Pipeline demonstration: fitted exponents (this grid cannot resolve the comparison; see Design below)"
            if demo else "Headline: fitted exponents")
    fig.text(0.04, y, head, fontsize=12.5, weight="bold", va="top", color="#A00000" if demo else "black")
    y -= 0.035
    if not inputs.fits:
        note(fig, no_fits_text(inputs), y=y)
        return fig
    header, rows = tables.headline_rows(inputs)
    h = 0.03 * (len(rows) + 1)
    widths = [0.6] + [1.0] * (len(header) - 1)
    _draw_table(fig, [0.04, y - h, 0.92, h], header, rows, fontsize=9, col_widths=widths)
    y -= h + 0.02
    # verdicts, design and notes share the space above the caption: the line height shrinks to fit them all
    block = [(ln, "black") for ln in tables.verdict_lines(inputs)] + [("", "black")]
    for line in design_lines(inputs):
        bad = line.strip().startswith("WARNING") or line.startswith("One seed")
        block.append((line, "#A00000" if bad else "0.1"))
    block += [("Note: " + ln, "#A00000") for ln in inputs.notes]
    wrapped = [(part if i == 0 else "    " + part, color) for text, color in block
               for i, part in enumerate(textwrap.wrap(text, 190) or [""])]
    step = min(0.0185, (y - 0.105) / max(len(wrapped), 1))
    for text, color in wrapped:
        fig.text(0.04, y, text, fontsize=min(7.5, 400 * step), va="top", color=color)
        y -= step
    lv = tables.level(inputs)
    caption = (f"Exponents of the joint fit L(N, D) = E + A/N^alpha + B/D^beta (Chinchilla Approach 3), N = "
               f"non-embedding parameters, D = training tokens; a = beta/(alpha+beta) is the exponent of the "
               f"compute-optimal N_opt ~ C^a. Brackets: {lv:.0%} intervals from the resampling method named above. "
               f"A verdict is 'larger'/'smaller' only when the interval of the difference excludes 0; 'not "
               f"identified' means the data do not pin the number down (reasons on the parameters page). Larger "
               f"alpha means loss falls faster with model size.")
    caption_text(fig, caption)
    return fig


def design_lines(inputs: ReportInputs) -> list[str]:
    """What the grid as run can resolve (fitting.design at the observed residual noise), and how the intervals
    treat shared errors: the title page's Design block."""
    from fitting.design import summary_lines

    d = tables.design_of(inputs)
    if d is None:
        return []
    out = ["Design (fitting.design, at this sweep's observed residual noise "
           + (f"{d['noise_observed']:.4f}" if d.get("noise_observed") else "unknown") + " in log loss):"]
    out += ["  " + ln for ln in summary_lines(d)]
    comps = (inputs.fits or {}).get("meta", {}).get("noise_components")
    if comps:
        cell = (f"per (size, seed) cell SD {comps['sigma_cell']:.4f} ({comps['df_cell']} df)" if comps["df_cell"] > 0
                else "per (size, seed) cell SD not estimable (0 df: 3 sizes fit the law's 3 N-terms exactly)")
        out.append(f"  Residual errors estimated from the runs: per run SD {comps['sigma_run']:.4f} "
                   f"({comps['df_run']} df), {cell}, cross-architecture correlation of cell errors {comps['rho']:.2f}.")
    seeds = inputs.done["seed"].nunique() if "seed" in inputs.done.columns and len(inputs.done) else 1
    if seeds <= 1:
        out.append("One seed per size: a size's runs share one initialisation and batch order, so its error is "
                   "shared by all its budgets and cannot be told apart from the law's curve with "
                   f"{max(len(set(inputs.done['size'])) - 3, 0) if len(inputs.done) else 0} degrees of freedom per "
                   "architecture; the intervals widen for that (t factor), and more seeds would measure it.")
    return out


def _missing_lines(inputs: ReportInputs) -> list[str]:
    res = inputs.results
    out = []
    not_done = res[res["status"] != "done"]
    if len(not_done):
        by = not_done.groupby(["status", "arch"]).size()
        parts = [f"{n} {st} ({arch})" for (st, arch), n in by.items()]
        out.append(f"{len(not_done)} of {len(res)} runs not done: " + ", ".join(parts) + " - listed on the runs page")
    done = inputs.done
    for arch in inputs.archs:
        if arch in set(res["arch"]) and not (done["arch"] == arch).any():
            out.append(f"{arch}: no done runs")
    if inputs.fits:
        for arch in inputs.archs:
            st = tables.group_status(inputs, arch)
            if st not in ("ok",):
                g = inputs.fits["fits"].get(arch) or {}
                out.append(f"{arch} fit: {st}" + (f" - {g['reason']}" if g.get("reason") else ""))
    else:
        out.append("fits.json absent: the fit pages show data only")
    if inputs.curves is None:
        out.append(f"no training curves file ({inputs.results_path.stem}_curves.csv)")
    return out


def loss_vs_params(inputs: ReportInputs) -> Figure:
    """Page 2: loss vs N (log-log), one panel per token budget, runs and joint-fit curves with bands."""
    fig = new_page("Loss vs model size, per token budget",
                   "Points: done runs (final validation loss). Lines: the joint fit L(N, D) evaluated at each panel's "
                   "D (geometric mean of the budgets grouped in the panel); shaded: pointwise bootstrap band. "
                   "N = non-embedding parameters, D = training tokens.")
    done = inputs.done
    if done.empty:
        return _no_done_page(fig)
    colors = arch_colors(inputs.archs)
    lab, reps = log_groups(done["tokens"].to_numpy())
    keys = sorted(reps)
    axes, _ = panel_grid(fig, len(keys))
    n_grid = _grid(done["params"].min(), done["params"].max())
    for ax, k in zip(axes, keys):
        sub = done[lab == k]
        d = reps[k]
        for arch in inputs.archs:
            s = sub[sub["arch"] == arch]
            draw_fit(ax, inputs, arch, colors[arch], n_grid, np.full_like(n_grid, d), n_grid)
            ax.plot(s["params"], s["loss"], "o", color=colors[arch], ms=5, mec="white", mew=0.6, zorder=4)
        loglog(ax)
        ax.set_title(f"D = {short_sci(d)} tokens, {len(sub)} runs")
        ax.set_xlabel(N_LABEL)
    for ax in axes[:: _ncols(len(keys))]:
        ax.set_ylabel(LOSS_LABEL)
    arch_legend(fig, inputs, colors)
    if not inputs.fits:
        note(fig, no_fits_text(inputs))
    return fig


def loss_vs_tokens(inputs: ReportInputs) -> Figure:
    """Page 3: loss vs D, one panel per size, runs and joint-fit curves with bands."""
    fig = new_page("Loss vs training tokens, per model size",
                   "Points: done runs. Lines: the joint fit at each architecture's N for that size (the median N of its "
                   "runs; 2-simplicial layers add parameters, so N differs between architectures); shaded: bootstrap "
                   "band. N = non-embedding parameters, D = training tokens.")
    done = inputs.done
    if done.empty:
        return _no_done_page(fig)
    colors = arch_colors(inputs.archs)
    sizes = [s for s in size_order(done)][: 3 * 3]
    axes, _ = panel_grid(fig, len(sizes))
    d_grid = _grid(done["tokens"].min(), done["tokens"].max())
    for ax, size in zip(axes, sizes):
        sub = done[done["size"] == size]
        n_txt = []
        for arch in inputs.archs:
            s = sub[sub["arch"] == arch]
            if s.empty:
                continue
            n = float(s["params"].median())
            n_txt.append(f"{arch} {short_sci(n)}")
            draw_fit(ax, inputs, arch, colors[arch], np.full_like(d_grid, n), d_grid, d_grid)
            ax.plot(s["tokens"], s["loss"], "o", color=colors[arch], ms=5, mec="white", mew=0.6, zorder=4)
        loglog(ax)
        ax.set_title(f"size {size}: N = {', '.join(n_txt)}")
        ax.set_xlabel(D_LABEL)
    for ax in axes[:: _ncols(len(sizes))]:
        ax.set_ylabel(LOSS_LABEL)
    arch_legend(fig, inputs, colors)
    if not inputs.fits:
        note(fig, no_fits_text(inputs))
    return fig


def isoflop_bands(c: np.ndarray, width_dec: float = 0.5, max_bands: int = MAX_PANELS):
    """Assign each run to a compute band [10^(k w), 10^((k+1) w)); keep bands with >= 2 runs, at most max_bands
    (the most populated). Returns (band index per run, {band: (lo, hi, centre)})."""
    k = np.floor(np.log10(c) / width_dec).astype(int)
    ks, counts = np.unique(k, return_counts=True)
    keep = [kk for kk, n in zip(ks, counts) if n >= 2]
    keep = sorted(sorted(keep, key=lambda kk: -counts[list(ks).index(kk)])[:max_bands])
    bands = {int(kk): (10 ** (kk * width_dec), 10 ** ((kk + 1) * width_dec), 10 ** ((kk + 0.5) * width_dec))
             for kk in keep}
    return k, bands


def isoflop(inputs: ReportInputs) -> Figure:
    """Page 4: loss vs N inside compute bands of each run's own training FLOPs, with each fitted optimum."""
    fig = new_page("IsoFLOP view: loss vs model size at fixed compute",
                   "C = each run's own training FLOPs (the `flops` column: forward + backward, attention included), "
                   "not 6ND: a 2-simplicial layer costs more per token, so at one C it trains on fewer tokens. "
                   "Runs are "
                   "grouped into half-decade bands of C; lines: the joint fit along the band's centre C, D = C / "
                   "(k N^gamma) with k N^gamma each architecture's FLOPs per token fitted to its runs; stars: the "
                   "fitted optimum N_opt(C) along that line; shaded: bootstrap band.")
    done = inputs.done
    if done.empty:
        return _no_done_page(fig)
    colors = arch_colors(inputs.archs)
    laws = {a: flops_law(inputs, a) for a in inputs.archs}
    c = np.array([laws[a][0] * n ** laws[a][1] * t for a, n, t in
                  zip(done["arch"], done["params"].to_numpy(float), done["tokens"].to_numpy(float))])
    k, bands = isoflop_bands(c)
    if not bands:
        return _no_done_page(fig, "no compute band holds two runs: nothing to compare")
    axes, _ = panel_grid(fig, len(bands))
    n_lo, n_hi = done["params"].min(), done["params"].max()
    n_grid = _grid(n_lo, n_hi, pad=2.0, k=80)
    for ax, kk in zip(axes, sorted(bands)):
        lo, hi, cc = bands[kk]
        sub = done[k == kk]
        for arch in inputs.archs:
            s = sub[sub["arch"] == arch]
            kf, gam, _ = laws[arch]
            draw_fit(ax, inputs, arch, colors[arch], n_grid, tokens_at(cc, n_grid, kf, gam), n_grid)
            g = inputs.group_fit(arch)
            if g is not None:
                n_opt, d_opt = frontier_flops(g, [cc], kf, gam, n_grid[0], n_grid[-1])
                if np.isfinite(n_opt).all():
                    ax.plot(n_opt, law(g, n_opt, d_opt), marker="*", ms=13, color=colors[arch], mec="black",
                            mew=0.6, ls="none", zorder=5)
            ax.plot(s["params"], s["loss"], "o", color=colors[arch], ms=5, mec="white", mew=0.6, zorder=4)
        loglog(ax)
        ax.set_xlim(n_grid[0], n_grid[-1])
        ax.set_title(f"C = {short_sci(lo)} to {short_sci(hi)} FLOPs, {len(sub)} runs")
        ax.set_xlabel(N_LABEL)
    for ax in axes[:: _ncols(len(bands))]:
        ax.set_ylabel(LOSS_LABEL)
    extra = [Line2D([], [], marker="*", ms=11, color="0.5", mec="black", ls="none", label="fitted optimum N_opt(C)")]
    extra += [Line2D([], [], ls="none", label=f"{a}: FLOPs/token = {laws[a][0]:.3g} N^{laws[a][1]:.3f}"
                     + (" (no flops column: 6N)" if laws[a][2] == "6ND" else "")) for a in inputs.archs]
    arch_legend(fig, inputs, colors, extra=extra)
    if not inputs.fits:
        note(fig, no_fits_text(inputs))
    return fig


def frontier_page(inputs: ReportInputs) -> Figure:
    """Page 5: compute-optimal N_opt(C) and D_opt(C) per architecture on its own FLOPs, with bootstrap bands; the
    C = 6ND closed form as a thin labelled alternative."""
    fig = new_page("Compute-optimal frontier",
                   "C = training FLOPs as each architecture really spends them: k N^gamma per token, fitted to its "
                   "runs' `flops` column (attention included). N_opt(C) minimises the joint fit L(N, D) along "
                   "C = k N^gamma D; "
                   "shaded: bootstrap band. Thin dotted: the alternative C = 6ND closed form N_opt = G (C/6)^a, "
                   "G = (alpha A / (beta B))^(1/(alpha+beta)), a = beta/(alpha+beta), which ignores attention FLOPs. "
                   "Grey: the C range of done runs; beyond it the curves extrapolate.")
    colors = arch_colors(inputs.archs)
    if not inputs.fits:
        note(fig, no_fits_text(inputs))
        return _no_done_page(fig, "frontier needs fits")
    fitted = [a for a in inputs.archs if inputs.group_fit(a) is not None]
    if not fitted:
        note(fig, "no architecture has a usable fit: " +
             "; ".join(f"{a}: {tables.group_status(inputs, a)}" for a in inputs.archs))
        return _no_done_page(fig, "frontier needs at least one fitted architecture")
    done = inputs.done
    laws = {a: flops_law(inputs, a) for a in inputs.archs}
    if len(done):
        c_data = np.array([laws[a][0] * n ** laws[a][1] * t for a, n, t in
                           zip(done["arch"], done["params"].to_numpy(float), done["tokens"].to_numpy(float))])
        c_lo, c_hi = c_data.min(), c_data.max()
        n_lo, n_hi = done["params"].min() / 1e3, done["params"].max() * 1e4
    else:
        c_lo, c_hi, n_lo, n_hi = 1e15, 1e18, 1e3, 1e12
    c = np.geomspace(c_lo / 10, c_hi * 100, 60)
    axes = fig.subplots(1, 2, squeeze=True)
    fig.subplots_adjust(left=0.07, right=0.78, top=0.86, bottom=0.24, wspace=0.25)
    lv = tables.level(inputs)
    handles = []
    for arch in inputs.archs:
        g = inputs.group_fit(arch)
        if g is None:
            handles.append(Line2D([], [], color=colors[arch], ls=":",
                                  label=f"{arch}: {tables.group_status(inputs, arch)}"))
            continue
        ls, suffix = fit_style(g)
        kf, gam, src = laws[arch]
        n_opt, d_opt = frontier_flops(g, c, kf, gam, n_lo, n_hi)
        n6, d6 = frontier(g, c)  # NaN where the law has no minimum (an unidentified fit): nothing drawn
        thin = dict(ls=":", lw=0.9, zorder=2)
        for ax, y, style in ((axes[0], n_opt, dict(ls=ls, zorder=3)), (axes[1], d_opt, dict(ls=ls, zorder=3)),
                             (axes[0], n6, thin), (axes[1], d6, thin)):
            if np.any(np.isfinite(y) & (np.asarray(y) > 0)):
                ax.plot(c, y, color=colors[arch], **style)
        s = samples_of(g)
        if s is not None:
            sn, sd = frontier_flops(s, c, kf, gam, n_lo, n_hi)
            for ax, v in ((axes[0], sn), (axes[1], sd)):
                b = band(v, lv)
                if b is not None:
                    ax.fill_between(c, b[0], b[1], color=colors[arch], alpha=0.18, lw=0, zorder=1)
        a_txt = ("not identified" if not tables.identified(g) else
                 tables.fmt_ci(tables.exponent_a(g), tables.group_ci(g, "a", lv)))
        handles.append(Line2D([], [], color=colors[arch], ls=ls,
                              label=f"{arch}{suffix}\n  FLOPs/token {kf:.3g} N^{gam:.3f}"
                                    + (" (6N: no flops column)" if src == "6ND" else "")
                                    + f"\n  6ND exponent a = {a_txt}"))
        handles.append(Line2D([], [], color=colors[arch], ls=":", lw=0.9, label=f"{arch}: C = 6ND alternative"))
    for ax, what in ((axes[0], "N_opt: non-embedding parameters"), (axes[1], "D_opt: training tokens")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axvspan(c_lo, c_hi, color="0.85", alpha=0.5, lw=0, zorder=0)
        set_log_ticks(ax.xaxis, *ax.get_xlim())
        set_log_ticks(ax.yaxis, *ax.get_ylim())
        ax.set_xlabel(C_LABEL)
        ax.set_ylabel(what)
    axes[0].set_title("compute-optimal model size N_opt(C)")
    axes[1].set_title("compute-optimal training tokens D_opt(C)")
    handles.append(Patch(color="0.85", alpha=0.5, label="C range of done runs"))
    handles.append(Patch(color="0.5", alpha=0.3, label=f"{lv:.0%} bootstrap band"))
    legend(fig, handles)
    return fig


def _draw_table(fig: Figure, rect, header, rows, fontsize=8.5, title=None, col_widths=None, row_colors=None,
                left_cols=()):
    ax = fig.add_axes(rect)
    ax.axis("off")
    if title:
        ax.set_title(title, loc="left", fontsize=10.5, weight="bold")
    if not rows:
        ax.text(0, 0.9, "(none)", fontsize=9, va="top", transform=ax.transAxes)
        return ax
    if col_widths is not None:  # relative widths: the table fills its axes exactly (bbox)
        total = float(sum(col_widths))
        col_widths = [w / total for w in col_widths]
    tab = ax.table(cellText=rows, colLabels=header, cellLoc="center", colLoc="center", colWidths=col_widths,
                   bbox=[0, 0, 1, 1])
    tab.auto_set_font_size(False)
    tab.set_fontsize(fontsize)
    for (r, c), cell in tab.get_celld().items():
        cell.set_edgecolor("0.8")
        cell.set_linewidth(0.5)
        if r == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#EEEEEE")
        elif row_colors is not None and row_colors[r - 1]:
            cell.set_facecolor(row_colors[r - 1])
        if c in left_cols and r > 0:
            cell._loc = "left"  # Cell positions its text by _loc; there is no public per-cell setter
            cell.set_text_props(ha="left")
            cell.PAD = 0.03
    return ax


def parameter_table(inputs: ReportInputs) -> Figure:
    """Page 6: E, A, B, alpha, beta, a per architecture and method with CIs; differences; fixed-budget fits."""
    lv = tables.level(inputs)
    fig = new_page("Fitted parameters",
                   f"Joint fit L(N, D) = E + A/N^alpha + B/D^beta per architecture and method (* = primary method, "
                   f"Chinchilla Approach 3; varpro = variable projection), {lv:.0%} bootstrap intervals in brackets. "
                   "A and B trade off against alpha and beta (ill-conditioned); a = beta/(alpha+beta) is better "
                   "determined. Fixed-budget tables: LOCAL slopes of log L against log N at each fixed D (and against "
                   "log D at fixed N), the form of Roy et al. 2025, Table 3, with t intervals; at fixed D that slope "
                   "is alpha A N^-alpha / L, not alpha, so it can move opposite to alpha between architectures. "
                   "'difference' = second architecture minus first; 'sat. fit' = the exponent of the saturating form "
                   "L = E + A/N^alpha (or E + B/D^beta) at that budget.")
    y, row_h, gap = 0.88, 0.025, 0.06
    if inputs.fits:
        header, rows = tables.parameter_rows(inputs)
        h = row_h * (len(rows) + 1)
        widths = [0.07, 0.08] + [0.11] * 6 + [0.04, 0.19]
        _draw_table(fig, [0.04, y - h - 0.02, 0.92, h], header, rows, fontsize=7.5,
                    title="Joint fit L(N, D)", col_widths=widths)
        y -= h + 0.035
        for line in tables.fit_notes(inputs):
            for part in textwrap.wrap(line, 200):
                fig.text(0.04, y, part, fontsize=7, va="top", color="#A00000")
                y -= 0.0165
        y -= gap - 0.035
        header, rows = tables.comparison_rows(inputs)
        if rows:
            h = row_h * (len(rows) + 1)
            _draw_table(fig, [0.04, y - h - 0.02, 0.6, h], header, rows, fontsize=8,
                        title="Differences between architectures", col_widths=[0.2, 0.1, 0.3, 0.3, 0.25])
            y -= h + gap
    else:
        note(fig, no_fits_text(inputs), y=y)
        y -= 0.06
    if inputs.fixed_budget:
        for which, title in (("fixed_tokens", "Fixed token budget: exponent of N"),
                             ("fixed_params", "Fixed model size: exponent of D")):
            header, rows = tables.fixed_budget_rows(inputs, which)
            room = int((y - 0.12) / row_h) - 1
            if len(rows) > room:
                dropped = len(rows) - max(room - 1, 0)
                rows = rows[: max(room - 1, 0)] + [[f"... {dropped} more"] + [""] * (len(header) - 1)]
            h = row_h * (len(rows) + 1)
            n_arch = sum(h.endswith(": pts") for h in header)
            widths = ([0.08] + [0.05] * n_arch + [0.15] * n_arch + ([0.15] if "difference" in header else [])
                      + [0.06] * n_arch + [0.07] * n_arch)
            _draw_table(fig, [0.04, y - h - 0.02, 0.92, h], header, rows, fontsize=6.5, title=title,
                        col_widths=widths if len(widths) == len(header) else None)
            y -= h + gap
    else:
        fig.text(0.04, y, "no fixed-budget fits: run `python -m fitting fixed-budget "
                 f"{inputs.results_path.name} --json fixed_budget.json`", fontsize=9.5, color="#A00000", va="top",
                 family="monospace")
    return fig


def residuals(inputs: ReportInputs) -> Figure:
    """Page 7: observed minus fitted log loss vs N and vs D, per architecture."""
    fig = new_page("Residuals of the joint fit",
                   "Residual = log(observed loss) - log(fitted L(N, D)) for each done run, against N (non-embedding "
                   "parameters) and D (training tokens). A trend with N or D means the functional form misses "
                   "something there; rms in the legend.")
    colors = arch_colors(inputs.archs)
    axes = fig.subplots(1, 2, sharey=True)
    fig.subplots_adjust(left=0.08, right=0.78, top=0.86, bottom=0.2, wspace=0.1)
    done = inputs.done
    handles = []
    for arch in inputs.archs:
        s = done[done["arch"] == arch]
        g = inputs.group_fit(arch)
        if g is None or s.empty:
            why = tables.group_status(inputs, arch) if inputs.fits else "no fits"
            handles.append(Line2D([], [], color=colors[arch], marker="o", ls="none", alpha=0.3,
                                  label=f"{arch}: {why if s.size else 'no done runs'}"))
            continue
        r = np.log(s["loss"].to_numpy()) - np.log(law(g, s["params"], s["tokens"]))
        _, suffix = fit_style(g)
        mk = "o" if not suffix else "x"
        axes[0].plot(s["params"], r, mk, color=colors[arch], ms=5, zorder=3)
        axes[1].plot(s["tokens"], r, mk, color=colors[arch], ms=5, zorder=3)
        rms = float(np.sqrt(np.mean(r ** 2)))
        handles.append(Line2D([], [], color=colors[arch], marker=mk, ls="none",
                              label=f"{arch}{suffix}: rms {rms:.4f}"))
    for ax, xl in ((axes[0], N_LABEL), (axes[1], D_LABEL)):
        ax.set_xscale("log")
        set_log_ticks(ax.xaxis, *ax.get_xlim())
        ax.axhline(0, color="0.3", lw=0.8)
        ax.set_xlabel(xl)
    axes[0].set_ylabel("log(observed) - log(fitted) loss")
    legend(fig, handles)
    if not inputs.fits:
        note(fig, no_fits_text(inputs))
    return fig


def training_curves(inputs: ReportInputs) -> Figure:
    """Page 8: loss vs tokens for every run, coloured by size, one panel per architecture."""
    fig = new_page("Training curves",
                   "Lines: training loss vs tokens processed for every run in the curves file, coloured by model size "
                   "(N = non-embedding parameters); points: validation loss. Runs not done (failed, running, ...) are drawn thin and grey.")
    cur = inputs.curves
    if cur is None or cur.empty:
        note(fig, f"no training curves: {inputs.results_path.stem}_curves.csv is absent or empty")
        return _no_done_page(fig, "no curves to plot")
    colors = size_colors(inputs.results)
    archs = inputs.archs
    axes = fig.subplots(1, len(archs), squeeze=False, sharex=True, sharey=True)[0]
    fig.subplots_adjust(left=0.07, right=0.84, top=0.86, bottom=0.2, wspace=0.08)
    info = inputs.results.set_index("run_id")
    y_hi = []
    for ax, arch in zip(axes, archs):
        sub = cur[cur["arch"] == arch]
        if sub.empty:
            ax.text(0.5, 0.5, "no curves yet", transform=ax.transAxes, ha="center", va="center", color="#A00000")
        for run_id, c in sub.groupby("run_id", sort=True):
            size = info["size"].get(run_id, None) if run_id in info.index else None
            status = info["status"].get(run_id, "") if run_id in info.index else ""
            col = colors.get(size, "0.5") if status == "done" else "0.6"
            lw = 1.1 if status == "done" else 0.7
            ax.plot(c["tokens"], c["train_loss"], color=col, lw=lw, alpha=0.9)
            v = c[np.isfinite(c["val_loss"])]
            ax.plot(v["tokens"], v["val_loss"], "o", color=col, ms=3)
            tl = c["train_loss"].to_numpy()
            if len(tl):
                y_hi.append(np.nanquantile(tl, 0.9))
        ax.set_xscale("log")
        ax.set_title(f"{arch} ({sub['run_id'].nunique()} runs)")
        ax.set_xlabel("tokens processed")
        ax.yaxis.set_tick_params(labelleft=True)
    axes[0].set_ylabel("loss (nats/token)")
    set_log_ticks(axes[0].xaxis, *axes[0].get_xlim())
    lo = np.nanmin(cur["train_loss"]) if len(cur) else 0
    if y_hi:
        axes[0].set_ylim(lo - 0.05 * abs(lo), max(y_hi) * 1.02)
    handles = []
    for s in size_order(inputs.results):
        n = inputs.results.loc[inputs.results["size"] == s, "params"].median()
        handles.append(Line2D([], [], color=colors[s], label=f"{s} (N ~ {tables.fmt(n, 'sci')})"))
    handles.append(Line2D([], [], color="0.6", lw=0.7, label="not done"))
    handles.append(Line2D([], [], color="0.3", marker="o", ls="none", ms=3, label="validation loss"))
    legend(fig, handles, (0.855, 0.5), title="size")
    return fig


RUNS_PER_PAGE = 34


def runs_table(inputs: ReportInputs) -> list[Figure]:
    """Page 9 (and more when needed): every run with shape, N, D, FLOPs, losses, throughput, status and reason."""
    header, rows, statuses = tables.runs_rows(inputs)
    pages = []
    chunks = [rows[i:i + RUNS_PER_PAGE] for i in range(0, len(rows), RUNS_PER_PAGE)] or [[]]
    for p, chunk in enumerate(chunks):
        st = statuses[p * RUNS_PER_PAGE:(p + 1) * RUNS_PER_PAGE]
        title = "Runs" + (f" ({p + 1}/{len(chunks)})" if len(chunks) > 1 else "")
        fig = new_page(title,
                       "N = non-embedding parameters, D = training tokens; FLOPs = the model's own count "
                       "(tokens x FLOPs per token, forward + backward, attention included), not 6ND. Shape: layers x "
                       "width x heads, and for 2-simplicial models the period of 2-simplicial layers and windows "
                       "w1/w2. Reason: last line of the run's error.")
        colors = ["#FBE3E3" if s in ("failed", "diverged", "timeout") else
                  ("#FFF6D8" if s != "done" else None) for s in st]
        widths = [0.15, 0.06, 0.035, 0.14, 0.05, 0.05, 0.055, 0.05, 0.05, 0.05, 0.05, 0.24]
        h = min(0.022 * (len(chunk) + 1), 0.8)
        _draw_table(fig, [0.02, 0.9 - h, 0.96, h], header, chunk, fontsize=6.5, col_widths=widths, row_colors=colors,
                    left_cols=(0, 3, 11))
        pages.append(fig)
    return pages


def _numeric_col(df: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(df[col], errors="coerce").to_numpy(float) if col in df.columns else np.full(len(df), np.nan)


def lr_cells(results: pd.DataFrame) -> pd.DataFrame:
    """Done runs of the cells that swept several learning rates (collect's CELL), with a `budget` label column."""
    if "lr" not in results.columns or "best_lr" not in results.columns:
        return results.iloc[0:0]
    r = results[(results["status"] == "done") & np.isfinite(pd.to_numeric(results["val_loss"], errors="coerce"))]
    r = r.assign(lr=pd.to_numeric(r["lr"], errors="coerce"), val_loss=pd.to_numeric(r["val_loss"], errors="coerce"),
                  budget=[f"D={short_sci(t)}" if np.isfinite(t) else f"C={short_sci(c)}" for t, c in
                         zip(_numeric_col(r, "budget_tokens"), _numeric_col(r, "budget_flops"))])
    swept = r.groupby(["arch", "size", "budget", "seed"])["lr"].transform("nunique")
    return r[swept > 1]


def loss_vs_lr(inputs: ReportInputs) -> list[Figure]:
    """Loss against learning rate per size (panels) and architecture (colour), one line per (budget, seed) cell,
    its best lr starred; cells whose best lr is the smallest or largest swept are named in red. No page when the
    sweep has no LR axis."""
    r = lr_cells(inputs.results)
    if r.empty:
        return []
    fig = new_page("Loss vs learning rate, per model size",
                   "Each line: one (architecture, budget, seed) cell of the LR axis, final validation loss at each "
                   "peak learning rate swept; star: the cell's best, which the fits use (column best_lr). A best lr "
                   "at the edge of the swept range means the optimum may lie outside it: widen the multipliers.")
    colors = arch_colors(inputs.archs)
    sizes = [s for s in size_order(r) if s in set(r["size"])]
    axes, _ = panel_grid(fig, len(sizes), sharey=False)
    edge = []
    for ax, size in zip(axes, sizes):
        sub = r[r["size"] == size]
        for (arch, budget, seed), cell in sub.groupby(["arch", "budget", "seed"], sort=True):
            cell = cell.sort_values("lr")
            ax.plot(cell["lr"], cell["val_loss"], "-o", color=colors[arch], ms=3.5, lw=1, alpha=0.85)
            best = cell.loc[cell["val_loss"].idxmin()]
            ax.plot([best["lr"]], [best["val_loss"]], "*", color=colors[arch], ms=11, mec="black", mew=0.5, zorder=5)
            if best["lr"] in (cell["lr"].min(), cell["lr"].max()):
                edge.append(f"{arch}/{size}/{budget}/seed {seed} ({'low' if best['lr'] == cell['lr'].min() else 'high'})")
        loglog(ax, ylog=False)
        ax.set_title(f"size {size}")
        ax.set_xlabel("peak learning rate")
    for ax in axes[:: _ncols(len(sizes))]:
        ax.set_ylabel(LOSS_LABEL)
    handles = [Line2D([], [], color=colors[a], marker="o", ms=4, label=a) for a in inputs.archs if a in set(r["arch"])]
    handles.append(Line2D([], [], color="black", marker="*", ls="none", ms=9, label="best lr of a cell"))
    legend(fig, handles)
    if edge:
        text = f"{len(edge)} cell(s) with the best lr at the edge of the range: " + "; ".join(edge)
        note(fig, textwrap.fill(textwrap.shorten(text, width=270, placeholder=" ..."), width=135), y=0.93)
    return [fig]


def loss_per_eval_set(inputs: ReportInputs) -> list[Figure]:
    """The architectures compared on each evaluation set: loss minus the first architecture's loss at the same
    (size, budget, seed), against N, one line per budget. No page when the sweep has no evaluation sets."""
    names = eval_sets(inputs.results)
    done = inputs.done
    archs = [a for a in inputs.archs if a in set(done["arch"])]
    if not names or len(archs) < 2:
        return []
    ref = archs[0]
    cols = ["val_loss"] + [f"loss_{n}" for n in names]
    fig = new_page(f"Loss per evaluation set, relative to {ref}",
                   f"Each panel: one evaluation set (val: the training corpus's validation split). y: final loss of an "
                   f"architecture minus {ref}'s at the same size, budget and seed (mean over seeds), in nats/token; "
                   f"below zero the architecture does better on that set. Lines: one per token budget. Runs: each "
                   f"cell's best learning rate.")
    key = ["size", "tokens", "seed"]
    table = done.assign(**{c: pd.to_numeric(done[c], errors="coerce") for c in cols if c in done.columns})
    base = table[table["arch"] == ref].set_index(key)
    axes, _ = panel_grid(fig, len(cols), sharey=False)
    budgets = sorted(table["tokens"].unique())
    cmap = mpl.colormaps["viridis"]
    styles = ["-", "--", ":", "-."]
    for ax, col in zip(axes, cols):
        for j, arch in enumerate(archs[1:]):
            other = table[table["arch"] == arch].set_index(key)
            both = other[[col, "params"]].join(base[[col]].add_suffix("_ref"), how="inner").reset_index()
            both["diff"] = both[col] - both[f"{col}_ref"]
            for i, d in enumerate(budgets):
                b = both[both["tokens"] == d].groupby("params")["diff"].mean().sort_index()
                if len(b):
                    ax.plot(b.index, b.values, styles[j % 4], marker="o", ms=4,
                            color=cmap(0.9 * i / max(len(budgets) - 1, 1)))
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set_xscale("log")
        ax.set_title("val" if col == "val_loss" else col.removeprefix("loss_"))
        ax.set_xlabel(N_LABEL)
    for ax in axes[:: _ncols(len(cols))]:
        ax.set_ylabel(f"loss - {ref} loss")
    handles = [Line2D([], [], color=cmap(0.9 * i / max(len(budgets) - 1, 1)), marker="o", label=f"D = {short_sci(d)}")
               for i, d in enumerate(budgets)]
    handles += [Line2D([], [], color="black", ls=styles[j % 4], label=f"{a} - {ref}") for j, a in enumerate(archs[1:])]
    legend(fig, handles)
    return [fig]


def eval_set_fits(inputs: ReportInputs) -> list[Figure]:
    """The exponents and their differences fitted on each evaluation set (fits_<name>.json beside fits.json), with
    each set's reasons where a difference is not identified. No page without evaluation-set fits."""
    header, rows = tables.eval_set_rows(inputs)
    if not inputs.eval_fits or not rows:
        return []
    lv = tables.level(inputs)
    fig = new_page("Exponents per evaluation set",
                   f"L(N, D) fitted separately to the final loss on each evaluation set (val: the training corpus's "
                   f"validation split, fits.json; the others: fits_<name>.json), the same runs and cells as the "
                   f"headline. {lv:.0%} intervals in brackets, calibrated as the headline's. The sets share the "
                   f"runs, so their verdicts are not independent evidence.")
    row_h, y = 0.03, 0.86
    h = row_h * (len(rows) + 1)
    _draw_table(fig, [0.04, y - h, 0.92, h], header, rows, fontsize=8, left_cols=(0,))
    y -= h + 0.04
    for name, view in tables.eval_set_views(inputs):
        for line in tables.verdict_lines(view):
            if line.startswith(("Intervals:", "Multiplicity:")):
                continue
            for part in textwrap.wrap(f"{name}: {line}", 170):
                fig.text(0.04, y, part, fontsize=7.5, va="top")
                y -= 0.018
            if y < 0.06:
                return [fig]
    return [fig]


PAGES = (
    ("01_title", title_page),
    ("02_loss_vs_params", loss_vs_params),
    ("03_loss_vs_tokens", loss_vs_tokens),
    ("04_isoflop", isoflop),
    ("05_frontier", frontier_page),
    ("06_parameters", parameter_table),
    ("07_residuals", residuals),
    ("08_training_curves", training_curves),
    ("08b_loss_vs_lr", loss_vs_lr),
    ("08c_eval_sets", loss_per_eval_set),
    ("08d_eval_set_fits", eval_set_fits),
    ("09_runs", runs_table),
)
