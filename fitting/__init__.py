"""Scaling-law fits: Chinchilla Approach 3, variable projection, fixed-budget forms, bootstrap, comparison.

Public names: ``fit_approach3``, ``fit_varpro``, ``bootstrap_fit``, ``fit_groups`` (the fits.json document),
``fixed_budget``, ``read_table``, ``FitResult``, ``FittingInputError``; CLI: ``python -m fitting`` (fitting.cli.main).
"""
from .bootstrap import bootstrap as bootstrap_fit  # not re-bound as 'bootstrap': that name is the module
from .chinchilla import ConvergenceWarning, compute_optimal, fit_approach3, predict_loss
from .data import FittingInputError, read_table
from .fixed_budget import fixed_budget
from .pipeline import fit_groups
from .result import FitResult
from .varpro import fit_varpro

__all__ = ["FitResult", "FittingInputError", "ConvergenceWarning", "fit_approach3", "fit_varpro", "bootstrap_fit",
           "fit_groups", "fixed_budget", "read_table", "compute_optimal", "predict_loss"]
