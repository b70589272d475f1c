"""Chinchilla Approach 3: L(N, D) = E + A / N^alpha + B / D^beta fitted in log space with a Huber loss.

Hoffmann et al. 2022, App. D.2 (docs/REFERENCE.md section 4): minimise the SUM over runs of
    Huber_delta( LSE(a - alpha log N, b - beta log D, e) - log L ),  delta = 1e-3,
with L-BFGS from a grid of 4,500 starts; A, B, E = exp(a), exp(b), exp(e).

Why a SUM: with a mean the objective and its gradient shrink by the number of runs, and L-BFGS-B's relative
tolerances stop it at (or near) its starting point -- the trap a published replication traced the original
numbers to (docs/REFERENCE.md section 4). ``reduction="mean"`` exists only so a test can show that failure.

How it is fast: every start is refined at once by a batched Levenberg-Marquardt (IRLS Gauss-Newton on the
Huber loss) written in numpy, pruned to the best starts, and the best few distinct end points are then polished
by scipy's L-BFGS-B with analytic gradients and tight tolerances; the reported answer is that L-BFGS-B solution.
"""
from __future__ import annotations

import itertools
import warnings

import numpy as np
from scipy.optimize import minimize

from ._threads import single_blas_thread
from .result import STATUS_MESSAGES, FitResult

PARAM_NAMES = ("E", "A", "B", "alpha", "beta")
DEFAULT_DELTA = 1e-3  # Hoffmann et al. 2022, App. D.2
# Polishing tolerances: with the SUM objective (~1e-3 .. 1e-1 here) an ftol of 1e-15 asks L-BFGS-B for
# absolute improvements down to ~1e-15; gtol bounds the largest projected gradient component.
FTOL = 1e-15
GTOL = 1e-10
MAXITER = 20_000


class ConvergenceWarning(UserWarning):
    """The best fit did not meet the convergence criteria (its ``message`` says why)."""


# ----------------------------------------------------------------------------------------------- start grids
def published_grid() -> np.ndarray:
    """The 4,500 starts of Hoffmann et al. 2022 (App. D.2), as rows (a, b, e, alpha, beta).

    alpha, beta in {0, 0.5, ..., 2}; e in {-1, -0.5, ..., 1}; a, b in {0, 5, ..., 25}.
    """
    ab = np.arange(0.0, 25.0 + 1e-9, 5.0)
    e = np.arange(-1.0, 1.0 + 1e-9, 0.5)
    ex = np.arange(0.0, 2.0 + 1e-9, 0.5)
    return np.array(list(itertools.product(ab, ab, e, ex, ex)), dtype=float)


def small_grid() -> np.ndarray:
    """A 243-start grid spanning the same box, for tests and quick looks (not the published procedure)."""
    ab = np.array([0.0, 10.0, 20.0])
    e = np.array([-1.0, 0.0, 1.0])
    ex = np.array([0.2, 0.6, 1.2])
    return np.array(list(itertools.product(ab, ab, e, ex, ex)), dtype=float)


def make_starts(starts: str | np.ndarray = "published") -> np.ndarray:
    """Resolve a start specification: "published", "small", or an (S, 5) array of (a, b, e, alpha, beta)."""
    if isinstance(starts, str):
        if starts == "published":
            return published_grid()
        if starts == "small":
            return small_grid()
        raise ValueError(f"unknown start grid {starts!r}; expected 'published', 'small' or an (S, 5) array")
    arr = np.atleast_2d(np.asarray(starts, dtype=float))
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise ValueError(f"starts must have shape (S, 5) as (a, b, e, alpha, beta); got {arr.shape}")
    return arr


# ------------------------------------------------------------------------------------------------ objective
class Problem:
    """Log data, per-run weights (bootstrap counts) and the Huber delta: everything the objective needs."""

    def __init__(self, N, D, L, weights=None, *, delta: float = DEFAULT_DELTA, reduction: str = "sum",
                 bound_e: bool = False):
        self.logN = np.log(np.asarray(N, dtype=float))
        self.logD = np.log(np.asarray(D, dtype=float))
        self.logL = np.log(np.asarray(L, dtype=float))
        w = np.ones_like(self.logL) if weights is None else np.asarray(weights, dtype=float)
        if reduction == "mean":
            w = w / w.sum()
        elif reduction != "sum":
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        keep = w > 0  # zero-count runs of a bootstrap resample cost nothing: drop them
        self.logN, self.logD, self.logL, self.w = self.logN[keep], self.logD[keep], self.logL[keep], w[keep]
        self.delta = float(delta)
        self.reduction = reduction
        # Bound E <= min(L) (docs/REFERENCE.md section 4): the irreducible loss cannot exceed any observed loss.
        self.e_max = float(self.logL.min()) if bound_e else np.inf

    @property
    def n_points(self) -> int:
        return int(self.logL.size)

    def rows(self, mask: np.ndarray) -> "Problem":
        """The problem of the rows of X selected by `mask` (lm_batch's accepted steps): every row shares this
        problem's data, so itself (a problem whose data differ by row narrows them)."""
        return self

    def _lse(self, X):
        u1 = X[:, 0, None] - X[:, 3, None] * self.logN  # (S, n)
        u2 = X[:, 1, None] - X[:, 4, None] * self.logD  # (S, n)
        u3 = X[:, 2, None]  # (S, 1)
        m = np.maximum(np.maximum(u1, u2), u3)
        e1, e2, e3 = np.exp(u1 - m), np.exp(u2 - m), np.exp(u3 - m)
        s = e1 + e2 + e3
        return m + np.log(s), e1 / s, e2 / s, e3 / s

    def values(self, X: np.ndarray) -> np.ndarray:
        """Objective at each row of X (S, 5) -> (S,)."""
        r = self._lse(X)[0] - self.logL
        a = np.abs(r)
        h = np.where(a <= self.delta, 0.5 * r * r, self.delta * (a - 0.5 * self.delta))
        return np.einsum("sn,n->s", h, self.w)  # einsum: no BLAS threads (see bootstrap.py)

    def values_grads(self, X: np.ndarray, gn: bool = False):
        """Objective (S,), analytic gradient (S, 5) and, with ``gn``, the IRLS Gauss-Newton matrix (S, 5, 5)."""
        lse, p1, p2, p3 = self._lse(X)
        r = lse - self.logL
        a = np.abs(r)
        inside = a <= self.delta
        h = np.where(inside, 0.5 * r * r, self.delta * (a - 0.5 * self.delta))
        f = np.einsum("sn,n->s", h, self.w)
        psi = np.clip(r, -self.delta, self.delta) * self.w  # w * Huber'(r)
        J = np.stack([p1, p2, np.broadcast_to(p3, p1.shape), -p1 * self.logN, -p2 * self.logD], axis=-1)
        g = np.einsum("sn,snk->sk", psi, J)
        if not gn:
            return f, g
        # IRLS weight psi(r)/r = min(1, delta/|r|) gives a quadratic that majorises the Huber loss.
        omega = self.w * np.where(inside, 1.0, self.delta / np.maximum(a, 1e-300))
        M = np.matmul((J * omega[..., None]).transpose(0, 2, 1), J)  # batched J' diag(omega) J
        return f, g, M

    def fun_grad(self, x: np.ndarray):
        f, g = self.values_grads(x[None, :])
        return float(f[0]), g[0]

    def projected_grad_norm(self, x: np.ndarray) -> float:
        g = self.fun_grad(x)[1].copy()
        if np.isfinite(self.e_max) and x[2] >= self.e_max - 1e-12 and g[2] < 0:
            g[2] = 0.0  # pushing e further up is blocked by the bound
        return float(np.linalg.norm(g))


# ------------------------------------------------------------------------------- batched Levenberg-Marquardt
def lm_batch(prob: Problem, X: np.ndarray, iters: int, lam0: float = 1e-2):
    """Refine every row of X at once by damped IRLS Gauss-Newton steps; returns (X, f). Every row steps every
    iteration; a step is kept where it lowers that row's objective. `prob` may hold one data vector for all rows
    (many starts of one fit) or one per row (many resampled fits: bootstrap._RowsProblem), hence prob.rows."""
    X = np.array(X, dtype=float, copy=True)
    X[:, 2] = np.minimum(X[:, 2], prob.e_max)
    S = len(X)
    lam = np.full(S, lam0)
    f, g, M = prob.values_grads(X, gn=True)
    eye = np.eye(5)
    for _ in range(iters):
        d = np.diagonal(M, axis1=1, axis2=2)
        scale = np.maximum(d, 1e-9 * (d.max(axis=1, keepdims=True) + 1e-300))
        A = M + lam[:, None, None] * (scale[:, :, None] * eye)  # Marquardt damping, floored scale: never singular
        try:
            step = -np.linalg.solve(A, g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = -g / np.maximum(scale * (1 + lam[:, None]), 1e-12)
        Xn = X + step
        Xn[:, 2] = np.minimum(Xn[:, 2], prob.e_max)
        fn = prob.values(Xn)
        ok = np.isfinite(fn) & (fn < f)
        if ok.any():
            X[ok] = Xn[ok]
            fo, go, Mo = prob.rows(ok).values_grads(X[ok], gn=True)
            f[ok], g[ok], M[ok] = fo, go, Mo
        lam = np.where(ok, np.maximum(lam / 3.0, 1e-12), np.minimum(lam * 4.0, 1e12))
    return X, f


def _distinct_best(X: np.ndarray, f: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k lowest objectives whose parameters differ (rounded to 1e-3)."""
    order = np.argsort(np.where(np.isfinite(f), f, np.inf))
    seen, out = set(), []
    for i in order:
        if not np.isfinite(f[i]):
            break
        key = tuple(np.round(X[i], 3))
        if key in seen:
            continue
        seen.add(key)
        out.append(i)
        if len(out) == k:
            break
    return np.array(out, dtype=int)


# ------------------------------------------------------------------------------------------------- polishing
def polish(prob: Problem, x0: np.ndarray, *, ftol: float = FTOL, gtol: float = GTOL,
           maxiter: int = MAXITER, scipy_defaults: bool = False):
    """L-BFGS-B from x0 with the analytic gradient; returns scipy's OptimizeResult.

    ``scipy_defaults`` uses scipy's default tolerances (for the mean-vs-sum negative control).
    """
    bounds = [(None, None), (None, None), (None, prob.e_max if np.isfinite(prob.e_max) else None),
              (None, None), (None, None)]
    opts = {} if scipy_defaults else {"ftol": ftol, "gtol": gtol, "maxiter": maxiter, "maxfun": 5 * maxiter,
                                      "maxls": 50}
    x0 = np.array(x0, dtype=float)
    x0[2] = min(x0[2], prob.e_max)
    with single_blas_thread():
        return minimize(prob.fun_grad, x0, jac=True, method="L-BFGS-B", bounds=bounds, options=opts)


def polish_restarted(prob: Problem, x0: np.ndarray, *, restarts: int = 2, **kw):
    """``polish``, restarted from its end point (fresh L-BFGS memory) while it ends in a line-search failure.

    On this ill-conditioned objective a stale curvature memory can stall the line search short of the optimum;
    a restart usually moves on. nit/nfev are summed over the restarts.
    """
    res = polish(prob, x0, **kw)
    nit, nfev = int(res.nit), int(res.nfev)
    for _ in range(restarts):
        if res.success or res.status == 1:
            break
        nxt = polish(prob, res.x, **kw)
        nit, nfev = nit + int(nxt.nit), nfev + int(nxt.nfev)
        if nxt.fun <= res.fun:
            res = nxt
        else:
            break
    res.nit, res.nfev = nit, nfev
    return res


def _status_from(prob: Problem, res, gtol: float) -> tuple[int, str, float]:
    """Map L-BFGS-B's exit to (status, message, grad_norm) from the shared table.

    L-BFGS-B can end with a line-search failure once it reaches float64 precision on this ill-conditioned
    problem (condition number ~1e11, docs/REFERENCE.md section 4); that is accepted as converged only when the
    projected gradient norm is below 1e-6 of its scale, delta * sum(weights) * max|log N, log D| (every run on
    the linear part of the Huber loss pulling the same way).
    """
    gnorm = prob.projected_grad_norm(res.x)
    if not (np.isfinite(res.fun) and np.isfinite(gnorm)):
        return 3, STATUS_MESSAGES[3], gnorm
    if res.success:
        return 0, f"{STATUS_MESSAGES[0]} (L-BFGS-B: {res.message})", gnorm
    scale = prob.delta * float(prob.w.sum()) * float(max(np.abs(prob.logN).max(), np.abs(prob.logD).max(), 1.0))
    accept = 1e-6 * scale
    if res.status == 1:
        return 1, f"{STATUS_MESSAGES[1]} (L-BFGS-B: {res.message})", gnorm
    if gnorm <= accept:
        return 0, f"{STATUS_MESSAGES[0]} to float64 precision (L-BFGS-B: {res.message}; |g|={gnorm:.2e})", gnorm
    return 2, f"{STATUS_MESSAGES[2]} (L-BFGS-B: {res.message}; |g|={gnorm:.2e})", gnorm


def to_params(x: np.ndarray) -> dict:
    """(a, b, e, alpha, beta) -> {E, A, B, alpha, beta, a}; ``a`` = beta/(alpha+beta) (docs/REFERENCE.md section 4)."""
    a, b, e, al, be = (float(v) for v in x)
    s = al + be
    return {"E": float(np.exp(e)), "A": float(np.exp(a)), "B": float(np.exp(b)), "alpha": al, "beta": be,
            "a": be / s if s != 0 else float("nan")}


def from_params(p: dict) -> np.ndarray:
    return np.array([np.log(p["A"]), np.log(p["B"]), np.log(p["E"]), p["alpha"], p["beta"]], dtype=float)


def fit_problem(prob: Problem, starts: np.ndarray, *, scan_iters: int = 8, keep: int = 64, refine_iters: int = 60,
                n_polish: int = 3, ftol: float = FTOL, gtol: float = GTOL, scipy_defaults: bool = False,
                lm: bool = True, maxiter: int = MAXITER) -> FitResult:
    """Multi-start fit of one prepared problem; see ``fit_approach3`` for the public entry point."""
    starts = make_starts(starts)
    if lm:
        X, f = lm_batch(prob, starts, scan_iters)
        idx = _distinct_best(X, f, keep)
        X, f = lm_batch(prob, X[idx], refine_iters)
    else:  # plain Approach 3 from the best grid values (used by the negative control)
        X, f = starts, prob.values(starts)
    cand = _distinct_best(X, f, n_polish)
    best, nfev, nit = None, int(len(starts)), 0
    for i in cand:
        res = polish_restarted(prob, X[i], ftol=ftol, gtol=gtol, maxiter=maxiter, scipy_defaults=scipy_defaults)
        nfev += int(res.nfev)
        nit += int(res.nit)
        if best is None or (np.isfinite(res.fun) and res.fun < best.fun):
            best = res
    status, message, gnorm = _status_from(prob, best, gtol)
    return FitResult(method="approach3", params=to_params(best.x), x=best.x, fun=float(best.fun),
                     success=status == 0, status=status, message=message, nit=int(best.nit), nit_total=nit,
                     nfev=nfev, grad_norm=gnorm, n_starts=int(len(starts)), n_points=prob.n_points,
                     delta=prob.delta, reduction=prob.reduction, bound_e=bool(np.isfinite(prob.e_max)))


def fit_approach3(N, D, L, *, weights=None, delta: float = DEFAULT_DELTA, starts="published", bound_e: bool = False,
                  reduction: str = "sum", n_polish: int = 3, ftol: float = FTOL, gtol: float = GTOL,
                  warn: bool = True, **kw) -> FitResult:
    """Fit L = E + A N^-alpha + B D^-beta by Chinchilla Approach 3 (Hoffmann et al. 2022, App. D.2).

    Every start of the grid (the published 4,500 by default) is refined by a batched LM; the best few distinct
    end points are polished with L-BFGS-B (analytic gradient, ftol 1e-15, gtol 1e-10) and the lowest
    objective wins. An unconverged best fit gives a ``ConvergenceWarning`` (and ``success=False``).
    """
    prob = Problem(N, D, L, weights, delta=delta, reduction=reduction, bound_e=bound_e)
    with single_blas_thread():
        res = fit_problem(prob, make_starts(starts), n_polish=n_polish, ftol=ftol, gtol=gtol, **kw)
    if warn and not res.success:
        warnings.warn(f"Approach 3 best fit did not converge: {res.message}", ConvergenceWarning, stacklevel=2)
    return res


# ------------------------------------------------------------------------------------------ derived numbers
def law(E, A, B, alpha, beta, N, D):
    """L(N, D) = E + A N^-alpha + B D^-beta, broadcasting over arrays of parameters (bootstrap samples) and of N, D.
    The one home of the formula outside the fitter's log-space form (Problem); fits, design and figures call it."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return E + A * np.asarray(N, float) ** -alpha + B * np.asarray(D, float) ** -beta


def log_law_jacobian(params: dict, N, D) -> np.ndarray:
    """d log L / d (log A, log B, log E, alpha, beta) at each run: (n, 5), the order of the fitter's x."""
    N, D = np.asarray(N, float), np.asarray(D, float)
    tA = params["A"] * N ** -params["alpha"]
    tB = params["B"] * D ** -params["beta"]
    L = params["E"] + tA + tB
    return np.column_stack([tA / L, tB / L, np.full_like(L, params["E"]) / L,
                            -tA * np.log(N) / L, -tB * np.log(D) / L])


def predict_loss(params: dict, N, D) -> np.ndarray:
    """L(N, D) at a fit's parameters."""
    return law(params["E"], params["A"], params["B"], params["alpha"], params["beta"], N, D)


def compute_optimal(params: dict, C) -> tuple[np.ndarray, np.ndarray]:
    """(N_opt, D_opt) at compute C with C = 6 N D (docs/REFERENCE.md section 4, Hoffmann et al. 2022 eq. 4):
    N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b, G = (alpha A / (beta B))^(1/(alpha+beta)),
    a = beta/(alpha+beta), b = alpha/(alpha+beta). NaN where the law has no such minimum (alpha, beta, A or B not
    positive: an unidentified fit), never a complex number (Python's float power of a negative base is one)."""
    al, be, A, B = (np.asarray(params[k], dtype=float) for k in ("alpha", "beta", "A", "B"))
    C = np.asarray(C, dtype=float)
    with np.errstate(all="ignore"):
        ok = (al > 0) & (be > 0) & (A > 0) & (B > 0)
        s = np.where(ok, al + be, np.nan)
        G = (al * A / (be * B)) ** (1.0 / s)
        return G * (C / 6.0) ** (be / s), (C / 6.0) ** (al / s) / G
