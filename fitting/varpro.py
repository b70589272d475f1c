"""Variable projection: a second, independent way to fit L = E + A N^-alpha + B D^-beta.

For fixed (alpha, beta) the model is linear in (E, A, B), so a fine (alpha, beta) grid is scanned by solving
(E, A, B) in closed form by weighted least squares on RELATIVE residuals (L - pred)/L (weights 1/L^2), keeping only
non-negative solutions. The best grid point then seeds a robust refinement of all five parameters: L-BFGS-B on the
sum of Huber_delta((pred - L)/L). docs/REFERENCE.md section 4 names this as the robust alternative to Approach 3.

It differs from Approach 3 in the residual (linear-space relative vs. log of an LSE), in the search (dense
exponent grid with exact inner solves vs. 4,500 nonlinear starts) and in the optimiser path, so a disagreement
between the two flags an ill-posed or multi-modal fit.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from .chinchilla import DEFAULT_DELTA, to_params
from ._threads import single_blas_thread
from .result import STATUS_MESSAGES, FitResult

EXPONENT_GRID = np.linspace(0.02, 2.0, 100)  # fine grid for alpha and beta (same range as the published starts)
COARSE_GRID = np.linspace(0.02, 2.0, 34)  # for bootstrap resamples, which also start from the full-data optimum
FTOL, GTOL = 1e-15, 1e-10


class VarproProblem:
    """Data, weights and delta for the relative-residual Huber objective in x = (a, b, e, alpha, beta)."""

    def __init__(self, N, D, L, weights=None, *, delta: float = DEFAULT_DELTA):
        N, D, L = (np.asarray(v, dtype=float) for v in (N, D, L))
        w = np.ones_like(L) if weights is None else np.asarray(weights, dtype=float)
        keep = w > 0
        self.N, self.D, self.L, self.w = N[keep], D[keep], L[keep], w[keep]
        self.logN, self.logD = np.log(self.N), np.log(self.D)
        self.delta = float(delta)

    @property
    def n_points(self) -> int:
        return int(self.L.size)

    def scan(self, grid: np.ndarray = EXPONENT_GRID):
        """Closed-form weighted LS of (E, A, B) for every (alpha, beta) on the grid; returns the best x and f."""
        x1 = np.exp(-grid[:, None] * self.logN)  # (G, n)  N^-alpha
        x2 = np.exp(-grid[:, None] * self.logD)  # (G, n)  D^-beta
        w = self.w / self.L**2  # relative residuals
        # Normal equations of the 3x3 problem for every grid pair, entries built by matrix products.
        s00 = w.sum()
        s01 = x1 @ w  # (G,)
        s02 = x2 @ w
        s11 = (x1 * x1) @ w
        s22 = (x2 * x2) @ w
        s12 = (x1 * w) @ x2.T  # (G, G)
        t0 = w @ self.L
        t1 = x1 @ (w * self.L)
        t2 = x2 @ (w * self.L)
        G = len(grid)
        M = np.empty((G, G, 3, 3))
        M[..., 0, 0] = s00
        M[..., 0, 1] = M[..., 1, 0] = s01[:, None]
        M[..., 0, 2] = M[..., 2, 0] = s02[None, :]
        M[..., 1, 1] = s11[:, None]
        M[..., 2, 2] = s22[None, :]
        M[..., 1, 2] = M[..., 2, 1] = s12
        rhs = np.stack(np.broadcast_arrays(t0, t1[:, None], t2[None, :]), axis=-1)
        M += 1e-14 * np.trace(M, axis1=-2, axis2=-1)[..., None, None] * np.eye(3)
        theta = np.linalg.solve(M, rhs[..., None])[..., 0]  # (G, G, 3) = E, A, B
        feasible = (theta > 0).all(axis=-1)
        pred = theta[..., 0, None] + theta[..., 1, None] * x1[:, None, :] + theta[..., 2, None] * x2[None, :, :]
        r = pred / self.L - 1.0
        a = np.abs(r)
        h = np.where(a <= self.delta, 0.5 * r * r, self.delta * (a - 0.5 * self.delta)) @ self.w
        h = np.where(feasible, h, np.inf)
        i, j = np.unravel_index(np.argmin(h), h.shape)
        if not np.isfinite(h[i, j]):
            return None, np.inf
        E, A, B = theta[i, j]
        return np.array([np.log(A), np.log(B), np.log(E), grid[i], grid[j]]), float(h[i, j])

    def fun_grad(self, x: np.ndarray):
        a, b, e, al, be = x
        t1 = np.exp(a - al * self.logN)
        t2 = np.exp(b - be * self.logD)
        pred = np.exp(e) + t1 + t2
        r = pred / self.L - 1.0
        ab = np.abs(r)
        h = np.where(ab <= self.delta, 0.5 * r * r, self.delta * (ab - 0.5 * self.delta))
        psi = np.clip(r, -self.delta, self.delta) * self.w / self.L
        g = np.array([psi @ t1, psi @ t2, psi.sum() * np.exp(e), -(psi * t1) @ self.logN, -(psi * t2) @ self.logD])
        return float(h @ self.w), g


def polish(prob: VarproProblem, x0: np.ndarray, *, ftol: float = FTOL, gtol: float = GTOL):
    # Exponents stay in [0, 5]: the model is only identified for decaying terms.
    bounds = [(None, None), (None, None), (None, None), (0.0, 5.0), (0.0, 5.0)]
    with single_blas_thread():
        return minimize(prob.fun_grad, np.asarray(x0, dtype=float), jac=True, method="L-BFGS-B", bounds=bounds,
                        options={"ftol": ftol, "gtol": gtol, "maxiter": 20_000, "maxfun": 100_000, "maxls": 50})


def fit_problem(prob: VarproProblem, *, grid: np.ndarray = EXPONENT_GRID, extra_starts=(),
                ftol: float = FTOL, gtol: float = GTOL) -> FitResult:
    x_grid, _ = prob.scan(grid)
    starts = [x for x in ([x_grid] + list(extra_starts)) if x is not None]
    if not starts:
        return FitResult(method="varpro", params=to_params([np.nan] * 5), x=np.full(5, np.nan), fun=np.nan,
                         success=False, status=3, message="no (alpha, beta) on the grid gives non-negative E, A, B",
                         nit=0, nfev=len(grid) ** 2, grad_norm=np.nan, n_starts=len(grid) ** 2,
                         n_points=prob.n_points, delta=prob.delta)
    best, nfev = None, len(grid) ** 2
    for x0 in starts:
        res = polish(prob, x0, ftol=ftol, gtol=gtol)
        nfev += int(res.nfev)
        if best is None or (np.isfinite(res.fun) and res.fun < best.fun):
            best = res
    g = prob.fun_grad(best.x)[1]
    for k in (3, 4):  # project the gradient on active exponent bounds
        if (best.x[k] <= 1e-12 and g[k] > 0) or (best.x[k] >= 5.0 - 1e-12 and g[k] < 0):
            g[k] = 0.0
    gnorm = float(np.linalg.norm(g))
    on_bound = bool(best.x[3] <= 1e-9 or best.x[4] <= 1e-9 or best.x[3] >= 5 - 1e-9 or best.x[4] >= 5 - 1e-9)
    accept = 1e-7 * prob.delta * float(prob.w.sum())
    if not np.isfinite(best.fun):
        status, msg = 3, STATUS_MESSAGES[3]
    elif on_bound:
        status, msg = 4, f"{STATUS_MESSAGES[4]} (an exponent at 0 or 5)"
    elif best.success:
        status, msg = 0, f"{STATUS_MESSAGES[0]} (L-BFGS-B: {best.message})"
    elif best.status == 1:
        status, msg = 1, f"{STATUS_MESSAGES[1]} (L-BFGS-B: {best.message})"
    elif gnorm <= accept:
        status, msg = 0, f"{STATUS_MESSAGES[0]} to float64 precision (L-BFGS-B: {best.message}; |g|={gnorm:.2e})"
    else:
        status, msg = 2, f"{STATUS_MESSAGES[2]} (L-BFGS-B: {best.message}; |g|={gnorm:.2e})"
    return FitResult(method="varpro", params=to_params(best.x), x=best.x, fun=float(best.fun), success=status == 0,
                     status=status, message=msg, nit=int(best.nit), nfev=nfev, grad_norm=gnorm,
                     n_starts=len(grid) ** 2, n_points=prob.n_points, delta=prob.delta,
                     objective_kind="sum of Huber(relative residual)")


def fit_varpro(N, D, L, *, weights=None, delta: float = DEFAULT_DELTA, grid: np.ndarray = EXPONENT_GRID,
               extra_starts=()) -> FitResult:
    """Fit L = E + A N^-alpha + B D^-beta by variable projection over an (alpha, beta) grid, then refine."""
    with single_blas_thread():
        return fit_problem(VarproProblem(N, D, L, weights, delta=delta), grid=grid, extra_starts=extra_starts)
