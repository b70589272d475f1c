"""The results table: one row per run of a sweep (columns in docs/DESIGN.md), plus the loss curves beside it.

Reads run folders and the journal only; runs without a result appear with their status and empty losses, so a
partial sweep is visible as such. Fitting and reports read these CSV files, never the run folders.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sweeps.grid import RunSpec
from sweeps.state import RunState, lr_tunings, run_states

COLUMNS = [
    "run_id", "sweep", "arch", "size", "seed", "status", "params", "params_with_embeddings", "tokens", "flops",
    "loss", "train_loss", "val_loss", "n_layers", "d_model", "n_heads", "simplicial_every", "w1", "w2", "seq_len",
    "batch_tokens", "steps", "wall_time_s", "tokens_per_s", "device", "error", "finished_at", "dataset", "tokenizer",
    "vocab_size", "torch_version", "triton_version", "git_commit", "code_dirty", "budget_tokens", "budget_flops",
    "lr", "lr_mult", "best_lr", "lr_at_edge",
]
# A grid cell: the runs that differ only by learning rate (the LR axis); best_lr marks the one the fits use.
CELL = ["arch", "size", "budget_tokens", "budget_flops", "seed"]
CURVE_COLUMNS = ["run_id", "arch", "size", "params", "step", "tokens", "train_loss", "val_loss"]


def _row(run: RunSpec, state: RunState) -> dict:
    cfg = run.model_config
    r = state.result or {}
    v = r.get("versions") or {}
    code = {k: (x[:12] if k == "commit" and x else x) for k, x in (r.get("code") or {}).items()}
    counts = run.params
    error = state.error
    if state.log_tail and state.status in ("failed", "timeout"):
        error = f"{error or ''}\n{state.log_tail}".strip()
    return {
        "run_id": run.run_id, "sweep": run.sweep, "arch": run.arch, "size": run.size, "seed": run.seed,
        "status": state.status, "params": counts["params_non_embedding"],
        "params_with_embeddings": counts["params_with_embeddings"], "tokens": r.get("tokens", run.tokens),
        "flops": r.get("flops", run.flops), "loss": r.get("val_loss") if state.status == "done" else None,
        "train_loss": r.get("train_loss"), "val_loss": r.get("val_loss"), "n_layers": cfg.n_layers,
        "d_model": cfg.d_model, "n_heads": cfg.n_heads,
        "simplicial_every": cfg.simplicial_every if cfg.arch == "simplicial" else None,
        "w1": cfg.w1 if cfg.arch == "simplicial" else None, "w2": cfg.w2 if cfg.arch == "simplicial" else None,
        "seq_len": cfg.seq_len, "batch_tokens": run.training["batch_tokens"], "steps": r.get("steps", run.steps),
        "wall_time_s": r.get("wall_time_s", state.elapsed_s), "tokens_per_s": r.get("tokens_per_s"),
        "device": r.get("device"), "error": error, "finished_at": r.get("finished_at"), "dataset": r.get("data"),
        "tokenizer": r.get("tokenizer", run.data["tokenizer"]), "vocab_size": cfg.vocab_size,
        "torch_version": v.get("torch"), "triton_version": v.get("triton"), "git_commit": code.get("commit", v.get("git_commit")),
        "code_dirty": code.get("dirty"),
        "budget_tokens": run.budget.get("tokens"), "budget_flops": run.budget.get("flops"),
        "lr": run.training["lr"], "lr_mult": run.lr_mult,
        **{f"loss_{name}": (r.get("eval_losses") or {}).get(name) for name in run.evals},
    }


def results_table(runs: list[RunSpec], sweep_dir: Path, states: list[RunState] | None = None) -> pd.DataFrame:
    states = states if states is not None else run_states(runs, sweep_dir)
    evals = sorted({f"loss_{name}" for run in runs for name in run.evals})  # one column per evaluation set
    tuned = {key: (t.best, t.tuning_seeds) for key, t in lr_tunings(runs, states).items()
             if not t.left and t.best is not None}
    return mark_best_lr(pd.DataFrame([_row(run, st) for run, st in zip(runs, states)], columns=COLUMNS + evals),
                        tuned)


def mark_best_lr(table: pd.DataFrame, tuned: dict[tuple[str, str], tuple[float, tuple]] | None = None) -> pd.DataFrame:
    """Fill `best_lr`, the rows the fits use by default (a cell with one learning rate is its own best), and
    `lr_at_edge` (on a best row of an lr axis: its lr is the smallest or largest swept, so the optimum may lie
    outside the range).

    A cell's best is its done run of lowest validation loss. `tuned` maps an (arch, size) whose lr axis is tuned on
    some seeds (`training.lr_tuning_seeds`, sweeps/state.py `lr_tunings`) to (winning multiplier, tuning seeds):
    in a cell of another seed (a replicate) the best is the winner's run, whatever else ran there (a run of that
    seed at another lr, trained before the tuning, is never fitted), and the axis it sits at the edge of is the
    tuning's. The tuning seeds' cells keep their own best: measured on the study's grid with its lr axis
    (benchmarks/results/calibration-2026-12-07.md, "study" rows), that is better calibrated than the winner in
    every cell, whose one choice per (arch, size) is an error shared by all its rows that the intervals do not
    model."""
    tuned = tuned or {}
    table = table.copy()
    table["best_lr"] = False
    table["lr_at_edge"] = False
    for (arch, size), axis in table.groupby(["arch", "size"], dropna=False, sort=False):
        winner, tuning = tuned.get((arch, size), (None, ()))
        for _, cell in axis.groupby([c for c in CELL if c not in ("arch", "size")], dropna=False, sort=False):
            done = cell[(cell["status"] == "done") & cell["val_loss"].notna()]
            replicate = winner is not None and int(cell["seed"].iloc[0]) not in tuning
            if replicate:
                done = done[done["lr_mult"].astype(float) == winner]
            if done.empty:
                continue
            best = done["val_loss"].astype(float).idxmin()
            table.loc[best, "best_lr"] = True
            if replicate:
                swept, chosen = axis["lr_mult"].astype(float), winner
            else:
                swept, chosen = cell["lr"].astype(float), table.loc[best, "lr"]
            table.loc[best, "lr_at_edge"] = bool(swept.nunique() > 1 and chosen in (swept.min(), swept.max()))
    return table


def curves_table(runs: list[RunSpec]) -> pd.DataFrame:
    rows = []
    for run in runs:
        path = run.run_dir / "metrics.jsonl"
        if not path.exists():
            continue
        n = run.params["params_non_embedding"]
        for line in path.read_text().splitlines():
            try:
                m = json.loads(line)
            except ValueError:
                continue
            rows.append({"run_id": run.run_id, "arch": run.arch, "size": run.size, "params": n, "step": m.get("step"),
                         "tokens": m.get("tokens"), "train_loss": m.get("train_loss"), "val_loss": m.get("val_loss")})
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def curves_path(results_csv: Path) -> Path:
    results_csv = Path(results_csv)
    return results_csv.with_name(f"{results_csv.stem}_curves{results_csv.suffix or '.csv'}")


def write_results(runs: list[RunSpec], sweep_dir: Path, out: Path) -> tuple[pd.DataFrame, Path]:
    """Write results.csv and results_curves.csv (each atomically); returns the table and the curves path."""
    from simplicial.checkpoint import atomic_path

    table = results_table(runs, sweep_dir)
    curves = curves_table(runs)
    out = Path(out)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    cpath = curves_path(out)
    with atomic_path(cpath) as tmp:
        curves.to_csv(tmp, index=False)
    return table, cpath
