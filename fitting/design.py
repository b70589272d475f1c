"""What a grid of runs can resolve, before any compute: the expected SD of the fitted exponents and of their
difference between two architectures, and the smallest difference in alpha a comparison would detect.

The model is the Chinchilla law fitted in log space, log L = log(E + A N^-alpha + B D^-beta) + eps, by the
Huber M-estimator of fitting.chinchilla. The error of a run is a shared part for its (size, seed) cell (the runs
of one size and seed share their initialisation and their batch order, so they err together) plus an independent
part: eps = u_cell + e_run, Var u = shared * noise^2, Var e = (1 - shared) * noise^2. Cells of the two
architectures with the same size and seed see the same batches; ``cross_arch`` is the correlation of their u.

The covariance of the estimate is the M-estimator sandwich (Huber 1967; Huber & Ronchetti 2009, ch. 6)
    Cov = (J'J)^-1 J' Psi J (J'J)^-1 / E[psi']^2,
J the Jacobian of log L in (log A, log B, log E, alpha, beta) at plausible parameters, psi the Huber score
clipped at delta and Psi_ij = Cov(psi(eps_i), psi(eps_j)), computed by Gauss-Hermite quadrature over the
bivariate normal of (eps_i, eps_j). With iid errors this is the inverse Fisher information times the Huber
efficiency factor; with delta << noise (Hoffmann et al.'s delta = 1e-3 against ~1% noise) the fit is a least
absolute deviations fit and the factor tends to pi/2. A difference of delta_alpha is detected at 80% power in a
two-sided 5% test when it exceeds (z_0.975 + z_0.8) SD(delta_alpha) = 2.80 SD(delta_alpha).
benchmarks/bench_calibration.py checks these SDs against the spread of real fits on simulated data.
"""
from __future__ import annotations

import math

import numpy as np

from .chinchilla import log_law_jacobian

# Hoffmann et al. 2022 (eq. 10): the plausible parameters when the sweep has no identified fit of its own.
PLAUSIBLE = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
DEFAULT_NOISE = 0.01  # SD of log(final loss) between repeat runs; ~1% is what seeds give at these scales
DEFAULT_SHARED = 0.5  # fraction of that variance shared by the runs of one (size, seed) cell
DEFAULT_EFFECT = 0.06  # the delta-alpha the comparison is meant to resolve (issue 26's example)
Z_TWO_SIDED_5 = 1.959963984540054
Z_POWER_80 = 0.8416212335729143
DETECT_FACTOR = Z_TWO_SIDED_5 + Z_POWER_80  # 2.80


_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(48)  # probabilists' Hermite: weight exp(-x^2/2)
_GH_W = _GH_W / _GH_W.sum()


def _psi_moments(delta: float, sigma: float, rho: float) -> tuple[float, float]:
    """(E[psi(x) psi(y)], E[psi'(x)]) for (x, y) normal with SD sigma and correlation rho, psi = clip(., +-delta)."""
    x = sigma * _GH_X
    px = np.clip(x, -delta, delta)
    # y = rho x + sqrt(1 - rho^2) z: a 2-D tensor grid
    y = rho * x[:, None] + math.sqrt(max(1.0 - rho * rho, 0.0)) * sigma * _GH_X[None, :]
    py = np.clip(y, -delta, delta)
    cov = float(np.einsum("i,j,i,ij->", _GH_W, _GH_W, px, py))
    # E[psi'] over a normal of SD sigma is 2 Phi(delta/sigma) - 1; the quadrature of an indicator is coarse
    dpsi = math.erf(delta / (sigma * math.sqrt(2.0))) if np.isfinite(delta) else 1.0
    return cov, dpsi


def parameter_covariance(jac: np.ndarray, cells: np.ndarray, *, noise: float = DEFAULT_NOISE,
                         shared: float = DEFAULT_SHARED, delta: float = 1e-3, cross: np.ndarray | None = None,
                         cross_arch: float = 0.0) -> np.ndarray:
    """Sandwich covariance of the Huber estimate for a block-diagonal Jacobian ``jac`` (n, p).

    ``cells[i]``: the error-sharing cell of run i (runs in one cell have correlation ``shared``);
    ``cross[i]``: the cell label shared with the other architecture (same size and seed), correlation
    ``shared * cross_arch`` between runs of different architectures in matching cells.
    Returns a (p, p) matrix; inf on the diagonal where J'J is singular (a parameter the grid cannot identify).
    """
    n = len(jac)
    cells = np.asarray(cells)
    if not 0.0 <= shared <= 1.0:
        raise ValueError(f"shared must be in [0, 1], got {shared}")
    if noise <= 0:
        raise ValueError(f"noise must be > 0, got {noise}")
    same = cells[:, None] == cells[None, :]
    rho = np.where(same, shared, 0.0)
    if cross is not None and cross_arch:
        xs = np.asarray(cross)
        rho = np.where(~same & (xs[:, None] == xs[None, :]), shared * cross_arch, rho)
    np.fill_diagonal(rho, 1.0)
    psi = np.zeros((n, n))
    dpsi = 1.0
    for r in np.unique(rho):
        c, dpsi = _psi_moments(delta, noise, float(r))
        psi[rho == r] = c
    JtJ = jac.T @ jac
    # Scale columns before testing rank: alpha's column is ~log N times larger than log A's.
    s = np.sqrt(np.maximum(np.diag(JtJ), 1e-300))
    Jn = JtJ / np.outer(s, s)
    if np.linalg.matrix_rank(Jn, tol=1e-10) < JtJ.shape[0]:
        cov = np.full(JtJ.shape, np.inf)
        return cov
    inv = np.linalg.inv(Jn) / np.outer(s, s)
    return inv @ (jac.T @ psi @ jac) @ inv / dpsi ** 2


def _grid_cells(N, seeds) -> np.ndarray:
    return np.array([f"{n:.6g}|{s}" for n, s in zip(np.asarray(N, float), seeds)])


def analyse(groups: dict, *, noise: float = DEFAULT_NOISE, shared: float = DEFAULT_SHARED, delta: float = 1e-3,
            effect: float = DEFAULT_EFFECT, params: dict | None = None, cross_arch: float = 0.0,
            alternatives: bool = True, group_params: dict | None = None) -> dict:
    """Design analysis of a grid: ``groups`` maps an architecture to a dict of equal-length arrays N, D, seed and
    size (the size's name: it pairs cells across architectures; defaults to the N rank).

    Returns the fits.json ``design`` object: per-architecture ``sd_alpha``/``sd_beta``, the first two
    architectures' ``sd_delta_alpha`` and ``min_detectable_delta_alpha``, ``resolvable`` (the stated effect at
    least that large: 80% power), ``demonstration`` (under 50% power, or a structural problem), the structural
    reasons a grid cannot identify alpha (``problems``), and with
    ``alternatives`` what would resolve the effect (more seeds, a wider N range). ``group_params`` overrides
    ``params`` for the groups it names (each architecture at its own fitted law).
    """
    if effect <= 0:
        raise ValueError(f"effect must be > 0, got {effect}")
    p = dict(PLAUSIBLE if params is None else params)
    names = list(groups)
    out: dict = {"noise": float(noise), "shared": float(shared), "cross_arch": float(cross_arch),
                 "delta": float(delta), "effect": float(effect), "params": p, "per_arch": {}, "problems": []}
    blocks, cells, cross = [], [], []
    for g in names:
        spec = groups[g]
        N, D = np.asarray(spec["N"], float), np.asarray(spec["D"], float)
        seeds = np.asarray(spec.get("seed", np.zeros(len(N))))
        sizes = np.asarray(spec.get("size", _rank_names(N)), dtype=str)
        n_N, n_D, n_seed = len(np.unique(N)), len(np.unique(D)), len(np.unique(seeds))
        jac = log_law_jacobian((group_params or {}).get(g, p), N, D)
        cov = parameter_covariance(jac, _grid_cells(N, seeds), noise=noise, shared=shared, delta=delta)
        sd = np.sqrt(np.diag(cov))
        out["per_arch"][g] = {"n_runs": int(len(N)), "n_sizes": n_N, "n_budgets": n_D, "n_seeds": n_seed,
                              "N_decades": float(np.log10(N.max() / N.min())) if len(N) else 0.0,
                              "D_decades": float(np.log10(D.max() / D.min())) if len(D) else 0.0,
                              "sd_alpha": _finite(sd[3]), "sd_beta": _finite(sd[4])}
        if n_N < 4:
            out["problems"].append(f"{g}: {n_N} distinct model size(s); comparing alpha needs at least 4")
        if n_D < 3:
            out["problems"].append(f"{g}: {n_D} distinct token budget(s); a joint fit needs at least 3")
        blocks.append(jac)
        cells += [f"{g}|{c}" for c in _grid_cells(N, seeds)]
        cross += [f"{s}|{sd_}" for s, sd_ in zip(sizes, seeds)]
    first = names[0] if names else None
    out["sd_alpha"] = out["per_arch"][first]["sd_alpha"] if first else None
    out["sd_delta_alpha"] = None
    out["min_detectable_delta_alpha"] = None
    out["resolvable"] = False
    if len(names) >= 2:
        n0, n1 = len(blocks[0]), len(blocks[1])
        J = np.zeros((n0 + n1, 10))
        J[:n0, :5], J[n0:, 5:] = blocks[0], blocks[1]
        cov = parameter_covariance(J, np.array(cells[: n0 + n1]), noise=noise, shared=shared, delta=delta,
                                   cross=np.array(cross[: n0 + n1]), cross_arch=cross_arch)
        with np.errstate(invalid="ignore"):  # inf - inf where the grid leaves alpha unidentified
            var = cov[3, 3] + cov[8, 8] - 2 * cov[3, 8]
        sdd = _finite(math.sqrt(var)) if np.isfinite(var) and var >= 0 else None
        out["sd_delta_alpha"] = sdd
        out["compared"] = [names[0], names[1]]
        if sdd is not None:
            out["min_detectable_delta_alpha"] = DETECT_FACTOR * sdd
            out["power_at_effect"] = _power(effect, sdd)
            out["resolvable"] = bool(out["min_detectable_delta_alpha"] <= effect and not out["problems"])
        if alternatives and not out["resolvable"]:
            out["would_resolve"] = _alternatives(groups, names[:2], noise=noise, shared=shared, delta=delta,
                                                 effect=effect, params=p, cross_arch=cross_arch)
    # below half power at the stated effect a comparison is a demonstration of the pipeline, not a measurement
    out["demonstration"] = bool(len(names) >= 2 and (out["problems"] or out.get("power_at_effect", 0.0) < 0.5))
    return out


def _power(effect: float, sd: float) -> float:
    """Power of the two-sided 5% test of delta_alpha = 0 when the truth is ``effect`` (normal approximation)."""
    z = effect / sd
    return float(0.5 * (math.erfc((Z_TWO_SIDED_5 - z) / math.sqrt(2)) + math.erfc((Z_TWO_SIDED_5 + z) / math.sqrt(2))))


def _finite(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _rank_names(N) -> np.ndarray:
    u = np.unique(np.asarray(N, float))
    return np.array([f"n{int(np.searchsorted(u, v))}" for v in np.asarray(N, float)])


def _expand(spec: dict, *, seeds: int | None = None, n_decades: float | None = None) -> dict:
    """The same grid with ``seeds`` seeds per cell and/or its sizes respread geometrically over ``n_decades``."""
    N, D = np.asarray(spec["N"], float), np.asarray(spec["D"], float)
    sz = np.asarray(spec.get("size", _rank_names(N)), dtype=str)
    s0 = np.asarray(spec.get("seed", np.zeros(len(N))))
    keep = s0 == s0.min()  # one seed's runs: the grid's (size, budget) cells
    N, D, sz = N[keep], D[keep], sz[keep]
    if n_decades is not None:
        u = np.unique(N)
        k = max(len(u), 4)
        new = np.geomspace(u[0], u[0] * 10 ** n_decades, k)
        Dset = np.unique(D)
        N = np.repeat(new, len(Dset))
        D = np.tile(Dset, k)
        sz = np.array([f"n{i}" for i in range(k)]).repeat(len(Dset))
    m = int(seeds or len(np.unique(s0)))
    return {"N": np.tile(N, m), "D": np.tile(D, m), "size": np.tile(sz, m), "seed": np.repeat(np.arange(m), len(N))}


def _alternatives(groups, names, **kw) -> list[dict]:
    """Grids that would resolve the effect: more seeds (up to 10), or the N range widened to 2.5 or 3 decades."""
    out = []
    for decades in (None, 2.5, 3.0):
        for seeds in (1, 2, 3, 5, 10):
            alt = {g: _expand(groups[g], seeds=seeds, n_decades=decades) for g in names}
            a = analyse(alt, alternatives=False, **kw)
            md = a["min_detectable_delta_alpha"]
            if md is not None and md <= kw["effect"]:
                n_sizes = a["per_arch"][names[0]]["n_sizes"]
                what = (f"{seeds} seed(s) per cell" if decades is None else
                        f"{n_sizes} sizes over {decades:g} decades of N, {seeds} seed(s)")
                out.append({"change": what, "seeds": seeds, "N_decades": decades,
                            "runs_per_arch": int(len(alt[names[0]]["N"])), "min_detectable_delta_alpha": md})
                break
    return out


def summary_lines(design: dict) -> list[str]:
    """The design analysis in words, for the dry run, the design command and the report's title page."""
    lines = []
    for g, a in design["per_arch"].items():
        sa = f"{a['sd_alpha']:.3f}" if a["sd_alpha"] is not None else "not identified"
        sb = f"{a['sd_beta']:.3f}" if a["sd_beta"] is not None else "not identified"
        lines.append(f"{g}: {a['n_sizes']} sizes over {a['N_decades']:.2f} decades of N, {a['n_budgets']} budgets, "
                     f"{a['n_seeds']} seed(s): SD(alpha) ~ {sa}, SD(beta) ~ {sb}")
    assumed = (f"assuming per-run noise {design['noise']:.3g} in log loss, {design['shared']:.0%} of its variance "
               f"shared by a (size, seed) cell, and the law at E {design['params']['E']:.3g}, "
               f"alpha {design['params']['alpha']:.3g}, beta {design['params']['beta']:.3g}")
    if design.get("sd_delta_alpha") is not None:
        a, b = design["compared"]
        lines.append(f"{b} - {a}: SD(delta alpha) ~ {design['sd_delta_alpha']:.3f}; smallest delta alpha detectable "
                     f"(80% power, 5% two-sided) ~ {design['min_detectable_delta_alpha']:.3f}; power at "
                     f"{design['effect']:g}: {design['power_at_effect']:.0%}")
    elif len(design["per_arch"]) >= 2:
        lines.append("delta alpha: not identified on this grid")
    lines.append(assumed)
    for p in design["problems"]:
        lines.append(f"WARNING {p}")
    if len(design["per_arch"]) >= 2 and not design["resolvable"]:
        if design.get("demonstration", True):
            lines.append(f"WARNING this grid cannot resolve delta alpha = {design['effect']:g}: a comparison on it is "
                         "a pipeline demonstration, not a measurement")
        else:
            lines.append(f"WARNING this grid detects delta alpha = {design['effect']:g} with "
                         f"{design['power_at_effect']:.0%} power, short of 80%")
        alts = [f"{alt['change']} ({alt['runs_per_arch']} runs per architecture, detects "
                f"{alt['min_detectable_delta_alpha']:.3f})" for alt in design.get("would_resolve", [])]
        if alts:
            lines.append("  would resolve it: " + "; or ".join(alts))
        if not design.get("would_resolve"):
            lines.append("  neither 10 seeds nor 3 decades of N would resolve it at this noise")
    return lines
