"""Assemble the report: every page into one PDF (and optionally PNGs), byte-identical for the same inputs.

Determinism: the PDF's CreationDate is the time the last run finished (from the results table, or a fixed date
when no run has finished), ModDate is left out, and nothing else in matplotlib's PDF output depends on the clock
or on object addresses. The PDF is written to a temporary name and renamed, so a failure leaves no partial file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import matplotlib as mpl
from matplotlib.backends.backend_pdf import PdfPages

from reports import figures
from reports.inputs import ReportInputError, ReportInputs, resolve_inputs
from simplicial.checkpoint import atomic_path

FALLBACK_DATE = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)


def report_date(inputs: ReportInputs) -> dt.datetime:
    """The latest `finished_at` of the table (the sweep's own date), else a fixed date."""
    stamps = []
    for s in inputs.results["finished_at"]:
        try:
            t = dt.datetime.fromisoformat(str(s).replace("Z", "+00:00"))
        except ValueError:
            continue
        stamps.append(t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc))
    return max(stamps) if stamps else FALLBACK_DATE


def render_pages(inputs: ReportInputs) -> list[tuple[str, object]]:
    """(name, Figure) for every page, in order; page 9 may span several figures for big sweeps."""
    out = []
    with mpl.rc_context(figures.RC):
        for name, fn in figures.PAGES:
            made = fn(inputs)
            if isinstance(made, list):
                out += [(name if len(made) == 1 else f"{name}_{i + 1}", f) for i, f in enumerate(made)]
            else:
                out.append((name, made))
    return out


def write_pdf(inputs: ReportInputs, out: str | Path, png_dir: str | Path | None = None) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "Title": f"Scaling report: {inputs.sweep_name}",
        "Subject": "2-simplicial vs dot-product attention scaling laws",
        "Creator": "simplex-scaling reports",
        "CreationDate": report_date(inputs),
        "ModDate": None,
    }
    with mpl.rc_context(figures.RC):
        pages = render_pages(inputs)
        with atomic_path(out) as tmp:  # the project's one atomic writer (umask honoured)
            with PdfPages(tmp, metadata=metadata) as pdf:
                for _, fig in pages:
                    pdf.savefig(fig)
        if png_dir is not None:
            png_dir = Path(png_dir)
            png_dir.mkdir(parents=True, exist_ok=True)
            for name, fig in pages:
                # No "Software" text chunk: the PNG bytes then depend on the drawing only.
                fig.savefig(png_dir / f"{name}.png", metadata={"Software": None})
    return out


def build_report(source: str | Path, out: str | Path | None = None, *, fits: str | Path | None = None,
                 fixed_budget: str | Path | None = None, curves: str | Path | None = None,
                 png_dir: str | Path | None = None) -> Path:
    """Make the PDF report of a sweep from its results table (or sweep YAML) and fit files; returns its path.

    Raises `ReportInputError` for missing/unreadable inputs before anything is written. `out` defaults to
    report.pdf beside the results table.
    """
    if out is not None and Path(out).is_dir():
        raise ReportInputError(f"-o {out}: is a folder; give the PDF's file name, e.g. {Path(out) / 'report.pdf'}")
    inputs = resolve_inputs(source, fits=fits, fixed_budget=fixed_budget, curves=curves)
    if out is None:
        out = inputs.results_path.with_name("report.pdf")
    return write_pdf(inputs, out, png_dir)
