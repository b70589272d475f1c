"""``python -m fitting``: fit a results table and write fits.json / fixed_budget.json (docs/DESIGN.md).

    python -m fitting chinchilla results.csv --bootstrap 200 --json fits.json
    python -m fitting chinchilla chinchilla.csv --params-col "Model Size" --flops-col "Training FLOP" --group-col none
    python -m fitting fixed-budget results.csv --json fixed_budget.json

Exit status: 0 fitted (an unconverged fit is a printed WARNING, and ``converged: false`` in the file), 2 bad input
(message names the column/group and what is wrong; nothing is written).
"""
from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

from .chinchilla import DEFAULT_DELTA
from .data import FittingInputError, insufficiency, read_table, table_sha256
from .fixed_budget import fixed_budget
from .pipeline import RESAMPLE, clean_json, fit_groups


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc


def _pairs(text: str) -> list[tuple[float, float]]:
    pairs = []
    for part in (t for t in text.split(",") if t.strip()):
        try:
            pair = tuple(float(v) for v in part.split(":"))
        except ValueError:
            pair = ()
        if len(pair) != 2 or not all(math.isfinite(v) and v > 0 for v in pair):
            raise argparse.ArgumentTypeError(f"expected N:D pairs of positive numbers (e.g. 1e8:2e9,4e8:8e9); "
                                             f"{part!r} in {text!r} is not one")
        pairs.append(pair)
    return pairs


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("csv", help="results table (launch.py collect) or any CSV with N, D (or C) and loss columns")
    p.add_argument("--params-col", default="params", help="N column (default: params)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--tokens-col", default=None, help="D column (default: tokens)")
    src.add_argument("--flops-col", default=None, help="training-FLOP column; D = C / (6 N)")
    p.add_argument("--loss-col", default="loss", help="loss column (default: loss)")
    p.add_argument("--group-col", default=None,
                   help="architecture column (default: arch; if absent all rows are one group); 'none': one group")
    p.add_argument("--all-lr", action="store_true",
                   help="fit every learning rate of the LR axis, not only each cell's best (column best_lr)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the result file here")
    p.add_argument("--insufficient", choices=["error", "mark"], default="error",
                   help="a group too small to fit: stop with exit 2 (default), or mark it and fit the others "
                        "(what launch.py --fit does for partial sweeps)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fitting", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("chinchilla", help="L(N, D) = E + A/N^alpha + B/D^beta per group, bootstrap CIs, comparison")
    _common(c)
    c.add_argument("--bootstrap", type=int, default=200, help="resamples (default 200; 0: none)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--method", choices=["approach3", "varpro", "both"], default="both")
    c.add_argument("--level", type=float, default=0.95, help="confidence level of the percentile CIs")
    c.add_argument("--delta", type=float, default=DEFAULT_DELTA, help="Huber delta (Hoffmann et al.: 1e-3)")
    c.add_argument("--bound-e", action="store_true", help="constrain E <= min(loss)")
    c.add_argument("--starts", choices=["published", "small"], default="published",
                   help="start grid: the published 4,500 starts, or a 243-start grid for quick looks")
    c.add_argument("--compute-budgets", type=_floats, default=[], metavar="C1,C2",
                   help="compute budgets for N_opt/D_opt (C = 6ND)")
    c.add_argument("--predict", type=_pairs, default=[], metavar="N:D,...", help="predict the loss at these (N, D)")
    c.add_argument("--jobs", type=int, default=None, help="worker processes for the bootstrap (default: all cores)")
    c.add_argument("--compare", default=None, metavar="A,B",
                   help="compare group B against A (default: every group against the first, sorted)")
    c.add_argument("--pair-tol", type=float, default=0.01,
                   help="--resample runs: relative N and D tolerance for the paired comparison")
    c.add_argument("--resample", choices=list(RESAMPLE), default="auto",
                   help="cells = parametric bootstrap on the fixed design, errors shared by a (size, seed) cell, "
                        "paired across architectures; wild = wild cluster bootstrap over those cells; runs = case "
                        "bootstrap over runs (Hoffmann et al., Epoch); auto (default): cells when the table has a "
                        "size column, else runs (docs/FITTING.md has each one's measured calibration)")
    c.add_argument("--effect", type=float, default=0.06,
                   help="the delta alpha the design analysis asks about (default 0.06)")
    f = sub.add_parser("fixed-budget", help="L(N) at each token budget and L(D) at each model size")
    _common(f)
    f.add_argument("--rel-tol", type=float, default=0.02, help="token budgets within this relative gap are one")
    return parser


def _read(args):
    explicit = args.group_col is not None
    group_col = None if (args.group_col or "").lower() == "none" else (args.group_col or "arch")
    return read_table(args.csv, params_col=args.params_col, tokens_col=args.tokens_col, flops_col=args.flops_col,
                      loss_col=args.loss_col, group_col=group_col, group_col_explicit=explicit,
                      best_lr_only=not args.all_lr)


def _write_json(path: str, doc: dict) -> None:
    """The project's atomic writer (tmp + rename, umask honoured); allow_nan=False: a NaN never makes invalid JSON."""
    from simplicial.checkpoint import write_json_atomic

    target = Path(path)
    if target.is_dir():
        raise FittingInputError(f"--json {path}: is a folder; give a file name, e.g. {target / 'fits.json'}")
    try:
        write_json_atomic(target, clean_json(doc), indent=1, sort_keys=False)
    except OSError as exc:
        raise FittingInputError(f"--json {path}: cannot write ({exc.strerror or exc})") from exc


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4g}"


NOT_IDENTIFIED = "not identified"


def _print_fits(doc: dict) -> None:
    level = doc["meta"]["level"]
    print(f"resampling: {doc['meta'].get('resample_method', '-')}")
    for g, fit in doc["fits"].items():
        print(f"\n== group {g} ({fit.get('n_runs')} runs) ==")
        if fit["status"] != "ok":
            print(f"   not fitted: {fit['reason']}")
            continue
        for m, e in fit["methods"].items():
            b = e["bootstrap"]
            print(f"-- {m}: {'converged' if e['converged'] else 'NOT CONVERGED'}; objective {_fmt(e['objective'])}, "
                  f"|grad| {_fmt(e['grad_norm'])}; resamples {b['n_converged']}/{b['n']} converged"
                  + (f", {b.get('n_unconverged')} unconverged (dropped)" if b.get("n_unconverged") else "")
                  + (f", {b['n_skipped_unidentifiable']} unidentifiable (dropped)"
                     if b.get("n_skipped_unidentifiable") else ""))
            if not e["converged"] and e.get("message"):
                print(f"   {e['message']}")
            if not e.get("identified", True):
                print(f"   NOT IDENTIFIED: {'; '.join(e['identifiability'])}")
            print(f"   {'':24s} {'value':>12s}   {int(round(level * 100))}% CI")
            for k in list(e["ci"]) or ["E", "A", "B", "alpha", "beta", "a"]:
                v = e.get(k, e.get("derived", {}).get(k))
                ci = e["ci"].get(k)
                if not e.get("identified", True):  # never a confident number for an unidentified fit
                    print(f"   {k:24s} {NOT_IDENTIFIED:>12s}   (point {_fmt(v)})")
                    continue
                cis = f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""
                print(f"   {k:24s} {_fmt(v):>12s}   {cis}")
        agree = fit.get("methods_agree")
        if agree:
            flags = {k: v["within_cis"] for k, v in agree.items() if v["within_cis"] is not None}
            if flags:
                bad = [k for k, v in flags.items() if not v]
                print("   methods agree within each other's CIs" if not bad else
                      f"   WARNING methods disagree beyond their CIs on: {', '.join(bad)}")
    for key, comp in doc["comparison"].items():
        print(f"\n== comparison {key} ({doc['meta']['primary_method']}) ==")
        if "status" in comp:
            print(f"   {comp['status']}: {comp['reason']}")
            continue
        b, a = key.split(" - ", 1)
        for k, c in comp.items():
            if c.get("verdict") == NOT_IDENTIFIED:
                print(f"   {k:6s} {NOT_IDENTIFIED}: {'; '.join(c.get('identifiability') or [])}")
                continue
            ci = c["ci"]
            word = {"larger": f"larger for {b}", "smaller": f"smaller for {b}",
                    "not resolved": "not resolved"}.get(c.get("verdict"), c.get("verdict"))
            print(f"   {k:6s} diff {_fmt(c['diff'])} " + (f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "")
                  + f"  ratio {_fmt(c['ratio'])}  -> {word} at {level:.0%}"
                  + (f" ({c['n_dropped']} resample pairs dropped)" if c.get("n_dropped") else ""))
        print(f"   method: {next(iter(comp.values())).get('method')}; 3 exponents compared: each interval is "
              f"{level:.0%} on its own, not jointly")
        pc = doc["comparison_paired"].get(key)
        if pc is not None:
            if pc.get("status") != "ok":
                print(f"   paired: {pc.get('status')} ({pc.get('reason')}; {pc['n_pairs']} matched runs)")
            else:
                print(f"   paired on {pc['n_pairs']} matched (N, D): " + "; ".join(
                    f"{k} diff {_fmt(pc[k]['diff'])} CI {pc[k]['ci'] and [round(x, 4) for x in pc[k]['ci']]}"
                    for k in ("alpha", "beta", "a")))
    d = doc.get("design")
    if d:
        from .design import summary_lines

        print("\n== design (what this grid can resolve; fitting.design) ==")
        for line in summary_lines(d):
            print("   " + line)


def _chinchilla(args) -> int:
    table = _read(args)
    for note in table.notes:
        print(f"note: {note}")
    compare = None
    if args.compare:
        parts = [s.strip() for s in args.compare.split(",")]
        if len(parts) != 2:
            raise FittingInputError(f"--compare expects two groups A,B; got {args.compare!r}")
        compare = [tuple(parts)]
    if not 0 < args.level < 1:
        raise FittingInputError(f"--level must be in (0, 1), got {args.level}")
    if args.bootstrap < 0:
        raise FittingInputError(f"--bootstrap must be >= 0 (0: no bootstrap), got {args.bootstrap}")
    if args.seed < 0:
        raise FittingInputError(f"--seed must be >= 0, got {args.seed}")
    if not args.delta > 0:  # delta <= 0 makes the Huber loss constant and the optimiser never stops
        raise FittingInputError(f"--delta (the Huber delta) must be > 0, got {args.delta}")
    if not args.effect > 0:
        raise FittingInputError(f"--effect must be > 0, got {args.effect}")
    meta = {"csv": str(args.csv), "params_col": args.params_col, "tokens_col": table.tokens_col,
            "flops_col": table.flops_col, "loss_col": args.loss_col, "group_col": table.group_col,
            "best_lr_only": not args.all_lr, "table_sha256": table_sha256(table)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence problems are printed from doc["notes"] below
        doc = fit_groups(table, method=args.method, n_boot=args.bootstrap, seed=args.seed, level=args.level,
                         delta=args.delta, starts=args.starts, bound_e=args.bound_e,
                         compute_budgets=args.compute_budgets, predict=args.predict, jobs=args.jobs,
                         on_insufficient=args.insufficient, compare=compare, pair_tol=args.pair_tol, meta=meta,
                         resample=args.resample, effect=args.effect)
    _print_fits(doc)
    for note in doc["notes"]:
        print(note, file=sys.stderr)
    if args.json:
        _write_json(args.json, doc)
        print(f"\nwrote {args.json}")
    return 0


def _fixed_budget(args) -> int:
    table = _read(args)
    for note in table.notes:
        print(f"note: {note}")
    df, skipped = table.df, {}
    for g in table.groups:
        reason = insufficiency(table.group(g), n_params=3)
        if reason and "one token budget" not in reason:  # one D still gives L(N) at that D
            if args.insufficient == "error":
                raise FittingInputError(f"group {g!r}: {reason}")
            skipped[g] = reason
            print(f"note: group {g!r} not fitted: {reason}")
    if skipped:
        df = df[~df["group"].astype(str).isin(skipped)]
    doc = fixed_budget(df, rel_tol=args.rel_tol)
    doc["skipped"] = skipped
    for form, key, exp in (("fixed_tokens", "tokens", "alpha"), ("fixed_params", "params", "beta")):
        print(f"\n== {form} == (local slope: the log-log slope at this {key}, with a t interval; not the joint "
              f"fit's {exp}, and it can move opposite to it: docs/FITTING.md)")
        for g, rows in doc[form].items():
            for r in rows:
                ll = r["loglinear"]
                print(f"   {g:12s} {key}={r[key]:.4g} n={r['n_points']} E'={_fmt(r['E'])} {exp}'={_fmt(r[exp])} "
                      f"{'converged' if r['converged'] else 'not converged: ' + r['message']}"
                      + (f" | local slope {ll['alpha']:.4g}"
                         + (f" [{ll['ci'][0]:.4g}, {ll['ci'][1]:.4g}]" if ll.get("ci") else "")
                         + f" R^2 {_fmt(ll['r2'])}" if ll else ""))
    doc["meta"] = {"csv": str(args.csv), "params_col": args.params_col, "tokens_col": table.tokens_col,
                   "flops_col": table.flops_col, "loss_col": args.loss_col, "group_col": table.group_col,
                   "rel_tol": args.rel_tol, "best_lr_only": not args.all_lr, "table_sha256": table_sha256(table)}
    if args.json:
        _write_json(args.json, doc)
        print(f"\nwrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point (docs/DESIGN.md): returns the exit status; 2 for bad input or usage, nothing written."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    try:
        return _chinchilla(args) if args.command == "chinchilla" else _fixed_budget(args)
    except FittingInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def eval_fits_path(folder: str | Path, name: str) -> Path:
    """Where the fits of evaluation set `name` (column loss_<name>) live beside fits.json: fits_<name>.json."""
    return Path(folder) / f"fits_{name}.json"


def fit_files(out_dir: str | Path, evals: list[str]) -> dict[str, Path]:
    """The files `fit_results` writes into `out_dir`, by key: fits (validation loss), fixed_budget, and fits_<name>
    per evaluation set."""
    out_dir = Path(out_dir)
    return {"fits": out_dir / "fits.json", "fixed_budget": out_dir / "fixed_budget.json",
            **{f"fits_{name}": eval_fits_path(out_dir, name) for name in evals}}


def fit_results(results: str | Path, out_dir: str | Path, evals: list[str], *, bootstrap: int, seed: int,
                eval_starts: str = "small") -> int:
    """Every fit file of a results table (`fit_files`): fits.json (validation loss), fixed_budget.json and, per
    evaluation set `name`, fits_<name>.json (its column loss_<name>). A group with too few runs is marked, not an
    error, so a partial sweep fits what it can. `eval_starts`: the start grid of the evaluation-set fits ("small",
    243 starts, for time; "published" as the validation fit). Returns the first non-zero exit status, else 0."""
    results, files = str(results), fit_files(out_dir, evals)
    common = ["--bootstrap", str(bootstrap), "--seed", str(seed), "--method", "both", "--insufficient", "mark"]
    argvs = [["chinchilla", results, *common, "--json", str(files["fits"])],
             ["fixed-budget", results, "--insufficient", "mark", "--json", str(files["fixed_budget"])]]
    argvs += [["chinchilla", results, "--loss-col", f"loss_{name}", *common, "--starts", eval_starts,
               "--json", str(files[f"fits_{name}"])] for name in evals]
    for argv in argvs:
        rc = main(argv)
        if rc:
            return rc
    return 0
