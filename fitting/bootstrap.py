"""Bootstrap over runs: resample runs with replacement, refit each resample from several starts, percentile CIs.

A resample is a vector of counts over runs (``counts[i]`` copies of run i), so the fit is the weighted SUM of the
same per-run losses; nothing is copied. Each Approach-3 resample starts from the full-data optimum plus the best
few published-grid starts *for that resample* (their objective values are one matrix-vector product with the
per-run Huber losses at every grid start, computed once), refines them together with the batched LM and polishes
the best end point with L-BFGS-B (tight tolerances, as the full fit). Resamples whose runs cover one N, one D or
fewer than 5 distinct (N, D) points are not identifiable: they are skipped and counted, never silently fitted.
Resamples run in a fork-based process pool; the counts are drawn up front, so results do not depend on ``jobs``.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from . import chinchilla, varpro
from ._threads import set_blas_threads, single_blas_thread
from .chinchilla import compute_optimal, predict_loss
from .result import FitResult

SAMPLE_NAMES = ("E", "A", "B", "alpha", "beta")


def resample_counts(n: int, n_boot: int, seed) -> np.ndarray:
    """(n_boot, n) counts of each run in each resample (sampling n runs with replacement)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)


def identifiable(N, D, counts) -> bool:
    use = np.asarray(counts) > 0
    pts = set(zip(np.asarray(N)[use].tolist(), np.asarray(D)[use].tolist()))
    return len(np.unique(np.asarray(N)[use])) >= 2 and len(np.unique(np.asarray(D)[use])) >= 2 and len(pts) >= 5


class Approach3Refitter:
    """Refits one resample by Approach 3; picklable state shared with worker processes."""

    def __init__(self, N, D, L, x_full, *, delta=chinchilla.DEFAULT_DELTA, starts="published", bound_e=False,
                 n_grid_starts: int = 4, lm_iters: int = 30, n_polish: int = 1):
        self.N, self.D, self.L = (np.asarray(v, dtype=float) for v in (N, D, L))
        self.x_full = np.asarray(x_full, dtype=float)
        self.delta, self.bound_e = delta, bound_e
        self.grid = chinchilla.make_starts(starts)
        self.n_grid_starts, self.lm_iters, self.n_polish = n_grid_starts, lm_iters, n_polish
        full = chinchilla.Problem(self.N, self.D, self.L, delta=delta)
        r = full._lse(self.grid)[0] - full.logL  # (S, n) residual of every run at every grid start
        a = np.abs(r)
        self.H = np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))

    def __call__(self, counts: np.ndarray):
        prob = chinchilla.Problem(self.N, self.D, self.L, counts, delta=self.delta, bound_e=self.bound_e)
        gv = np.einsum("sn,n->s", self.H, counts.astype(float))  # einsum avoids BLAS threads in workers
        top = np.argsort(gv)[: self.n_grid_starts]
        X, f = chinchilla.lm_batch(prob, np.vstack([self.x_full[None, :], self.grid[top]]), self.lm_iters)
        best = None
        for i in chinchilla._distinct_best(X, f, self.n_polish):
            res = chinchilla.polish_restarted(prob, X[i])
            if best is None or (np.isfinite(res.fun) and res.fun < best.fun):
                best = res
        status, _, _ = chinchilla._status_from(prob, best, chinchilla.GTOL)
        return best.x, status == 0


class VarproRefitter:
    """Refits one resample by variable projection (coarse exponent grid + the full-data optimum as starts)."""

    def __init__(self, N, D, L, x_full, *, delta=chinchilla.DEFAULT_DELTA, **_):
        self.N, self.D, self.L = (np.asarray(v, dtype=float) for v in (N, D, L))
        self.x_full, self.delta = np.asarray(x_full, dtype=float), delta

    def __call__(self, counts: np.ndarray):
        prob = varpro.VarproProblem(self.N, self.D, self.L, counts, delta=self.delta)
        res = varpro.fit_problem(prob, grid=varpro.COARSE_GRID, extra_starts=[self.x_full])
        return res.x, bool(res.success)


REFITTERS = {"approach3": Approach3Refitter, "varpro": VarproRefitter}
_WORKER = None  # the refitter inherited by forked workers


def _init_worker():
    set_blas_threads(1)


def _run_chunk(chunk: np.ndarray):
    xs, oks, skipped = [], [], []
    for counts in chunk:
        if not identifiable(_WORKER.N, _WORKER.D, counts):
            xs.append(np.full(5, np.nan)); oks.append(False); skipped.append(True)
            continue
        x, ok = _WORKER(counts)
        xs.append(x); oks.append(ok); skipped.append(False)
    return np.array(xs), np.array(oks), np.array(skipped)


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def run_refits(refitter, counts: np.ndarray, jobs: int | None = None):
    """Apply ``refitter`` to every row of ``counts``; a fork-based pool when jobs > 1 (results keep row order)."""
    global _WORKER
    jobs = default_jobs() if jobs is None else max(1, int(jobs))
    _WORKER = refitter
    try:
        if jobs == 1 or len(counts) < 8 or "fork" not in mp.get_all_start_methods():
            with single_blas_thread():
                parts = [_run_chunk(counts)]
        else:
            chunks = np.array_split(counts, min(jobs * 4, len(counts)))  # no empty chunks
            with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("fork"),
                                     initializer=_init_worker) as pool:
                parts = list(pool.map(_run_chunk, chunks))
    finally:
        _WORKER = None
    xs = np.concatenate([p[0] for p in parts]) if parts else np.empty((0, 5))
    return xs, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


def bootstrap(N, D, L, full: FitResult, *, n_boot: int = 1000, seed=0, counts: np.ndarray | None = None,
              method: str = "approach3", delta: float = chinchilla.DEFAULT_DELTA, starts="published",
              bound_e: bool = False, jobs: int | None = None, n_grid_starts: int = 4) -> FitResult:
    """Bootstrap a fit over runs; returns samples (rows E, A, B, alpha, beta; NaN where skipped) and counts.

    ``counts`` (n_boot, n) overrides the resampling (used by the paired comparison).
    """
    N, D, L = (np.asarray(v, dtype=float) for v in (N, D, L))
    if counts is None:
        counts = resample_counts(len(L), n_boot, seed)
    refitter = REFITTERS[method](N, D, L, full.x, delta=delta, starts=starts, bound_e=bound_e,
                                 n_grid_starts=n_grid_starts)
    xs, ok, skipped = run_refits(refitter, counts, jobs)
    samples = np.full((len(counts), 5), np.nan)
    good = ok & np.isfinite(xs).all(axis=1)
    a, b, e, al, be = xs[good].T
    samples[good] = np.column_stack([np.exp(e), np.exp(a), np.exp(b), al, be])
    return FitResult(method=method, samples=samples, converged_mask=good, n=int(len(counts)),
                     n_converged=int(good.sum()), n_skipped=int(skipped.sum()), seed=seed)


# ---------------------------------------------------------------------------------------------- intervals
def derived_samples(samples: np.ndarray, compute_budgets=(), predict=()) -> dict[str, np.ndarray]:
    """Per-resample values of every reported quantity, keyed as in fits.json ``ci``."""
    E, A, B, al, be = samples.T
    p = {"E": E, "A": A, "B": B, "alpha": al, "beta": be}
    with np.errstate(all="ignore"):
        out = dict(p, a=be / (al + be))
        for C in compute_budgets:
            n_opt, d_opt = compute_optimal(p, C)
            out[f"N_opt(C={C:.3g})"] = n_opt
            out[f"D_opt(C={C:.3g})"] = d_opt
        for n, d in predict:
            out[f"L(N={n:.3g},D={d:.3g})"] = predict_loss(p, n, d)
    return out


def derived_point(params: dict, compute_budgets=(), predict=()) -> dict[str, float]:
    row = np.array([[params[k] for k in SAMPLE_NAMES]])
    return {k: float(v[0]) for k, v in derived_samples(row, compute_budgets, predict).items()}


def percentile_ci(values: np.ndarray, level: float = 0.95):
    """Percentile interval [lo, hi] of the finite values; None when there are fewer than 2."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return None
    q = (1.0 - level) / 2.0
    lo, hi = np.quantile(v, [q, 1.0 - q])
    return [float(lo), float(hi)]


# ------------------------------------------------------------------------- wild cluster bootstrap (fixed design)
# Webb's six-point weights (Webb 2023, "Reworking wild bootstrap-based inference for clustered errors", Canadian
# J. Econ. 56(3); working paper 2013): mean 0, variance 1, and 6^G distinct draws where Rademacher signs give only
# 2^G, which matters with the 4-10 clusters (model sizes) of a scaling sweep.
WEBB = np.array([-np.sqrt(1.5), -1.0, -np.sqrt(0.5), np.sqrt(0.5), 1.0, np.sqrt(1.5)])


def cell_weights(n_cells: int, n_boot: int, seed) -> np.ndarray:
    """(n_boot, n_cells) Webb weights, one per error-sharing cell and resample."""
    rng = np.random.default_rng(seed)
    return WEBB[rng.integers(0, len(WEBB), size=(n_boot, n_cells))]


def adjusted_residuals(N, D, L, x, cells) -> np.ndarray:
    """Log residuals of the fit at x, each cell's block scaled by (I - H_gg)^(-1/2) (the CR2 correction of Bell &
    McCaffrey 2002), H = J (J'J)^+ J' the hat matrix of the linearised model.

    A fitted model absorbs part of every cluster's shared error (most of it when clusters are few), so raw
    residuals understate the errors a resample should carry; CR2 undoes that shrinkage to first order.
    """

    prob = chinchilla.Problem(N, D, L)
    r = prob.logL - prob._lse(np.asarray(x, float)[None, :])[0][0]
    J = chinchilla.log_law_jacobian(chinchilla.to_params(x), N, D)
    s = np.sqrt(np.maximum((J * J).sum(axis=0), 1e-300))
    Jn = J / s
    H = Jn @ np.linalg.pinv(Jn.T @ Jn) @ Jn.T
    out = np.empty_like(r)
    cells = np.asarray(cells)
    for c in np.unique(cells):
        idx = np.flatnonzero(cells == c)
        M = np.eye(len(idx)) - H[np.ix_(idx, idx)]
        w, U = np.linalg.eigh((M + M.T) / 2)
        # a cell the model fits exactly (leverage 1) has no residual to rescale; cap the inflation at 10x
        inv_sqrt = U @ np.diag(1.0 / np.sqrt(np.maximum(w, 1e-2))) @ U.T
        out[idx] = inv_sqrt @ r[idx]
    return out


class _RowsProblem(chinchilla.Problem):
    """The Approach-3 objective with one vector of log losses per row of X (a fixed design, resampled losses)."""

    def __init__(self, N, D, logY, *, delta: float, e_max=None):
        self.logN = np.log(np.asarray(N, dtype=float))
        self.logD = np.log(np.asarray(D, dtype=float))
        self.logL = np.asarray(logY, dtype=float)  # (S, n)
        self.w = np.ones(self.logL.shape[1])
        self.delta = float(delta)
        self.reduction = "sum"
        self.e_max = np.inf if e_max is None else e_max  # scalar or (S,)

    def rows(self, mask: np.ndarray) -> "_RowsProblem":
        """The rows `mask` selects, with their own data (and bounds)."""
        sub = object.__new__(_RowsProblem)
        sub.__dict__.update(self.__dict__, logL=self.logL[mask],
                            e_max=self.e_max[mask] if np.ndim(self.e_max) else self.e_max)
        return sub


def refit_rows(N, D, logY: np.ndarray, x_full, *, delta=chinchilla.DEFAULT_DELTA, bound_e=False,
               extra_starts=(), lm_iters: int = 60, polish: bool = True):
    """Approach-3 fits of many loss vectors on one design: (x (B, 5), converged (B,), n_polished).

    Each row starts from the full-data optimum and ``extra_starts``; a batched Levenberg-Marquardt takes all of
    them at once, the best end point per row is kept, and rows whose projected gradient is not small by the
    rule of the full fit (chinchilla._status_from) are polished by L-BFGS-B one at a time.
    """
    N, D = np.asarray(N, float), np.asarray(D, float)
    logY = np.atleast_2d(np.asarray(logY, float))
    B = len(logY)
    starts = np.vstack([np.asarray(x_full, float)[None, :]] + [np.atleast_2d(s) for s in extra_starts if len(s)])
    K = len(starts)
    Y = np.repeat(logY, K, axis=0)
    X0 = np.tile(starts, (B, 1))
    e_max = Y.min(axis=1) if bound_e else None
    with single_blas_thread():
        prob = _RowsProblem(N, D, Y, delta=delta, e_max=e_max)
        X, f = chinchilla.lm_batch(prob, X0, lm_iters)
        f = np.where(np.isfinite(f), f, np.inf).reshape(B, K)
        best = np.argmin(f, axis=1)
        X = X.reshape(B, K, 5)[np.arange(B), best]
        rows = _RowsProblem(N, D, logY, delta=delta, e_max=logY.min(axis=1) if bound_e else None)
        _, g = rows.values_grads(X)
        if bound_e:
            at = (X[:, 2] >= rows.e_max - 1e-12) & (g[:, 2] < 0)
            g[at, 2] = 0.0
        gnorm = np.linalg.norm(g, axis=1)
        scale = delta * len(N) * max(np.abs(rows.logN).max(), np.abs(rows.logD).max(), 1.0)
        ok = np.isfinite(gnorm) & (gnorm <= 1e-6 * scale)
        n_polished = 0
        if polish:
            for i in np.flatnonzero(~ok):
                prob_i = chinchilla.Problem(N, D, np.exp(logY[i]), delta=delta, bound_e=bound_e)
                res = chinchilla.polish_restarted(prob_i, X[i])
                n_polished += 1
                status, _, _ = chinchilla._status_from(prob_i, res, chinchilla.GTOL)
                if np.isfinite(res.fun):
                    X[i] = res.x
                ok[i] = status == 0
    return X, ok, n_polished


def log_fitted(N, D, x) -> np.ndarray:
    """log L(N, D) of the law at x = (log A, log B, log E, alpha, beta)."""
    prob = chinchilla.Problem(N, D, np.ones(len(np.asarray(N))))
    return prob._lse(np.asarray(x, float)[None, :])[0][0]


def wild_cluster_losses(N, D, L, x, cells, weights: np.ndarray) -> np.ndarray:
    """Wild cluster bootstrap losses on the fixed design (Cameron, Gelbach & Miller 2008): (B, n) log losses
    fitted + weights[b, cell] * CR2-adjusted residual, so every run of one cell moves with one weight and errors
    shared within a cell stay shared. ``cells[i]`` indexes the columns of ``weights``; one weight matrix for two
    architectures pairs them cell by cell."""
    cells = np.asarray(cells, dtype=int)
    r = adjusted_residuals(N, D, L, x, cells)
    return log_fitted(N, D, x)[None, :] + weights[:, cells] * r[None, :]


def refit_design(N, D, logY: np.ndarray, full: FitResult, *, method: str = "approach3",
                 delta: float = chinchilla.DEFAULT_DELTA, bound_e: bool = False, starts="published",
                 n_grid_starts: int = 3) -> FitResult:
    """Refit every row of resampled log losses ``logY`` (B, n) on the fixed design (N, D).

    Approach 3: all rows at once (``refit_rows``) from the full-data optimum and the ``n_grid_starts`` best
    published starts for the full data. Returns samples (rows E, A, B, alpha, beta; NaN where a refit did not
    converge) and counts, like ``bootstrap``. The design is the same in every resample, so none loses
    identifiability (``n_skipped`` is 0).
    """
    N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    n_polished = 0
    if method == "approach3":
        grid = chinchilla.make_starts(starts)
        y0 = log_fitted(N, D, full.x)
        gv = chinchilla.Problem(N, D, np.exp(y0), delta=delta).values(grid)
        extra = grid[np.argsort(gv)[:n_grid_starts]]
        xs, ok, n_polished = refit_rows(N, D, logY, full.x, delta=delta, bound_e=bound_e, extra_starts=[extra])
    else:
        xs, ok = np.full((len(logY), 5), np.nan), np.zeros(len(logY), bool)
        with single_blas_thread():
            for i, y in enumerate(logY):
                res = varpro.fit_problem(varpro.VarproProblem(N, D, np.exp(y), delta=delta), grid=varpro.COARSE_GRID,
                                         extra_starts=[full.x])
                xs[i], ok[i] = res.x, bool(res.success)
    samples = np.full((len(logY), 5), np.nan)
    good = ok & np.isfinite(xs).all(axis=1)
    a, b, e, al, be = xs[good].T
    samples[good] = np.column_stack([np.exp(e), np.exp(a), np.exp(b), al, be])
    return FitResult(method=method, samples=samples, converged_mask=good, n=int(len(logY)),
                     n_converged=int(good.sum()), n_skipped=0, n_polished=int(n_polished))


# --------------------------------------------------------------- parametric bootstrap with variance components
def variance_components(resid: dict) -> dict:
    """Per-run and per-cell error SDs, and the cross-architecture correlation of cell errors, from residuals.

    ``resid``: {group: (log residuals r, cell labels)}. Method of moments on the one-way layout of each group
    (Searle, Casella & McCulloch 1992, ch. 3), with the fitted law's degrees of freedom taken out: within cells
    the D-terms (B, beta) absorb 2, between cells the N-terms and E (A, alpha, E) absorb 3, so
        sigma_run^2  = sum_g SS_within,g / sum_g (n_g - C_g - 2)
        sigma_cell^2 = (sum_g SS_between,g / sum_g (C_g - 3) - sigma_run^2) / mean runs per cell, floored at 0,
    and rho = mean over matched cells of (cell mean in A) x (cell mean in B) / sigma_cell^2, clipped to [0, 1].
    ``df_run``/``df_cell`` are those denominators (df_cell <= 0: the cell SD cannot be estimated).
    """
    ss_w = ss_b = 0.0
    df_w = df_b = 0
    m_tot = c_tot = 0
    means = {}
    for g, (r, cells) in resid.items():
        r, cells = np.asarray(r, float), np.asarray(cells)
        labs, inv, counts = np.unique(cells, return_inverse=True, return_counts=True)
        mu = np.bincount(inv, weights=r) / counts
        ss_w += float(((r - mu[inv]) ** 2).sum())
        ss_b += float((counts * mu ** 2).sum())
        df_w += len(r) - len(labs) - 2
        df_b += len(labs) - 3
        m_tot += len(r)
        c_tot += len(labs)
        means[g] = dict(zip(labs.tolist(), mu.tolist()))
    s2_run = ss_w / df_w if df_w > 0 else (ss_w + ss_b) / max(m_tot - 5 * len(resid), 1)
    m_bar = m_tot / max(c_tot, 1)
    s2_cell = max((ss_b / df_b - s2_run) / m_bar, 0.0) if df_b > 0 else 0.0
    rho = 0.0
    names = list(means)
    if len(names) >= 2 and s2_cell > 0:
        a, b = means[names[0]], means[names[1]]
        common = sorted(set(a) & set(b))
        if len(common) > 3:
            prod = np.mean([a[c] * b[c] for c in common]) * len(common) / (len(common) - 3)
            rho = float(np.clip(prod / s2_cell, 0.0, 1.0))
    return {"sigma_run": float(np.sqrt(s2_run)), "sigma_cell": float(np.sqrt(s2_cell)), "rho": rho,
            "df_run": int(df_w), "df_cell": int(df_b)}


def parametric_losses(N, D, x, cells, comps: dict, z_common: np.ndarray, z_own: np.ndarray,
                      z_run: np.ndarray) -> np.ndarray:
    """(B, n) log losses: fitted + sigma_cell (sqrt(rho) z_common + sqrt(1 - rho) z_own)[cell] + sigma_run z_run.

    ``z_common`` (B, cells) is drawn once for all groups, so cells of one (size, seed) share it across
    architectures as their real errors share the batch order; ``z_own`` (B, cells) and ``z_run`` (B, n) are the
    group's own."""
    cells = np.asarray(cells, dtype=int)
    rho = comps["rho"]
    u = comps["sigma_cell"] * (np.sqrt(rho) * z_common + np.sqrt(1.0 - rho) * z_own)
    return log_fitted(N, D, x)[None, :] + u[:, cells] + comps["sigma_run"] * z_run


def satterthwaite_df(jac_blocks: list, cells_blocks: list, comps: dict, contrast: np.ndarray) -> float:
    """Welch-Satterthwaite degrees of freedom of a linear contrast of the parameters (Satterthwaite 1946).

    Var(c'theta) ~ s_cell^2 a + s_run^2 b, with a and b from the least-squares sandwich of the stacked design
    (``jac_blocks`` per group, block-diagonal; ``cells_blocks`` global cell labels, correlation rho across groups);
    each variance estimate carries its own df, and the sum has df (a s_c^2 + b s_r^2)^2 / ((a s_c^2)^2/df_c +
    (b s_r^2)^2/df_r)."""
    n = sum(len(j) for j in jac_blocks)
    p = 5 * len(jac_blocks)
    J = np.zeros((n, p))
    grp = np.zeros(n, int)
    i = 0
    for k, j in enumerate(jac_blocks):
        J[i:i + len(j), 5 * k:5 * k + 5] = j
        grp[i:i + len(j)] = k
        i += len(j)
    cells = np.concatenate(cells_blocks)
    s = np.sqrt(np.maximum((J * J).sum(axis=0), 1e-300))
    G = np.linalg.pinv((J / s).T @ (J / s)) / np.outer(s, s)
    w = J @ (G @ contrast)  # influence of each run on the contrast
    same_cell = cells[:, None] == cells[None, :]
    corr = np.where(grp[:, None] == grp[None, :], 1.0, comps["rho"]) * same_cell
    a = float(w @ corr @ w)
    b = float(w @ w)
    vc, vr = a * comps["sigma_cell"] ** 2, b * comps["sigma_run"] ** 2
    terms = (vc ** 2 / comps["df_cell"] if comps["df_cell"] > 0 else (np.inf if vc > 0 else 0.0)) + \
        (vr ** 2 / comps["df_run"] if comps["df_run"] > 0 else (np.inf if vr > 0 else 0.0))
    return float((vc + vr) ** 2 / terms) if terms > 0 else np.inf


def widen(point: float, ci, factor: float):
    """The interval ``ci`` stretched about ``point`` by ``factor`` (a t quantile over the normal one)."""
    if ci is None or point is None or not np.isfinite(point) or factor == 1.0:
        return ci
    return [float(point + factor * (ci[0] - point)), float(point + factor * (ci[1] - point))]
