"""`python -m reports SWEEP.yaml|results.csv [--fits fits.json] [-o report.pdf] [--png-dir DIR]`.

Examples:
    python -m reports sweeps/demo.yaml                       # files from the sweep folder, report.pdf there
    python -m reports outputs/demo/results.csv -o /tmp/report.pdf --png-dir /tmp/report_png

Exit status: 0 with the PDF's path printed last; 2 for bad input (missing file or column, empty table,
unreadable fits file), with a message naming the file and what is wrong; nothing is written then.
"""

from __future__ import annotations

import argparse
import sys

from reports.inputs import ReportInputError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m reports", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="sweep YAML (reads its sweep folder) or a results.csv")
    p.add_argument("--fits", help="fits.json (default: fits.json beside the results table, if present)")
    p.add_argument("--fixed-budget", help="fixed_budget.json (default: beside the results table, if present)")
    p.add_argument("--curves", help="training curves CSV (default: <results stem>_curves.csv, if present)")
    p.add_argument("-o", "--output", help="PDF to write (default: report.pdf beside the results table)")
    p.add_argument("--png-dir", help="also save every page as PNG in this folder")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from reports.pdf import build_report  # matplotlib is imported only once the arguments parsed

    try:
        path = build_report(args.source, args.output, fits=args.fits, fixed_budget=args.fixed_budget,
                            curves=args.curves, png_dir=args.png_dir)
    except ReportInputError as e:
        print(f"reports: error: {e}", file=sys.stderr)
        return 2
    if args.png_dir:
        print(f"PNG pages: {args.png_dir}")
    print(path)
    return 0
