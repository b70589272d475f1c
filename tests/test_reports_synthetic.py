"""Synthetic sweep files for the report tests: a results table, training curves, fits.json and fixed_budget.json.

Losses follow L(N, D) = E + A / N^alpha + B / D^beta with known parameters per architecture and a little noise;
the fits files follow the schemas of docs/DESIGN.md, with bootstrap samples drawn around the known values, so the
report's headline numbers are known in advance. `make_sweep` is imported by tests/test_reports.py; the tests here
only check that the generator itself is sane.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

# Known parameters per architecture (Chinchilla-like magnitudes, docs/REFERENCE.md section 4).
TRUE = {
    "dot": {"E": 1.90, "A": 400.0, "B": 410.0, "alpha": 0.34, "beta": 0.28},
    "simplicial": {"E": 1.90, "A": 430.0, "B": 410.0, "alpha": 0.37, "beta": 0.28},
}
SIZES = {"xs": 2.0e6, "s": 5.0e6, "m": 1.2e7, "l": 3.0e7}  # non-embedding params of the dot model
SHAPES = {"xs": (4, 256, 4), "s": (6, 320, 5), "m": (8, 448, 7), "l": (10, 640, 10)}
TOKEN_BUDGETS = (5.0e7, 1.0e8, 2.0e8, 4.0e8)
N_BOOT = 200
N0, D0 = 1.0e7, 1.5e8  # where bootstrap samples keep A / N^alpha and B / D^beta fixed (the well-determined part)


def law(p: dict, n, d):
    return p["E"] + p["A"] / np.power(n, p["alpha"]) + p["B"] / np.power(d, p["beta"])


def _ci(x, level=0.95):
    q = (1 - level) / 2
    return [float(np.quantile(x, q)), float(np.quantile(x, 1 - q))]


def _results(rng, archs, failed, drop_done):
    rows = []
    for arch in archs:
        for size, n_dot in SIZES.items():
            n = n_dot * (1.06 if arch == "simplicial" else 1.0)  # the extra K', V' projections
            layers, d_model, heads = SHAPES[size]
            for tokens in TOKEN_BUDGETS:
                run_id = f"{arch}-{size}-{tokens:.0e}".replace("+", "")
                loss = float(law(TRUE[arch], n, tokens) * np.exp(rng.normal(0, 0.004)))
                fpt = 6 * n + 6 * layers * d_model * 256
                rows.append({
                    "run_id": run_id, "sweep": "synthetic", "arch": arch, "size": size, "status": "done",
                    "params": int(n), "params_with_embeddings": int(n + 512 * d_model), "tokens": int(tokens),
                    "flops": float(tokens * fpt), "loss": loss, "train_loss": loss * 0.99, "val_loss": loss,
                    "n_layers": layers, "d_model": d_model, "n_heads": heads,
                    "simplicial_every": 4 if arch == "simplicial" else 0, "w1": 64, "w2": 16, "seq_len": 256,
                    "wall_time_s": tokens / 2.0e5, "tokens_per_s": 2.0e5 * (0.8 if arch == "simplicial" else 1.0),
                    "device": "cpu (synthetic)", "error": "", "finished_at": "2025-03-01T12:00:00Z",
                    "dataset": "stdlib-py", "tokenizer": "bpe-512", "vocab_size": 512, "torch_version": "2.13.0",
                    "triton_version": "3.6.0", "git_commit": "abc1234",
                })
    df = pd.DataFrame(rows)
    for run_id in failed:
        i = df.index[df.run_id == run_id][0]
        df.loc[i, ["status", "error"]] = ["failed", "Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory"]
        df.loc[i, ["loss", "train_loss", "val_loss", "wall_time_s", "tokens_per_s"]] = np.nan
        df.loc[i, "finished_at"] = ""
    for run_id in drop_done:
        i = df.index[df.run_id == run_id][0]
        df.loc[i, ["status", "error"]] = ["pending", ""]
        df.loc[i, ["loss", "train_loss", "val_loss", "wall_time_s", "tokens_per_s"]] = np.nan
        df.loc[i, "finished_at"] = ""
    return df


def _curves(rng, results):
    rows = []
    for r in results.itertuples():
        if r.status != "done":
            continue
        steps = np.arange(1, 21)
        tok = r.tokens * steps / 20
        # Loss falls like the law's D term along the run, and lands on the final loss.
        base = r.loss - TRUE[r.arch]["B"] / r.tokens ** TRUE[r.arch]["beta"]
        curve = base + TRUE[r.arch]["B"] / np.power(tok, TRUE[r.arch]["beta"]) + rng.normal(0, 0.01, len(steps))
        for s, t, l in zip(steps, tok, curve):
            rows.append({"run_id": r.run_id, "arch": r.arch, "size": r.size, "params": r.params, "step": int(s),
                         "tokens": int(t), "train_loss": float(l), "val_loss": float(l) if s % 5 == 0 else np.nan})
    return pd.DataFrame(rows)


def _group_fit(rng, arch, n_runs, converged=True):
    t = TRUE[arch]
    alpha = t["alpha"] + rng.normal(0, 0.015, N_BOOT)
    beta = t["beta"] + rng.normal(0, 0.012, N_BOOT)
    E = t["E"] + rng.normal(0, 0.03, N_BOOT)
    A = t["A"] * np.power(N0, alpha - t["alpha"]) * np.exp(rng.normal(0, 0.02, N_BOOT))
    B = t["B"] * np.power(D0, beta - t["beta"]) * np.exp(rng.normal(0, 0.02, N_BOOT))
    samples = np.stack([E, A, B, alpha, beta], axis=1)
    a = beta / (alpha + beta)
    ci = {k: _ci(samples[:, i]) for i, k in enumerate(("E", "A", "B", "alpha", "beta"))}
    ci["a"] = _ci(a)
    point = dict(t, a=t["beta"] / (t["alpha"] + t["beta"]))
    fit = {**point, "converged": converged, "objective": 1.2e-4, "grad_norm": 1e-9 if converged else 3e-2,
           "message": "CONVERGENCE" if converged else "ABNORMAL: iteration limit", "n_runs": n_runs,
           "method": "approach3", "ci": ci}
    varpro = dict(fit, method="varpro", alpha=t["alpha"] + 0.004, objective=1.1e-4,
                  a=t["beta"] / (t["alpha"] + 0.004 + t["beta"]))
    out = dict(fit)
    out["methods"] = {"approach3": dict(fit), "varpro": varpro}
    out["bootstrap"] = {"n": N_BOOT, "n_converged": N_BOOT - 2, "samples": samples.round(8).tolist()}
    out["status"] = "ok"
    out["reason"] = ""
    return out, samples


def _fixed_budget(results):
    done = results[results.status == "done"]
    out = {"fixed_tokens": {}, "fixed_params": {}}
    for arch, g in done.groupby("arch"):
        rows = []
        for tokens, h in g.groupby("tokens"):
            if len(h) < 3:
                continue
            x, y = np.log(h.params.to_numpy(float)), np.log(h.loss.to_numpy(float))
            slope, icpt = np.polyfit(x, y, 1)
            r2 = 1 - np.sum((y - (slope * x + icpt)) ** 2) / np.sum((y - y.mean()) ** 2)
            rows.append({"tokens": float(tokens), "n_points": len(h), "E": TRUE[arch]["E"], "A": TRUE[arch]["A"],
                         "alpha": TRUE[arch]["alpha"], "converged": len(h) >= 3,
                         "loglinear": {"alpha": float(-slope), "beta": float(icpt), "r2": float(r2)}})
        out["fixed_tokens"][arch] = rows
        rows = []
        for params, h in g.groupby("params"):
            if len(h) < 3:
                continue
            x, y = np.log(h.tokens.to_numpy(float)), np.log(h.loss.to_numpy(float))
            slope, icpt = np.polyfit(x, y, 1)
            r2 = 1 - np.sum((y - (slope * x + icpt)) ** 2) / np.sum((y - y.mean()) ** 2)
            rows.append({"params": float(params), "n_points": len(h), "E": TRUE[arch]["E"], "B": TRUE[arch]["B"],
                         "beta": TRUE[arch]["beta"], "converged": True,
                         "loglinear": {"alpha": float(-slope), "beta": float(icpt), "r2": float(r2)}})
        out["fixed_params"][arch] = rows
    return out


def make_sweep(folder: Path, *, partial: bool = False, fits: bool = True, seed: int = 0,
               not_converged: tuple[str, ...] = ()) -> dict:
    """Write results.csv, results_curves.csv, fits.json, fixed_budget.json into `folder`.

    partial: the simplicial architecture has only two done runs (the rest pending), and its fits group is marked
    "not enough runs", as the fitting CLI does. Returns the paths and the fits dict.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    archs = ("dot", "simplicial")
    failed = ("dot-l-4e08", "simplicial-xs-5e07")
    drop = ()
    if partial:
        keep = {"simplicial-xs-1e08", "simplicial-s-1e08"}
        drop = tuple(f"simplicial-{s}-{t:.0e}".replace("+", "") for s in SIZES for t in TOKEN_BUDGETS)
        drop = tuple(r for r in drop if r not in keep and r not in failed)
    results = _results(rng, archs, failed, drop)
    curves = _curves(rng, results)
    paths = {"results": folder / "results.csv", "curves": folder / "results_curves.csv",
             "fits": folder / "fits.json", "fixed_budget": folder / "fixed_budget.json"}
    results.to_csv(paths["results"], index=False)
    curves.to_csv(paths["curves"], index=False)
    done = results[results.status == "done"]
    fits_obj = {"meta": {"csv": str(paths["results"]), "params_col": "params", "tokens_col": "tokens",
                         "loss_col": "loss", "group_col": "arch", "method": "both", "bootstrap": N_BOOT, "seed": 0,
                         "level": 0.95, "n_runs": int(len(done))},
                "fits": {}, "comparison": {}}
    samples = {}
    for arch in archs:
        n = int((done.arch == arch).sum())
        if n < 5:
            fits_obj["fits"][arch] = {"status": "not enough runs", "n_runs": n,
                                      "reason": f"{n} done runs; a 5-parameter fit needs at least 5"}
            continue
        fits_obj["fits"][arch], samples[arch] = _group_fit(rng, arch, n, converged=arch not in not_converged)
    if len(samples) == 2:
        comp = {}
        for i, k in enumerate(("alpha", "beta")):
            d = samples["simplicial"][:, 3 + i] - samples["dot"][:, 3 + i]
            r = samples["simplicial"][:, 3 + i] / samples["dot"][:, 3 + i]
            comp[k] = {"diff": TRUE["simplicial"][k] - TRUE["dot"][k], "ci": _ci(d),
                       "ratio": TRUE["simplicial"][k] / TRUE["dot"][k], "ratio_ci": _ci(r), **_verdict_fields(_ci(d))}
        a = {g: s[:, 4] / (s[:, 3] + s[:, 4]) for g, s in samples.items()}
        pa = {g: TRUE[g]["beta"] / (TRUE[g]["alpha"] + TRUE[g]["beta"]) for g in samples}
        comp["a"] = {"diff": pa["simplicial"] - pa["dot"], "ci": _ci(a["simplicial"] - a["dot"]),
                     "ratio": pa["simplicial"] / pa["dot"], "ratio_ci": _ci(a["simplicial"] / a["dot"]),
                     **_verdict_fields(_ci(a["simplicial"] - a["dot"]))}
        fits_obj["comparison"]["simplicial - dot"] = comp
    if fits:
        paths["fits"].write_text(json.dumps(fits_obj, indent=1))
        paths["fixed_budget"].write_text(json.dumps(_fixed_budget(results), indent=1))
    return {"paths": paths, "fits": fits_obj, "results": results}


def _verdict_fields(ci) -> dict:
    """verdict and method as fitting.pipeline writes them (docs/DESIGN.md, fits.json)."""
    verdict = "larger" if ci[0] > 0 else "smaller" if ci[1] < 0 else "not resolved"
    return {"verdict": verdict, "method": "parametric bootstrap on the fixed design (synthetic)",
            "identifiability": []}


def test_synthetic_sweep_follows_the_schema(tmp_path):
    s = make_sweep(tmp_path)
    res = pd.read_csv(s["paths"]["results"])
    assert {"run_id", "arch", "status", "params", "tokens", "loss", "error"} <= set(res.columns)
    assert (res.status == "failed").sum() == 2 and (res.status == "done").sum() == 30
    f = json.loads(s["paths"]["fits"].read_text())
    assert np.asarray(f["fits"]["dot"]["bootstrap"]["samples"]).shape == (N_BOOT, 5)
    assert f["comparison"]["simplicial - dot"]["alpha"]["verdict"] in ("larger", "smaller", "not resolved")


def test_partial_sweep_marks_the_small_group(tmp_path):
    s = make_sweep(tmp_path, partial=True)
    assert s["fits"]["fits"]["simplicial"]["status"] == "not enough runs"
    assert not s["fits"]["comparison"]
