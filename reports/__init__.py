"""Figures and a PDF report from a sweep's results table and fit files; `python -m reports`.

Reads files only (docs/DESIGN.md contracts): never refits, never opens run folders.
"""

from reports.inputs import ReportInputError, ReportInputs, resolve_inputs
from reports.pdf import build_report

__all__ = ["ReportInputError", "ReportInputs", "build_report", "resolve_inputs"]
