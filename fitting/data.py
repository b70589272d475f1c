"""Reading and validating the results table before any fit (docs/DESIGN.md "Results table").

Every problem is a ``FittingInputError`` that names the file, column, group and offending value, so a bad
results.csv fails at the boundary with a message that says what to fix; the CLI maps it to exit status 2.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

N_PARAMS = 5  # E, A, B, alpha, beta


class FittingInputError(ValueError):
    """The input table cannot be fitted as asked; the message names column/group/value."""


@dataclass
class RunTable:
    """Validated runs: columns N, D, L, group (str), plus the original columns; ``notes`` for the user."""

    df: pd.DataFrame
    source: str
    params_col: str
    tokens_col: str | None
    flops_col: str | None
    loss_col: str
    group_col: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def groups(self) -> list[str]:
        return sorted(self.df["group"].unique())

    def group(self, name: str) -> pd.DataFrame:
        return self.df[self.df["group"] == name]


# Where every seed picks each cell's best lr on its own loss: the false-positive rate of the exponent comparison that
# benchmarks/bench_calibration.py measured on the H100 study's grid (its "study, lr per cell, null" design)
PER_CELL_FPR = "0.10 [0.06, 0.14] at a nominal 0.05"


def _selected_on_every_seed(raw: pd.DataFrame) -> list[str]:
    """A warning when more than one seed chose cells' best lr among several done runs on the loss being fitted:
    that selection is not in the intervals' error model, and on the study's grid it doubled the false-positive
    rate. Tuning on some seeds (`training.lr_tuning_seeds`) gives the other seeds one lr each, chosen without
    their losses, and measured calibrated there."""
    cols = ["arch", "size", "seed", "lr", "best_lr"]
    if not set(cols) <= set(raw.columns):
        return []
    key = [c for c in ("arch", "size", "budget_tokens", "budget_flops", "seed") if c in raw.columns]
    cells = raw.groupby(key, dropna=False)["lr"].nunique().rename("n_lr").reset_index()
    on_axis = cells.groupby(["arch", "size"])["n_lr"].transform("max") > 1  # the (arch, size)s with an lr axis
    share = (cells.loc[on_axis, "n_lr"] > 1).groupby(cells.loc[on_axis, "seed"]).mean()
    chosen = int((share >= 0.5).sum())  # a stray second lr in a few of a seed's cells is not a choice per cell
    if chosen < 2:
        return []
    return [f"WARNING {chosen} seeds chose each cell's best learning rate on its own loss (best_lr among several "
            f"lrs): the intervals do not model that choice, and on the H100 study's grid it gave a false-positive "
            f"rate of {PER_CELL_FPR} (benchmarks/results/calibration-2026-12-07.md); tune the lr on one seed "
            f"(training.lr_tuning_seeds) and replicate the winner"]


# Where the fitted rows come from an lr axis: what benchmarks/bench_calibration.py measured on the H100 study's grid
# as it ran (factor-2 axes, an optimum moving 5x across the sizes; its "study as run, 0.5% noise" design)
LR_AXIS_ALPHA = "bias -0.024, coverage 0.63 at a nominal 0.95; delta alpha's coverage 0.97"
# ... and where each architecture has its own optimum, as the study's seed 0 measured (its "each arch's optimum, 0.5%
# noise" design): the offsets differ between the architectures and reach delta alpha
LR_AXIS_DELTA = "bias -0.011, coverage 0.90 at a nominal 0.95, false-positive rate 0.09 at a nominal 0.05"


def _lr_axis_offsets(raw: pd.DataFrame, best: pd.DataFrame) -> list[str]:
    """A warning when the fitted rows (`best`, each cell's best lr among `raw`) come from an lr axis: a discrete
    axis leaves each size off its optimum by its own amount, which the fit reads as part of the N and D terms and no
    resampling of the noise sees. An offset both architectures share cancels in their difference; each one's own
    exponents keep it, and a second warning names the sizes where the architectures' offsets differ."""
    if not {"arch", "size", "lr"} <= set(raw.columns) or not (raw.groupby(["arch", "size"])["lr"].nunique() > 1).any():
        return []
    notes = [f"WARNING the fitted rows are each cell's best lr on an lr axis: each architecture's exponents include "
             f"the axis's offsets from the optimum, size by size, and their intervals do not (on the H100 study's "
             f"grid alpha: {LR_AXIS_ALPHA}; benchmarks/results/calibration-2026-12-07.md); read the exponents' "
             f"difference, not each architecture's value"]
    differ = _best_lr_differs(best)
    if differ:
        notes.append(f"WARNING the architectures' best lr differ at size(s) {', '.join(differ)}: there the axis leaves "
                     f"them off their optima by different amounts, which does not cancel in the exponents' "
                     f"difference (on the H100 study's grid, each architecture at the optimum its seed 0 measured: "
                     f"delta alpha {LR_AXIS_DELTA}; benchmarks/results/calibration-2026-12-07.md); a finer lr axis "
                     f"around both optima shrinks the offsets")
    return notes


def _best_lr_differs(best: pd.DataFrame) -> list[str]:
    """The sizes at which two architectures' fitted rows of one cell (size, budget, seed) took different learning
    rates, in the table's order. Both share the rule's lr per cell, so a different lr is a different multiplier."""
    key = [c for c in ("size", "budget_tokens", "budget_flops", "seed") if c in best.columns]
    n_lr = best.groupby(key, dropna=False, sort=False).agg(archs=("arch", "nunique"), lrs=("lr", "nunique"))
    differ = n_lr[(n_lr["archs"] > 1) & (n_lr["lrs"] > 1)].reset_index()["size"]
    return [str(x) for x in dict.fromkeys(differ)]


def read_table(csv, *, params_col: str = "params", tokens_col: str | None = None, flops_col: str | None = None,
               loss_col: str = "loss", group_col: str | None = "arch", group_col_explicit: bool = False,
               best_lr_only: bool = True) -> RunTable:
    """Read CSV (a path or a DataFrame), keep runs with status ``done``, derive D, and check values.

    ``flops_col`` derives tokens as flops / (6 * params) (C = 6 N D, Hoffmann et al. 2022). A missing group
    column means one group ("all") unless the caller named it explicitly.
    """
    if tokens_col is not None and flops_col is not None:
        raise FittingInputError("give --tokens-col or --flops-col, not both")
    if tokens_col is None and flops_col is None:
        tokens_col = "tokens"
    if isinstance(csv, pd.DataFrame):
        raw, source = csv.copy(), "<DataFrame>"
    else:
        source = str(csv)
        if not Path(source).is_file():
            raise FittingInputError(f"{source}: no such file")
        try:
            raw = pd.read_csv(source)
        except Exception as exc:  # pandas raises several types for unreadable files
            raise FittingInputError(f"{source}: cannot read as CSV ({exc})") from exc
    notes: list[str] = []
    _refuse_duplicate_runs(raw, source)
    cols = [params_col, tokens_col or flops_col, loss_col]
    for col in cols:
        if col not in raw.columns:
            raise FittingInputError(f"{source}: column {col!r} missing; columns are {list(raw.columns)}")
    if group_col is not None and group_col not in raw.columns:
        if group_col_explicit:
            raise FittingInputError(f"{source}: group column {group_col!r} missing; columns are {list(raw.columns)}")
        notes.append(f"no {group_col!r} column: all rows are one group 'all'")
        group_col = None
    if "status" in raw.columns:
        bad = raw["status"].astype(str) != "done"
        if bad.any():
            counts = raw.loc[bad, "status"].astype(str).value_counts().to_dict()
            notes.append(f"excluded {int(bad.sum())} run(s) whose status is not 'done': {counts}")
        raw = raw[~bad]
    if best_lr_only and "best_lr" in raw.columns:  # the LR axis (sweeps/collect.py): each cell's best lr only
        other = raw["best_lr"].astype(str).str.lower() != "true"
        if other.any():
            notes.append(f"excluded {int(other.sum())} run(s) that are not their cell's best learning rate "
                         f"(best_lr; --all-lr fits them too)")
            notes += _selected_on_every_seed(raw) + _lr_axis_offsets(raw, raw[~other])
        raw = raw[~other]
    if raw.empty:
        raise FittingInputError(f"{source}: no runs to fit (after excluding runs whose status is not 'done')")
    ident = raw["run_id"].astype(str) if "run_id" in raw.columns else pd.Series(
        [f"row {i + 2}" for i in range(len(raw))], index=raw.index)  # +2: header line, 1-based
    if group_col:
        empty = raw[group_col].isna() | (raw[group_col].astype(str).str.strip() == "")
        if empty.any():
            i = empty.idxmax()
            raise FittingInputError(f"{source}: column {group_col!r} is empty for {int(empty.sum())} run(s); first: "
                                    f"{ident[i]} (row {raw.index.get_loc(i) + 2} of the runs kept)")
    group = raw[group_col].astype(str) if group_col else pd.Series("all", index=raw.index)

    def numeric(col: str) -> pd.Series:
        vals = pd.to_numeric(raw[col], errors="coerce")
        for what, mask in (("NaN or not a number", vals.isna()), ("non-positive", vals <= 0),
                           ("infinite", np.isinf(vals))):
            if mask.any():
                i = mask.idxmax()
                raise FittingInputError(
                    f"{source}: column {col!r} has {int(mask.sum())} {what} value(s); first: {ident[i]} "
                    f"(group {group[i]!r}) = {raw.loc[i, col]!r}")
        return vals.astype(float)

    N = numeric(params_col)
    D = numeric(tokens_col) if tokens_col else numeric(flops_col) / (6.0 * N)
    L = numeric(loss_col)
    df = raw.copy()
    df["N"], df["D"], df["L"], df["group"] = N.values, D.values, L.values, group.values
    return RunTable(df=df, source=source, params_col=params_col, tokens_col=tokens_col, flops_col=flops_col,
                    loss_col=loss_col, group_col=group_col, notes=notes)


def _refuse_duplicate_runs(raw: pd.DataFrame, source: str) -> None:
    """A run id listed twice (a concatenated or twice-collected table) would be fitted as two runs, narrowing every
    interval: refuse it, naming the id and its rows."""
    if "run_id" not in raw.columns:
        return
    dup = raw["run_id"].duplicated(keep=False) & raw["run_id"].notna()
    if dup.any():
        ids = raw.loc[dup, "run_id"].astype(str)
        first = ids.iloc[0]
        rows = [int(k) + 2 for k in raw.index[dup & (raw["run_id"].astype(str) == first)]]  # +2: header, 1-based
        raise FittingInputError(f"{source}: run_id {first!r} appears {len(rows)} times (rows {rows}); "
                                f"{ids.nunique()} run id(s) are repeated in all. Each run must appear once (keep one "
                                f"row per run, e.g. re-collect the sweep)")


def table_sha256(table: "RunTable") -> str:
    """A digest of what a fit used: each run's (run_id, group, N, D, L), sorted, numbers as exact reprs. Stored in
    fits.json's meta and recomputed by the report, so a fits file is never drawn over another table's points."""
    df = table.df
    ids = df["run_id"].astype(str) if "run_id" in df.columns else pd.Series("", index=df.index)
    rows = sorted(zip(ids, df["group"].astype(str), map(repr, df["N"].astype(float)),
                      map(repr, df["D"].astype(float)), map(repr, df["L"].astype(float))))
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def insufficiency(sub: pd.DataFrame, n_params: int = N_PARAMS) -> str | None:
    """Why a group cannot carry an L(N, D) fit, or None: fewer runs than parameters, or one N / one D only."""
    if len(sub) < n_params:
        return f"{len(sub)} run(s), fewer than the {n_params} parameters (E, A, B, alpha, beta)"
    if sub["N"].nunique() < 2:
        return f"one model size only (N = {sub['N'].iloc[0]:.4g}): alpha is not identifiable"
    if sub["D"].nunique() < 2:
        return f"one token budget only (D = {sub['D'].iloc[0]:.4g}): beta is not identifiable"
    return None
