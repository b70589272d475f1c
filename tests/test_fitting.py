"""Tests for fitting/: recovery of known laws, the mean-vs-sum trap, real Chinchilla data, CLI contract."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fitting import bootstrap as bs
from fitting import chinchilla, fit_approach3, fit_groups, fit_varpro
from fitting.cli import main
from fitting.compare import compare_samples, paired_comparison
from fitting.fixed_budget import fit_power_law

DATA = Path(__file__).resolve().parent / "data" / "chinchilla_fig4_epoch_reconstruction.csv"  # tests/data/README.md
# Hoffmann et al. 2022 published values (docs/REFERENCE.md section 4), used as the synthetic truth.
TRUE = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def synth(n_sizes, n_tokens, sigma, seed, params=TRUE, arch=None):
    rng = np.random.default_rng(seed)
    N, D = np.meshgrid(np.logspace(7, 9.5, n_sizes), np.logspace(9, 11.5, n_tokens), indexing="ij")
    N, D = N.ravel(), D.ravel()
    L = chinchilla.predict_loss(params, N, D) * np.exp(sigma * rng.standard_normal(N.size))
    df = pd.DataFrame({"params": N, "tokens": D, "loss": L})
    if arch is not None:
        df["arch"] = arch
    return df


def chinchilla_data():
    df = pd.read_csv(DATA).sort_values("loss").iloc[:-5]  # the replication drops the 5 highest-loss points
    N = df["Model Size"].to_numpy(float)
    return N, df["Training FLOP"].to_numpy(float) / (6 * N), df["loss"].to_numpy(float)


def test_published_grid_and_analytic_gradient():
    g = chinchilla.published_grid()
    assert g.shape == (4500, 5)
    assert sorted(set(g[:, 3])) == [0.0, 0.5, 1.0, 1.5, 2.0] and sorted(set(g[:, 0])) == [0, 5, 10, 15, 20, 25]
    df = synth(4, 4, 0.02, 0)
    prob = chinchilla.Problem(df.params, df.tokens, df.loss, weights=np.arange(1, 17))
    x = np.array([6.0, 6.5, 0.4, 0.3, 0.25])
    f, grad = prob.fun_grad(x)
    num = [(prob.fun_grad(x + h)[0] - prob.fun_grad(x - h)[0]) / 2e-7 for h in 1e-7 * np.eye(5)]
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-9)


def test_noiseless_recovery_both_methods():
    df = synth(6, 6, 0.0, 0)
    for res in (fit_approach3(df.params, df.tokens, df.loss, starts="small"), fit_varpro(df.params, df.tokens, df.loss)):
        assert res.success, res.message
        for k, v in TRUE.items():
            assert res.params[k] == pytest.approx(v, rel=2e-3), (res.method, k)


def test_error_shrinks_with_number_of_runs():
    errs = {}
    for n in (4, 12):  # 16 vs 144 runs, noise 2% in L
        e = []
        for seed in range(4):
            df = synth(n, n, 0.02, 100 + seed)
            res = fit_approach3(df.params, df.tokens, df.loss, starts="small")
            assert res.success, res.message
            e.append(abs(res.params["alpha"] - TRUE["alpha"]) + abs(res.params["beta"] - TRUE["beta"]))
        errs[n] = float(np.mean(e))
    assert errs[12] < 0.05, errs
    assert errs[12] < errs[4], errs


def test_mean_objective_stops_early_sum_does_not():
    """Negative control (docs/REFERENCE.md section 4): same starts, same L-BFGS-B tolerances (ftol = gtol = 1e-12)."""
    N, D, L = chinchilla_data()
    s, m = chinchilla.Problem(N, D, L), chinchilla.Problem(N, D, L, reduction="mean")
    best = fit_approach3(N, D, L, starts="small").fun
    starts = [[5, 5, 0, 0.5, 0.5], [0, 0, 0, 0, 0], [10, 10, 0.5, 1, 1], [5, 10, 0.5, 0.5, 0.5]]
    gap_sum, gap_mean = [], []
    for x0 in np.array(starts, float):
        rs = chinchilla.polish(s, x0, ftol=1e-12, gtol=1e-12)
        rm = chinchilla.polish(m, x0, ftol=1e-12, gtol=1e-12)
        gap_sum.append(rs.fun - best)
        gap_mean.append(s.fun_grad(rm.x)[0] - best)  # the mean fit's end point, scored by the sum
    assert max(gap_sum) < 1e-9 * len(L), gap_sum
    assert max(gap_mean) > 0.05 * best, gap_mean  # stopped early from at least one published start


def test_chinchilla_data_converges_and_methods_agree():
    N, D, L = chinchilla_data()
    a3 = fit_approach3(N, D, L)  # the published 4,500 starts
    vp = fit_varpro(N, D, L)
    assert a3.success and vp.success, (a3.message, vp.message)
    assert a3.n_starts == 4500 and a3.n_points == 240
    assert a3.grad_norm < 1e-5
    # Epoch AI's replication of Approach 3 on these points: E 1.82, alpha 0.348, beta 0.366 (loose check).
    assert a3.params["E"] == pytest.approx(1.82, abs=0.03)
    assert a3.params["alpha"] == pytest.approx(0.348, abs=0.01)
    assert a3.params["beta"] == pytest.approx(0.366, abs=0.01)
    b3 = bs.bootstrap(N, D, L, a3, n_boot=60, seed=1, starts="small", jobs=2)
    bv = bs.bootstrap(N, D, L, vp, n_boot=60, seed=1, method="varpro", jobs=2)
    assert b3.n_converged >= 57 and bv.n_converged >= 57
    for k in ("E", "alpha", "beta", "a"):
        ci3 = bs.percentile_ci(bs.derived_samples(b3.samples)[k])
        civ = bs.percentile_ci(bs.derived_samples(bv.samples)[k])
        assert ci3[0] <= vp.params[k] <= ci3[1], (k, vp.params[k], ci3)
        assert civ[0] <= a3.params[k] <= civ[1], (k, a3.params[k], civ)


def test_unconverged_fit_warns_and_says_so():
    N, D, L = chinchilla_data()
    with pytest.warns(chinchilla.ConvergenceWarning, match="did not converge"):
        res = fit_approach3(N, D, L, starts="small", lm=False, maxiter=3)
    assert not res.success and res.status == 1 and "iteration limit" in res.message


def test_fit_groups_accepts_raw_results_table():
    df = pd.concat([synth(3, 3, 0.01, 1, arch="dot"), synth(3, 3, 0.01, 2, arch="simplicial")])
    df["status"] = "done"
    doc = fit_groups(df, method="approach3", n_boot=0, starts="small")
    assert set(doc["fits"]) == {"dot", "simplicial"} and doc["fits"]["dot"]["converged"]
    assert set(doc["fits"]["dot"]["methods"]) == {"approach3"}


def test_bound_e_respected():
    N, D, L = chinchilla_data()
    res = fit_approach3(N, D, L[:], starts="small", bound_e=True)
    assert res.success and res.params["E"] <= L.min() + 1e-12


def test_comparison_tells_different_alpha_apart_and_same_alpha_not():
    # alpha 0.34 vs 0.45, with A rescaled so that the N term is the same size at N = 1e8 (else alpha is not
    # identifiable over this N range at this noise).
    base = synth(6, 6, 0.005, 7)
    other = synth(6, 6, 0.005, 8, params=dict(TRUE, alpha=0.45, A=TRUE["A"] * 1e8**0.11))
    same = synth(6, 6, 0.005, 9)
    out = {}
    for name, df_b in (("diff", other), ("same", same)):
        fa = fit_approach3(base.params, base.tokens, base.loss, starts="small")
        fb = fit_approach3(df_b.params, df_b.tokens, df_b.loss, starts="small")
        ba = bs.bootstrap(base.params, base.tokens, base.loss, fa, n_boot=100, seed=1, starts="small", jobs=2)
        bb = bs.bootstrap(df_b.params, df_b.tokens, df_b.loss, fb, n_boot=100, seed=2, starts="small", jobs=2)
        out[name] = compare_samples(fa.params, fb.params, ba.samples, bb.samples)["alpha"]
    assert out["diff"]["ci"][0] > 0 and out["diff"]["n"] == 100, out["diff"]
    assert out["same"]["ci"][0] < 0 < out["same"]["ci"][1], out["same"]


def test_paired_comparison_matches_runs():
    a = synth(5, 5, 0.005, 3).rename(columns={"params": "N", "tokens": "D", "loss": "L"})
    b = synth(5, 5, 0.005, 4, params=dict(TRUE, alpha=0.45, A=TRUE["A"] * 1e8**0.11)).rename(columns={"params": "N", "tokens": "D", "loss": "L"})
    out = paired_comparison(a, b, n_boot=40, seed=0, starts="small", jobs=1)
    assert out["status"] == "ok" and out["n_pairs"] == 25
    assert out["alpha"]["diff"] > 0.05 and out["alpha"]["ci"][0] > 0, out["alpha"]
    b2 = b.assign(N=b.N * 1.5)  # no (N, D) in common
    assert paired_comparison(a, b2, n_boot=0)["status"] == "not enough matched runs"


def test_tiny_sweep_nine_runs_per_group():
    """The demo sweep: 3 sizes x 3 budgets per arch. Fits converge; the bootstrap skips unidentifiable resamples."""
    df = pd.concat([synth(3, 3, 0.01, 11, arch="dot"), synth(3, 3, 0.01, 12, arch="simplicial")])
    df = df.rename(columns={"params": "N", "tokens": "D", "loss": "L", "arch": "group"})
    doc = fit_groups(df, n_boot=40, starts="small", jobs=1)
    for g in ("dot", "simplicial"):
        f = doc["fits"][g]
        assert f["status"] == "ok" and f["converged"], f["message"]
        b = f["bootstrap"]
        assert b["n"] == 40 and 0 < b["n_converged"] <= 40 and len(b["samples"]) == b["n_converged"]
    assert set(doc["comparison"]) == {"simplicial - dot"}
    json.dumps(doc, allow_nan=False)


def test_fit_groups_marks_insufficient_groups():
    df = pd.concat([synth(3, 3, 0.01, 1, arch="dot"), synth(1, 4, 0.01, 2, arch="one_size")])
    df = df.rename(columns={"params": "N", "tokens": "D", "loss": "L", "arch": "group"})
    doc = fit_groups(df, n_boot=0, starts="small", on_insufficient="mark")
    assert doc["fits"]["one_size"]["status"] == "not enough runs"
    assert "one model size" in doc["fits"]["one_size"]["reason"] or "fewer than" in doc["fits"]["one_size"]["reason"]
    assert doc["fits"]["dot"]["status"] == "ok"
    with pytest.raises(Exception, match="one_size"):
        fit_groups(df, n_boot=0, starts="small", on_insufficient="error")


def test_fixed_budget_power_law_recovery():
    x = np.logspace(7, 9, 5)
    r = fit_power_law(x, 1.5 + 300 * x**-0.4)
    assert r["converged"] and r["alpha"] == pytest.approx(0.4, rel=1e-4) and r["E"] == pytest.approx(1.5, rel=1e-4)
    assert r["loglinear"]["r2"] > 0.9 and r["loglinear"]["alpha"] > 0


# ------------------------------------------------------------------------------------------------------ CLI
def _write(tmp_path, df, name="results.csv"):
    p = tmp_path / name
    df.to_csv(p, index=False)
    return str(p)


def test_cli_chinchilla_json_contract(tmp_path, capsys):
    df = pd.concat([synth(4, 4, 0.01, 1, arch="dot"), synth(4, 4, 0.01, 2, arch="simplicial")])
    df["status"] = "done"
    df = pd.concat([df, pd.DataFrame({"params": [1e8], "tokens": [1e10], "loss": [np.nan], "arch": ["dot"],
                                      "status": ["failed"]})])
    out = tmp_path / "fits.json"
    rc = main(["chinchilla", _write(tmp_path, df), "--bootstrap", "30", "--starts", "small", "--jobs", "1",
               "--json", str(out), "--compute-budgets", "1e20", "--predict", "1e9:2e10"])
    assert rc == 0
    assert "excluded 1 run" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    f = doc["fits"]["dot"]
    for k in ("E", "A", "B", "alpha", "beta", "a", "converged", "objective", "ci", "methods", "bootstrap", "status"):
        assert k in f, k
    assert set(f["methods"]) == {"approach3", "varpro"} and f["method"] == "approach3"
    assert f["methods_agree"]["alpha"]["within_cis"] is True
    assert all(len(f["ci"][k]) == 2 for k in ("E", "A", "B", "alpha", "beta", "a", "N_opt(C=1e+20)"))
    assert len(f["bootstrap"]["samples"][0]) == 5
    assert set(doc["comparison"]["simplicial - dot"]) >= {"alpha", "beta", "a"}
    assert set(doc["comparison"]["simplicial - dot"]["alpha"]) >= {"diff", "ci", "ratio", "ratio_ci", "verdict", "method"}
    assert doc["meta"]["n_runs"] == 32


def test_cli_flops_col_and_fixed_budget(tmp_path):
    df = synth(4, 3, 0.0, 1, arch="dot")
    df["flops"] = 6 * df.params * df.tokens
    df = df.drop(columns="tokens")
    out = tmp_path / "fixed.json"
    assert main(["fixed-budget", _write(tmp_path, df), "--flops-col", "flops", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    rows = doc["fixed_tokens"]["dot"]
    assert len(rows) == 3 and all(r["n_points"] == 4 for r in rows)
    assert {"tokens", "E", "A", "alpha", "converged", "loglinear"} <= set(rows[0])
    assert {"params", "B", "beta"} <= set(doc["fixed_params"]["dot"][0])


def test_cli_on_chinchilla_csv_with_flops(tmp_path, capsys):
    out = tmp_path / "fits.json"
    rc = main(["chinchilla", str(DATA), "--params-col", "Model Size", "--flops-col", "Training FLOP",
               "--bootstrap", "0", "--starts", "small", "--method", "approach3", "--json", str(out)])
    assert rc == 0
    assert "one group 'all'" in capsys.readouterr().out
    f = json.loads(out.read_text())["fits"]["all"]
    assert f["converged"] and f["n_runs"] == 245 and 0.3 < f["alpha"] < 0.4


@pytest.mark.parametrize("mutate, args, expect", [
    (lambda d: d.drop(columns="loss"), [], "'loss'"),
    (lambda d: d.assign(params=d.params.where(d.index != 3, -1.0)), [], "non-positive"),
    (lambda d: d.assign(loss=d.loss.where(d.index != 2, np.nan)), [], "NaN"),
    (lambda d: d.iloc[:4], [], "fewer than the 5"),
    (lambda d: d.assign(params=1e8), [], "one model size"),
    (lambda d: d.drop(columns="arch"), ["--group-col", "arch"], "group column 'arch'"),
    (lambda d: d, ["--seed", "-1"], "--seed must be >= 0"),
    (lambda d: d, ["--bootstrap", "-1"], "--bootstrap must be >= 0"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, mutate, args, expect):
    df = mutate(synth(3, 3, 0.01, 1, arch="dot"))
    out = tmp_path / "fits.json"
    rc = main(["chinchilla", _write(tmp_path, df), "--bootstrap", "0", "--starts", "small", "--json", str(out)] + args)
    assert rc == 2
    err = capsys.readouterr().err
    assert expect in err, err
    assert not out.exists()


def test_cli_insufficient_mark_fits_the_other_groups(tmp_path, capsys):
    """--insufficient mark (what launch.py --fit uses for partial sweeps): the small group is marked, the other is
    fitted, exit 0; the default stops with exit 2 naming the group."""
    df = pd.concat([synth(3, 3, 0.01, 1, arch="dot"), synth(3, 3, 0.01, 2, arch="simplicial").iloc[:3]])
    csv, out = _write(tmp_path, df), tmp_path / "fits.json"
    common = ["chinchilla", csv, "--bootstrap", "0", "--starts", "small", "--json", str(out)]
    assert main(common) == 2 and "group 'simplicial'" in capsys.readouterr().err and not out.exists()
    assert main(common + ["--insufficient", "mark"]) == 0
    fits = json.loads(out.read_text())["fits"]
    assert fits["dot"]["status"] == "ok" and fits["simplicial"]["status"] == "not enough runs"
    fb = tmp_path / "fixed.json"
    assert main(["fixed-budget", csv, "--insufficient", "mark", "--json", str(fb)]) == 0
    doc = json.loads(fb.read_text())
    assert "simplicial" in doc["skipped"] and "dot" in doc["fixed_tokens"]


def test_cli_fixed_budget_bad_input_exits_2(tmp_path, capsys):
    df = synth(3, 3, 0.01, 1, arch="dot").drop(columns="tokens")
    out = tmp_path / "fixed.json"
    assert main(["fixed-budget", _write(tmp_path, df), "--json", str(out)]) == 2
    assert "'tokens'" in capsys.readouterr().err and not out.exists()


def test_compute_optimal_is_nan_where_the_law_has_no_minimum():
    """An unidentified fit (here the dot fit of the H100 pilot: alpha < 0) has no compute-optimal frontier: NaN,
    not the complex number Python's power of a negative float gives (which matplotlib once cast to real)."""
    n, d = chinchilla.compute_optimal({"alpha": -8.43, "beta": 0.47, "A": 2.2e-64, "B": 3129.0}, [1e15, 1e16])
    assert n.dtype == d.dtype == np.float64 and np.isnan(n).all() and np.isnan(d).all()
    n, d = chinchilla.compute_optimal(TRUE, 5.76e23)  # Chinchilla's budget: about 70B parameters, 1.4T tokens
    assert 3e10 < n < 1.5e11 and n * d * 6 == pytest.approx(5.76e23)


def test_loss_rising_with_size_at_a_fixed_budget_is_not_identified():
    """L(N, D) only falls along N and D: a grid whose loss rises with N at fixed D in a good share of neighbouring
    cells is flagged whatever the optimiser returns; noise of the calibrated size on the law is not."""
    from fitting import identify

    df = synth(5, 3, 0.01, 0)
    assert identify.rising(df.params, df.tokens, df.loss) == []
    bad = df.copy()
    bad["loss"] = bad["loss"] * (bad["params"] / bad["params"].min()) ** 0.3  # larger models worse at each D
    why = identify.rising(bad.params, bad.tokens, bad.loss)
    assert len(why) == 1 and why[0].startswith("the loss rises with N at fixed D in 12 of 12 neighbouring pairs")
    one = df.copy()
    one.loc[one.index[1], "loss"] *= 1.5  # one outlier: one rising pair of 12, not a pattern
    assert identify.rising(one.params, one.tokens, one.loss) == []
    # token budgets trained in whole batches differ by a fraction of a percent between sizes: still one budget
    jitter = bad.assign(tokens=bad.tokens * (1 + 0.004 * (bad.params == bad.params.max())))
    assert identify.rising(jitter.params, jitter.tokens, jitter.loss) == why


def test_lm_batch_on_rows_of_different_data_is_each_rows_own_fit():
    """One Levenberg-Marquardt (chinchilla.lm_batch) serves both batched uses: many starts of one fit, and many
    resampled loss vectors on one design (bootstrap._RowsProblem, whose accepted steps narrow to their own rows)."""
    df = synth(4, 4, 0.02, 3)
    rng = np.random.default_rng(1)
    logY = np.log(df.loss.to_numpy())[None, :] + 0.02 * rng.standard_normal((3, len(df)))
    x0 = np.tile([6.0, 6.0, 0.5, 0.34, 0.28], (3, 1))
    rows = bs._RowsProblem(df.params, df.tokens, logY, delta=chinchilla.DEFAULT_DELTA)
    X, f = chinchilla.lm_batch(rows, x0, 40)
    for i in range(3):
        one = chinchilla.Problem(df.params, df.tokens, np.exp(logY[i]), delta=chinchilla.DEFAULT_DELTA)
        xi, fi = chinchilla.lm_batch(one, x0[i:i + 1], 40)
        # the same path to 1e-6 (exp then log of the losses moves the data by an ulp); another row's data is far off
        np.testing.assert_allclose(X[i], xi[0], rtol=1e-6)
        assert f[i] == pytest.approx(fi[0], rel=1e-6)
