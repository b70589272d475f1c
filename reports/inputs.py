"""Load and check the files a report reads: results table, training curves, fits, fixed-budget fits.

The report never refits and never opens run folders: everything it shows comes from these plain files, whose
contracts are in docs/DESIGN.md. Every problem raises `ReportInputError` naming the file and the column or key.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

#: Columns a results table must have for any page to make sense (DESIGN.md, "Results table").
REQUIRED_RESULTS_COLUMNS = ("run_id", "arch", "size", "status", "params", "tokens", "loss")
#: Columns read as numbers when present; missing optional columns are filled with NaN.
NUMERIC_RESULTS_COLUMNS = (
    "params", "params_with_embeddings", "tokens", "flops", "loss", "train_loss", "val_loss", "n_layers", "d_model",
    "n_heads", "simplicial_every", "w1", "w2", "seq_len", "wall_time_s", "tokens_per_s", "vocab_size",
)
TEXT_RESULTS_COLUMNS = (
    "sweep", "device", "error", "finished_at", "dataset", "tokenizer", "torch_version", "triton_version", "git_commit",
    "code_dirty",
)
REQUIRED_CURVES_COLUMNS = ("run_id", "arch", "tokens", "train_loss")
#: The five parameters of L(N, D) = E + A / N^alpha + B / D^beta, in the order of `bootstrap.samples` rows.
LAW_PARAMS = ("E", "A", "B", "alpha", "beta")
NOT_ENOUGH_RUNS = "not enough runs"

# Default file names inside a sweep folder (DESIGN.md, "Sweep folder").
RESULTS_NAME = "results.csv"
FITS_NAME = "fits.json"
FIXED_BUDGET_NAME = "fixed_budget.json"
REPORT_NAME = "report.pdf"


class ReportInputError(Exception):
    """A results, curves or fits file is missing, unreadable or lacks what the report needs."""


@dataclass
class ReportInputs:
    """Everything one report shows, already checked.

    `fits` / `fixed_budget` / `curves` are None when their file is absent: pages that need them say so.
    """

    results: pd.DataFrame
    results_path: Path
    curves: pd.DataFrame | None = None
    curves_path: Path | None = None
    fits: dict | None = None
    fits_path: Path | None = None
    fixed_budget: dict | None = None
    fixed_budget_path: Path | None = None
    # evaluation set name -> its own fits (fits_<name>.json beside fits.json, fitting.cli.fit_results), and paths
    eval_fits: dict[str, dict] = field(default_factory=dict)
    eval_fits_paths: dict[str, Path] = field(default_factory=dict)
    sweep_name: str = ""
    notes: list[str] = field(default_factory=list)  # non-fatal problems worth stating on the title page

    @property
    def done(self) -> pd.DataFrame:
        """Runs the fit-related pages use: status done and a finite loss, and of an LR axis each cell's best
        learning rate only (column best_lr, as the fits; the loss-vs-lr page shows the others)."""
        r = self.results
        ok = (r["status"] == "done") & np.isfinite(r["loss"]) & (r["loss"] > 0) & (r["params"] > 0) & (r["tokens"] > 0)
        if "best_lr" in r.columns:
            ok &= r["best_lr"].astype(str).str.lower() == "true"
        return r[ok]

    @property
    def archs(self) -> list[str]:
        """Architectures in the table and in the fits, sorted: the order colours are assigned in."""
        names = set(self.results["arch"])
        if self.fits:
            names |= set(self.fits["fits"])
        return sorted(names)

    def group_fit(self, arch: str) -> dict | None:
        """The primary fit for one architecture when it has parameters, else None."""
        if not self.fits:
            return None
        g = self.fits["fits"].get(arch)
        if not g or g.get("status", "ok") != "ok" or not all(k in g for k in LAW_PARAMS):
            return None
        return g


def eval_sets(results: pd.DataFrame) -> list[str]:
    """Names of the evaluation sets in a results table (columns loss_<name>, collect's convention)."""
    return sorted(c.removeprefix("loss_") for c in results.columns if c.startswith("loss_"))


def _read_csv(path: Path, what: str, missing_hint: str = "") -> pd.DataFrame:
    if not path.is_file():
        raise ReportInputError(f"{what} {path}: no such file{missing_hint}")
    try:
        df = pd.read_csv(path, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise ReportInputError(f"{what} {path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as e:
        raise ReportInputError(f"{what} {path}: cannot be read as CSV ({e})") from None
    return df


def _numeric(df: pd.DataFrame, col: str, path: Path, what: str) -> None:
    """Coerce a column to float; text that is not a number is an error naming the first bad value."""
    raw = df[col]
    num = pd.to_numeric(raw, errors="coerce")
    bad = num.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ReportInputError(f"{what} {path}: column {col!r} row {i + 2} is not a number: {raw.iloc[i]!r}")
    df[col] = num.astype(float)


def load_results(path: str | Path, missing_hint: str = "") -> pd.DataFrame:
    """Read results.csv; raise `ReportInputError` on a missing file (its message ending in `missing_hint`), missing
    columns or an empty table."""
    path = Path(path)
    df = _read_csv(path, "results table", missing_hint)
    missing = [c for c in REQUIRED_RESULTS_COLUMNS if c not in df.columns]
    if missing:
        raise ReportInputError(f"results table {path}: missing column(s) {', '.join(missing)} "
                               f"(needs {', '.join(REQUIRED_RESULTS_COLUMNS)}; see docs/DESIGN.md)")
    if len(df) == 0:
        raise ReportInputError(f"results table {path}: no runs (the table has a header and no rows)")
    for col in NUMERIC_RESULTS_COLUMNS:
        if col in df.columns:
            _numeric(df, col, path, "results table")
        else:
            df[col] = np.nan
    for col in TEXT_RESULTS_COLUMNS:
        if col not in df.columns:
            df[col] = ""
        df[col] = df[col].astype(object).fillna("").astype(str)  # an all-empty column reads as float64
    for col in ("run_id", "arch", "size", "status"):
        df[col] = df[col].astype(object).fillna("").astype(str)
    if (df["arch"] == "").any():
        raise ReportInputError(f"results table {path}: column 'arch' is empty on row "
                               f"{int(np.flatnonzero(df['arch'] == '')[0]) + 2}")
    # A stable row order makes every page independent of how the table happened to be written.
    return df.sort_values(["arch", "params", "tokens", "run_id"], kind="mergesort").reset_index(drop=True)


def load_curves(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    df = _read_csv(path, "training curves")
    missing = [c for c in REQUIRED_CURVES_COLUMNS if c not in df.columns]
    if missing:
        raise ReportInputError(f"training curves {path}: missing column(s) {', '.join(missing)}")
    for col in ("params", "step", "tokens", "train_loss", "val_loss"):
        if col in df.columns:
            _numeric(df, col, path, "training curves")
        else:
            df[col] = np.nan
    df["run_id"] = df["run_id"].astype(str)
    df["arch"] = df["arch"].astype(str)
    return df.sort_values(["run_id", "tokens"], kind="mergesort").reset_index(drop=True)


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise ReportInputError(f"{what} {path}: no such file")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise ReportInputError(f"{what} {path}: unreadable JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ReportInputError(f"{what} {path}: top level is {type(obj).__name__}, expected an object")
    return obj


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def load_fits(path: str | Path) -> dict:
    """Read fits.json (DESIGN.md, "Fits file") and check each group has what the pages draw."""
    path = Path(path)
    obj = _read_json(path, "fits file")
    fits = obj.get("fits")
    if not isinstance(fits, dict):
        raise ReportInputError(f"fits file {path}: key 'fits' missing or not an object")
    for group, g in fits.items():
        where = f"fits file {path}: fits.{group}"
        if not isinstance(g, dict):
            raise ReportInputError(f"{where} is not an object")
        status = g.setdefault("status", "ok")
        if status != "ok":
            continue  # e.g. "not enough runs": shown as such, parameters not needed
        for k in LAW_PARAMS:
            if not _is_number(g.get(k)):
                raise ReportInputError(f"{where}.{k} missing or not a finite number: {g.get(k)!r}")
        ci = g.get("ci", {})
        if not isinstance(ci, dict):
            raise ReportInputError(f"{where}.ci is not an object")
        for k, v in ci.items():  # null: no interval (fewer than 2 converged resamples)
            if v is not None and not (isinstance(v, list) and len(v) == 2):
                raise ReportInputError(f"{where}.ci.{k} should be [lo, hi] or null, got {v!r}")
        boot = g.get("bootstrap")
        if boot is not None:
            samples = boot.get("samples", []) if isinstance(boot, dict) else None
            try:
                arr = np.asarray(samples, dtype=float).reshape(-1, len(LAW_PARAMS)) if samples else None
            except (TypeError, ValueError):
                raise ReportInputError(f"{where}.bootstrap.samples should be rows of [E, A, B, alpha, beta]") from None
            g["_samples"] = arr
    obj.setdefault("meta", {})
    for key, comp in obj.setdefault("comparison", {}).items():
        if not isinstance(comp, dict) or "status" in comp:
            continue  # a comparison not made: shown with its reason
        for param, c in comp.items():
            if isinstance(c, dict) and "ci" in c and not c.get("verdict"):
                # the verdict carries identifiability, which an interval alone cannot: never guessed from it
                raise ReportInputError(f"fits file {path}: comparison.{key}.{param}.verdict missing (a fits file "
                                       f"from before verdicts); write it again with python -m fitting chinchilla")
    return obj


def load_fixed_budget(path: str | Path) -> dict:
    path = Path(path)
    obj = _read_json(path, "fixed-budget file")
    for key in ("fixed_tokens", "fixed_params"):
        val = obj.setdefault(key, {})
        if not isinstance(val, dict) or not all(isinstance(v, list) for v in val.values()):
            raise ReportInputError(f"fixed-budget file {path}: {key} should map group -> list of fits")
    return obj


def _sweep_folder(source: Path) -> tuple[Path, str]:
    """A sweep YAML -> (sweep folder, sweep name). `sweeps` is imported only here, so the report runs without it."""
    try:
        from sweeps import load_sweep
    except ImportError as e:
        raise ReportInputError(f"{source}: reading a sweep file needs the sweeps package ({e})") from None
    try:
        spec = load_sweep(source)
    except Exception as e:  # the sweep loader's own error names the key; pass it on unchanged
        raise ReportInputError(f"sweep file {source}: {e}") from None
    return Path(spec.sweep_dir), str(getattr(spec, "name", "") or Path(spec.sweep_dir).name)


def resolve_inputs(source: str | Path, *, fits: str | Path | None = None, fixed_budget: str | Path | None = None,
                   curves: str | Path | None = None) -> ReportInputs:
    """Find and load every input of a report.

    `source` is a sweep YAML (files from its sweep folder) or a results.csv (other files beside it:
    `<stem>_curves.csv`, fits.json, fixed_budget.json). A file named explicitly must exist; a default one may be
    absent, and the pages that need it say so. Each evaluation set's fits, fits_<name>.json, are read from beside
    fits.json when present.
    """
    source = Path(source)
    if source.suffix.lower() in (".yaml", ".yml"):
        folder, sweep_name = _sweep_folder(source)
        results_path = folder / RESULTS_NAME
        hint = (f" (run `python launch.py collect {source}` first, or `python launch.py report {source}`, "
                f"which collects)")
    else:
        results_path, folder, sweep_name, hint = source, source.parent, "", ""
    results = load_results(results_path, hint)
    if not sweep_name:
        names = sorted(set(results["sweep"]) - {""})
        sweep_name = ", ".join(names) if names else results_path.parent.name

    inputs = ReportInputs(results=results, results_path=results_path, sweep_name=sweep_name)
    curves_path = Path(curves) if curves else results_path.with_name(results_path.stem + "_curves.csv")
    if curves or curves_path.is_file():
        inputs.curves, inputs.curves_path = load_curves(curves_path), curves_path
    fits_path = Path(fits) if fits else folder / FITS_NAME
    if fits or fits_path.is_file():
        inputs.fits, inputs.fits_path = load_fits(fits_path), fits_path
    fb_path = Path(fixed_budget) if fixed_budget else folder / FIXED_BUDGET_NAME
    if fixed_budget or fb_path.is_file():
        inputs.fixed_budget, inputs.fixed_budget_path = load_fixed_budget(fb_path), fb_path
    from fitting.cli import eval_fits_path

    for name in eval_sets(results):
        path = eval_fits_path(fits_path.parent, name)
        if path.is_file():
            inputs.eval_fits[name], inputs.eval_fits_paths[name] = load_fits(path), path
    for doc, path in ((inputs.fits, inputs.fits_path), (inputs.fixed_budget, inputs.fixed_budget_path),
                      *((inputs.eval_fits[n], inputs.eval_fits_paths[n]) for n in inputs.eval_fits)):
        if doc is not None:
            _check_provenance(doc, path, results_path, inputs.notes)
    _cross_check(inputs)
    return inputs


def _check_provenance(doc: dict, path: Path, results_path: Path, notes: list[str]) -> None:
    """A fit file records a digest of the runs it was fitted to (`meta.table_sha256`, fitting.data.table_sha256);
    recompute it from this results table with the fit's own column choices. Another table's fits would draw curves
    that do not belong to the points: refused. A file without the digest is only noted (it cannot be checked)."""
    from fitting.data import FittingInputError, read_table, table_sha256

    meta = doc.get("meta") or {}
    recorded = meta.get("table_sha256")
    if not recorded:
        notes.append(f"{path.name} records no digest of the table it was fitted to; it could not be checked "
                     f"against {results_path.name}")
        return
    try:
        table = read_table(results_path, params_col=meta.get("params_col") or "params",
                           tokens_col=meta.get("tokens_col"), flops_col=meta.get("flops_col"),
                           loss_col=meta.get("loss_col") or "loss", group_col=meta.get("group_col"),
                           best_lr_only=meta.get("best_lr_only", True))
        now = table_sha256(table)
    except FittingInputError as e:
        now, why = None, str(e)
    else:
        why = f"table digest {recorded[:12]} there, {now[:12]} here"
    if now != recorded:
        raise ReportInputError(f"{path} was fitted to other runs than {results_path} holds ({why}): its curves would "
                               f"not match the points. Re-fit: python -m fitting "
                               f"{'chinchilla' if 'fits' in doc else 'fixed-budget'} {results_path} --json {path}")


def _cross_check(inputs: ReportInputs) -> None:
    """Mismatches between fits and table are stated on the title page, not fatal."""
    if not inputs.fits:
        return
    for n in inputs.fits.get("notes") or []:  # the fitting CLI's own warnings
        inputs.notes.append(f"fitting: {n}")
    meta = inputs.fits.get("meta", {})
    n_fit = meta.get("n_runs")
    n_done = len(inputs.done)
    if _is_number(n_fit) and int(n_fit) != n_done:
        inputs.notes.append(f"fits were made from {int(n_fit)} runs; the table now has {n_done} done runs "
                            f"(re-run `python -m fitting chinchilla` to refresh)")
    table_archs = set(inputs.results["arch"])
    for g in sorted(set(inputs.fits["fits"]) - table_archs):
        inputs.notes.append(f"fits file has group {g!r}, which is not in the results table")
    for a in sorted(table_archs - set(inputs.fits["fits"])):
        inputs.notes.append(f"no fit for architecture {a!r} in {inputs.fits_path.name}")
