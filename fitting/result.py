"""FitResult: one fit's outcome as data, modelled on scipy.optimize.OptimizeResult (STYLE.md section 4).

Non-convergence is recorded in ``success``/``status``/``message``, never raised: the caller (CLI, report) decides
whether to warn, mark or drop. Extra solver-specific fields may be added, as scipy's solvers do.
"""
from __future__ import annotations

import math
from typing import Any

# One shared table of exit paths, like scipy's ``_status_message``; ``success`` means status 0.
STATUS_MESSAGES = {
    0: "converged",
    1: "iteration limit reached",
    2: "line search could not improve the objective (precision loss) and the gradient is not small",
    3: "non-finite objective or gradient",
    4: "solution on a bound of the search region",
    5: "not enough data for this form",
}


class FitResult(dict):
    """Outcome of one fit; a dict with attribute access.

    Fields (all fits): ``params`` (dict name -> value), ``fun`` (objective at the optimum, the Approach-3 SUM
    of Huber losses unless the fitter says otherwise), ``success``, ``status`` (key of ``STATUS_MESSAGES``),
    ``message``, ``nit``, ``nfev``, ``grad_norm`` (Euclidean norm of the objective's gradient at the optimum,
    projected on active bounds), ``n_starts`` (starting points tried), ``n_points`` (runs used), ``method``.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc

    __setattr__ = dict.__setitem__  # type: ignore[assignment]
    __delattr__ = dict.__delitem__  # type: ignore[assignment]

    @property
    def converged(self) -> bool:
        return bool(self.get("success", False))

    @property
    def objective(self) -> float:
        return float(self["fun"])

    def __repr__(self) -> str:
        # Important fields first, as scipy's _RichResult does.
        order = ["method", "message", "success", "status", "fun", "params", "grad_norm", "nit", "nfev",
                 "n_starts", "n_points"]
        keys = [k for k in order if k in self] + sorted(k for k in self if k not in order)
        width = max(len(k) for k in keys) if keys else 0
        return "\n".join(f"{k.rjust(width)}: {self[k]!r}" for k in keys)

    def to_json(self) -> dict:
        """The fits.json fields of this fit (docs/DESIGN.md); NaN/inf become null."""
        out: dict[str, Any] = {k: _clean(v) for k, v in self["params"].items()}
        out.update(
            converged=self.converged, objective=_clean(self["fun"]), grad_norm=_clean(self.get("grad_norm")),
            message=self.get("message", ""), status_code=int(self.get("status", 0)), nit=int(self.get("nit", 0)),
            nfev=int(self.get("nfev", 0)), n_starts=int(self.get("n_starts", 0)), n_runs=int(self.get("n_points", 0)),
            method=self.get("method", ""),
        )
        return out


def _clean(v: Any) -> Any:
    """JSON-safe scalar: numpy -> python, NaN/inf -> None."""
    if v is None:
        return None
    if isinstance(v, (bool,)):
        return v
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return f if math.isfinite(f) else None
