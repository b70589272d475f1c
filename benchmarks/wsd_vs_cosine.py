"""WSD ladders against separate cosine runs on a CPU-sized ladder: how far the WSD losses sit from the cosine ones,
whether the fitted exponents agree, and what the shared trunks save.

    .venv/bin/python benchmarks/wsd_vs_cosine.py                        # both sweeps, then the markdown table
    .venv/bin/python benchmarks/wsd_vs_cosine.py --out /tmp/wsd --parallel 2 --result benchmarks/results/x.md

The grid is the demo's (sweeps/demo.yaml: 2-layer models of width 32 / 64 / 96, byte tokens of Python's standard
library, a 1:2:4 budget ladder of 0.4M / 0.8M / 1.6M tokens, lr 3e-3, warm-up 5%) for the dot-product architecture
only, trained twice through the launcher's local executor: `schedule: cosine` (cosine to 0.1x over each budget)
and `schedule: wsd` (the peak held, then 1-sqrt to 0.1x over each budget's last 20%, budgets branching off one
trunk per size; Hagele et al. 2024, arXiv 2405.18392). Fits: `python -m fitting chinchilla` (Approach 3, the
243-start grid, 200 bootstrap resamples) and `fixed-budget` on each results table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from fitting.cli import main as fitting_main  # noqa: E402
from sweeps import expand, parse_sweep  # noqa: E402
from sweeps.collect import write_results  # noqa: E402
from sweeps.executors import run_local  # noqa: E402
from sweeps.grid import trained_flops  # noqa: E402
from sweeps.state import run_states  # noqa: E402

GRID = {
    "architectures": {"dot": {"type": "dot"}},
    "sizes": {"xs": {"n_layers": 2, "d_model": 32, "n_heads": 2}, "s": {"n_layers": 2, "d_model": 64, "n_heads": 4},
              "m": {"n_layers": 2, "d_model": 96, "n_heads": 6}},
    "budgets": {"tokens": [4e5, 8e5, 1.6e6]},
    "data": {"source": "python-stdlib", "tokenizer": "byte", "vocab_size": 256, "max_bytes": 8000000},
    "training": {"seq_len": 128, "batch_tokens": 4096, "micro_batch_size": 32, "lr": 3e-3, "warmup_fraction": 0.05,
                 "eval_every": 0, "eval_tokens": 32768, "log_every": 5, "checkpoint_every": 50},
}


def train(schedule: str, out: Path, parallel: int) -> tuple[Path, float, float, float]:
    """Train one schedule's sweep; returns (results.csv, wall seconds, FLOPs trained, FLOPs of separate runs)."""
    raw = json.loads(json.dumps(GRID))
    raw.update(name=f"ladder-{schedule}", output=str(out))
    raw["training"]["schedule"] = schedule
    spec = parse_sweep(raw, f"<wsd_vs_cosine {schedule}>")
    runs = expand(spec)
    timing = spec.sweep_dir / "bench_wall_s.json"  # a re-invocation with every run done only collects and fits
    todo = [r for r, st in zip(runs, run_states(runs, spec.sweep_dir)) if not st.finished]
    if todo or not timing.exists():
        t0 = time.time()
        statuses = run_local(todo, spec.sweep_dir, parallel, log=lambda m: None)
        bad = {k: v for k, v in statuses.items() if v != "done"}
        if bad:
            raise SystemExit(f"{schedule}: runs not done: {bad}")
        timing.write_text(json.dumps({"wall_s": time.time() - t0, "complete": len(todo) == len(runs)}))
    wall = json.loads(timing.read_text())["wall_s"]
    csv = spec.sweep_dir / "results.csv"
    write_results(runs, spec.sweep_dir, csv)
    return csv, wall, trained_flops(runs), sum(r.flops for r in runs)


def fit(csv: Path) -> tuple[dict, dict]:
    folder = csv.parent
    for argv in (["chinchilla", str(csv), "--bootstrap", "200", "--starts", "small", "--method", "approach3",
                  "--json", str(folder / "fits.json")],
                 ["fixed-budget", str(csv), "--json", str(folder / "fixed_budget.json")]):
        if fitting_main(argv) != 0:
            raise SystemExit(f"fit failed: {argv}")
    return (json.loads((folder / "fits.json").read_text())["fits"]["dot"],
            json.loads((folder / "fixed_budget.json").read_text()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "outputs" / "bench-wsd"))
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--result", default=None, help="write the markdown here (default: print it)")
    args = p.parse_args()
    import pandas as pd

    out = Path(args.out)
    done = {s: train(s, out, args.parallel) for s in ("cosine", "wsd")}
    tables = {s: pd.read_csv(done[s][0]) for s in done}
    fits = {s: fit(done[s][0]) for s in done}
    key = ["size", "budget_tokens"]
    both = tables["cosine"].set_index(key)[["params", "val_loss"]].join(
        tables["wsd"].set_index(key)[["val_loss"]].add_suffix("_wsd")).reset_index()
    both["diff"] = both["val_loss_wsd"] - both["val_loss"]
    both["rel"] = both["diff"] / both["val_loss"]
    lines = [
        "# WSD ladders vs separate cosine runs (CPU ladder)",
        "",
        f"`benchmarks/wsd_vs_cosine.py` on {platform.node() or 'this machine'} ({os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}), Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}. Grid: sweeps/demo.yaml's dot-product architecture, sizes xs / s / m "
        "(2 layers, width 32 / 64 / 96), budgets 0.4M / 0.8M / 1.6M tokens (1:2:4), lr 3e-3, 5% warm-up, "
        "cosine to 0.1x vs WSD (peak held, 1-sqrt to 0.1x over each budget's last 20%, one trunk per size), "
        f"{args.parallel} runs at a time through the local executor. One seed; both schedules start from the same "
        "initialisation and see the same batches (common random numbers), so a difference is the schedule's.",
        "",
        "## Final validation loss per run (nats/token)",
        "",
        "| size | N | tokens | cosine | WSD | WSD - cosine | relative |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for _, r in both.sort_values(["params", "budget_tokens"]).iterrows():
        lines.append(f"| {r['size']} | {int(r['params']):,} | {r['budget_tokens']:.2g} | {r['val_loss']:.4f} | "
                     f"{r['val_loss_wsd']:.4f} | {r['diff']:+.4f} | {r['rel']:+.2%} |")
    rel = both["rel"].to_numpy()
    lines += ["", f"Mean relative difference {np.mean(rel):+.2%}, mean absolute {np.mean(np.abs(rel)):.2%}, largest "
              f"{rel[np.argmax(np.abs(rel))]:+.2%}.", "", "## Fitted exponents", "",
              "| schedule | alpha (95% CI) | beta (95% CI) | E | converged |", "|---|---|---|---:|---|"]
    for s in ("cosine", "wsd"):
        g = fits[s][0]
        ci = g.get("ci", {})
        fmt = lambda k: f"{g[k]:.3f} [{ci[k][0]:.3f}, {ci[k][1]:.3f}]" if k in ci else f"{g[k]:.3f}"  # noqa: E731
        lines.append(f"| {s} | {fmt('alpha')} | {fmt('beta')} | {g['E']:.3f} | {g['converged']} |")
    lines += ["", "Fixed-budget log-linear slopes of L(N) at each budget (fitting fixed-budget):", "",
              "| tokens | cosine slope | WSD slope |", "|---:|---:|---:|"]
    for a, b in zip(fits["cosine"][1]["fixed_tokens"]["dot"], fits["wsd"][1]["fixed_tokens"]["dot"]):
        lines.append(f"| {a['tokens']:.2g} | {a['loglinear']['alpha']:.4f} | {b['loglinear']['alpha']:.4f} |")
    lines += ["", "Fixed-size log-linear slopes of L(D) at each size:", "", "| N | cosine slope | WSD slope |",
              "|---:|---:|---:|"]
    for a, b in zip(fits["cosine"][1]["fixed_params"]["dot"], fits["wsd"][1]["fixed_params"]["dot"]):
        lines.append(f"| {a['params']:,.0f} | {a['loglinear']['alpha']:.4f} | {b['loglinear']['alpha']:.4f} |")
    (_, wall_c, flops_c, _), (_, wall_w, flops_w, sep_w) = done["cosine"], done["wsd"]
    lines += ["", "## Cost", "", "| schedule | training FLOPs spent | wall time (s) |", "|---|---:|---:|",
              f"| cosine | {flops_c:.3e} | {wall_c:.0f} |", f"| wsd | {flops_w:.3e} | {wall_w:.0f} |", "",
              f"WSD spends {sep_w / flops_w:.2f}x less compute than separate runs of the same budgets; the wall-time "
              f"ratio is {wall_c / wall_w:.2f}x (data-cache building, evaluation and process start-up are not shared)."]
    text = "\n".join(lines) + "\n"
    if args.result:
        Path(args.result).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
