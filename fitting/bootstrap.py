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
