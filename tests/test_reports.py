"""The report from synthetic sweep files with known fits: pages, pixels, text, reproducibility, partial and bad input.

PDFs are rasterised and their text extracted with pypdfium2 (a test dependency; no poppler needed).
"""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pandas as pd
import pytest

pdfium = pytest.importorskip("pypdfium2")

from reports import ReportInputError, build_report, resolve_inputs  # noqa: E402
from reports.cli import main  # noqa: E402
from reports.figures import frontier, law  # noqa: E402
from tests.test_reports_synthetic import TRUE, make_sweep  # noqa: E402

N_PAGES = 9  # title, loss-N, loss-D, isoFLOP, frontier, parameters, residuals, curves, runs (32 runs: one page)


def pdf_text(path) -> list[str]:
    doc = pdfium.PdfDocument(str(path))
    try:
        return [doc[i].get_textpage().get_text_range() for i in range(len(doc))]
    finally:
        doc.close()


def ink_fractions(path, scale: float = 0.35) -> list[float]:
    """Fraction of clearly non-white pixels per page."""
    doc = pdfium.PdfDocument(str(path))
    try:
        out = []
        for i in range(len(doc)):
            img = doc[i].render(scale=scale).to_numpy()[..., :3]
            out.append(float((img.min(axis=2) < 200).mean()))
        return out
    finally:
        doc.close()


def ci_text(x, ci, signed=False):
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(x)} [{f.format(ci[0])}, {f.format(ci[1])}]"


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    folder = tmp_path_factory.mktemp("full")
    sweep = make_sweep(folder)
    out = folder / "out" / "report.pdf"
    png = folder / "png"
    rc = main([str(sweep["paths"]["results"]), "-o", str(out), "--png-dir", str(png)])
    assert rc == 0
    return {**sweep, "pdf": out, "png": png, "folder": folder}


def test_page_count_and_pngs(full, capsys):
    assert len(pdf_text(full["pdf"])) == N_PAGES
    pngs = sorted(p.name for p in full["png"].glob("*.png"))
    assert len(pngs) == N_PAGES and pngs[0] == "01_title.png" and pngs[-1] == "09_runs.png"


def test_every_page_has_ink(full):
    ink = ink_fractions(full["pdf"])
    # Blank pages are 0; a title-only page is well under 0.5%; every real page draws much more.
    assert all(f > 0.01 for f in ink), ink


def test_headline_numbers_are_text(full):
    pages = pdf_text(full["pdf"])
    title = pages[0]
    fits = full["fits"]["fits"]
    for arch in ("dot", "simplicial"):
        for name in ("alpha", "beta", "a"):
            expect = ci_text(fits[arch][name], fits[arch]["ci"][name])
            assert expect in title, (arch, name, expect)
    comp = full["fits"]["comparison"]["simplicial - dot"]
    for name in ("alpha", "beta", "a"):
        assert ci_text(comp[name]["diff"], comp[name]["ci"], signed=True) in title
        assert "P(" not in title  # no resampling fraction dressed as a probability
    assert "30 done, 2 failed" in title and "abc1234" in title and "stdlib-py" in title
    # The parameter page carries A with its CI, and the fixed-budget table its R^2 values.
    assert "approach3" in pages[5] and "varpro" in pages[5] and "R^2" in pages[5]
    # The runs page lists the failed runs with their reason.
    assert "dot-l-4e08" in pages[8] and "RuntimeError: CUDA out of memory" in pages[8]
    # Captions state conventions on the compute pages.
    assert "own training FLOPs" in pages[3] and "not 6ND" in pages[3]
    assert "C = 6ND alternative" in pages[4] and "non-embedding" in pages[4]


def test_same_inputs_give_identical_bytes(full, tmp_path):
    again = build_report(full["paths"]["results"], tmp_path / "again.pdf")
    assert again.read_bytes() == full["pdf"].read_bytes()
    # The only date in the file is the last run's finish time, not the clock.
    assert b"/CreationDate (D:20250301120000Z)" in again.read_bytes()
    assert b"ModDate" not in again.read_bytes()


def test_partial_sweep_renders_every_page(tmp_path):
    sweep = make_sweep(tmp_path, partial=True, not_converged=("dot",))
    out = tmp_path / "partial.pdf"
    assert main([str(sweep["paths"]["results"]), "-o", str(out)]) == 0
    pages = pdf_text(out)
    assert len(pages) == N_PAGES
    assert all(f > 0.01 for f in ink_fractions(out))
    title = pages[0]
    assert "not enough runs" in title
    assert "pending" in title and "simplicial 2/16 done" in title
    assert "not converged" in title  # the dot fit is shown, marked
    assert "not enough runs" in pages[5]
    assert "(not converged)" in pages[4]  # frontier legend marks it too


def test_without_fits_the_data_pages_still_render(tmp_path):
    sweep = make_sweep(tmp_path, fits=False)
    out = tmp_path / "nofits.pdf"
    assert main([str(sweep["paths"]["results"]), "-o", str(out)]) == 0
    pages = pdf_text(out)
    assert len(pages) == N_PAGES
    hint = "no fits: run `python -m fitting chinchilla"
    for i in (0, 1, 2, 3, 4, 5, 6):
        assert hint in pages[i], i
    assert all(f > 0.01 for f in ink_fractions(out))


@pytest.fixture()
def sweep(tmp_path):
    return make_sweep(tmp_path)


def _expect_exit_2(argv, out, capsys, *words):
    assert main(argv + ["-o", str(out)]) == 2
    assert not out.exists() and not out.with_name(out.name + ".tmp").exists()
    err = capsys.readouterr().err
    for w in words:
        assert w in err, err
    return err


def test_missing_column_is_exit_2(sweep, tmp_path, capsys):
    res = pd.read_csv(sweep["paths"]["results"]).drop(columns=["loss"])
    bad = tmp_path / "bad" / "results.csv"
    bad.parent.mkdir()
    res.to_csv(bad, index=False)
    _expect_exit_2([str(bad)], tmp_path / "r.pdf", capsys, str(bad), "loss")


def test_empty_table_is_exit_2(sweep, tmp_path, capsys):
    res = pd.read_csv(sweep["paths"]["results"]).iloc[:0]
    bad = tmp_path / "empty" / "results.csv"
    bad.parent.mkdir()
    res.to_csv(bad, index=False)
    _expect_exit_2([str(bad)], tmp_path / "r.pdf", capsys, "no runs")
    bad.write_text("")
    _expect_exit_2([str(bad)], tmp_path / "r.pdf", capsys, "empty")


def test_unreadable_fits_is_exit_2(sweep, tmp_path, capsys):
    sweep["paths"]["fits"].write_text('{"fits": {"dot": ')
    _expect_exit_2([str(sweep["paths"]["results"])], tmp_path / "r.pdf", capsys, "fits.json", "JSON")


def test_fits_without_parameters_is_exit_2(sweep, tmp_path, capsys):
    f = json.loads(sweep["paths"]["fits"].read_text())
    del f["fits"]["dot"]["alpha"]
    sweep["paths"]["fits"].write_text(json.dumps(f))
    _expect_exit_2([str(sweep["paths"]["results"])], tmp_path / "r.pdf", capsys, "fits.dot.alpha")


def test_named_files_must_exist(sweep, tmp_path, capsys):
    _expect_exit_2([str(tmp_path / "nope.csv")], tmp_path / "r.pdf", capsys, "nope.csv")
    _expect_exit_2([str(sweep["paths"]["results"]), "--fits", str(tmp_path / "none.json")], tmp_path / "r.pdf",
                   capsys, "none.json")


def test_non_numeric_value_names_row_and_column(sweep, tmp_path):
    res = pd.read_csv(sweep["paths"]["results"])
    res["params"] = res["params"].astype(object)
    res.loc[3, "params"] = "12M"
    bad = tmp_path / "nn.csv"
    res.to_csv(bad, index=False)
    with pytest.raises(ReportInputError, match=r"'params' row 5 .*12M"):
        resolve_inputs(bad)


def test_yaml_source_reads_the_sweep_folder(sweep, monkeypatch, tmp_path):
    """A .yaml source goes through sweeps.load_sweep(...).sweep_dir and the default file names there."""
    folder = sweep["paths"]["results"].parent
    fake = types.ModuleType("sweeps")
    fake.load_sweep = lambda path: types.SimpleNamespace(sweep_dir=folder, name="fake-sweep")
    monkeypatch.setitem(sys.modules, "sweeps", fake)
    yaml = tmp_path / "s.yaml"
    yaml.write_text("name: fake-sweep\n")
    inputs = resolve_inputs(yaml)
    assert inputs.results_path == folder / "results.csv"
    assert inputs.fits is not None and inputs.fixed_budget is not None and inputs.curves is not None
    assert inputs.sweep_name == "fake-sweep"
    fake.load_sweep = lambda path: types.SimpleNamespace(sweep_dir=tmp_path / "not-collected", name="fake-sweep")
    with pytest.raises(ReportInputError, match=r"results\.csv: no such file \(run `python launch\.py collect"):
        resolve_inputs(yaml)


def test_frontier_formula_is_the_isoflop_minimum():
    """N_opt(C) from the closed form minimises L(N, C/(6N)) numerically, and 6 N_opt D_opt = C."""
    p = TRUE["dot"]
    for c in (1e15, 1e18, 1e21):
        n_opt, d_opt = frontier(p, [c])
        assert np.isclose(6 * n_opt[0] * d_opt[0], c, rtol=1e-9)
        n = np.geomspace(n_opt[0] / 30, n_opt[0] * 30, 20001)
        best = n[np.argmin(law(p, n, c / (6 * n)))]
        assert abs(np.log(best / n_opt[0])) < 2e-3


def test_runs_table_spans_pages_for_big_sweeps(sweep):
    """Page 9 continues on more pages rather than shrinking rows; every run appears once."""
    from reports.figures import RUNS_PER_PAGE, runs_table

    inputs = resolve_inputs(sweep["paths"]["results"])
    big = pd.concat([inputs.results.assign(run_id=inputs.results["run_id"] + f"-r{k}") for k in range(3)])
    inputs.results = big.reset_index(drop=True)
    figs = runs_table(inputs)
    assert len(figs) == -(-len(big) // RUNS_PER_PAGE) > 1
    shown = [c.get_text().get_text() for f in figs for ax in f.axes for c in ax.tables[0].get_celld().values()
             if c.get_text().get_text() in set(big["run_id"])]
    assert len(shown) == len(big)


def test_sweep_with_nothing_done_yet(sweep, tmp_path):
    """Every run pending, no curves, no fits: still all pages, each saying what is missing."""
    res = pd.read_csv(sweep["paths"]["results"]).iloc[::4].copy()
    res["status"] = "pending"
    res[["loss", "train_loss", "val_loss"]] = np.nan
    folder = tmp_path / "pending"
    folder.mkdir()
    res.to_csv(folder / "results.csv", index=False)
    out = folder / "report.pdf"
    assert main([str(folder / "results.csv")]) == 0  # default output: report.pdf beside the table
    pages = pdf_text(out)
    assert len(pages) == N_PAGES
    assert "8 pending" in pages[0] and "no done runs" in pages[0] and "no training curves" in pages[0]
    assert "no done runs yet" in pages[1] and "no training curves" in pages[7]


def test_negative_difference_reads_smaller_with_its_method(tmp_path):
    """A difference whose interval lies below 0 reads "smaller for simplicial at 95%", names the resampling method,
    and carries a multiplicity note; an unidentified comparison reads "not identified", with no number."""
    s = make_sweep(tmp_path)
    fits = json.loads(s["paths"]["fits"].read_text())
    comp = fits["comparison"]["simplicial - dot"]["alpha"]
    comp.update(diff=-abs(comp["diff"]), ci=[-abs(comp["ci"][1]), -abs(comp["ci"][0])], verdict="smaller")
    s["paths"]["fits"].write_text(json.dumps(fits))
    title = pdf_text(build_report(s["paths"]["results"], tmp_path / "neg.pdf"))[0]
    assert "smaller for simplicial at 95%" in title, title
    assert "parametric bootstrap on the fixed design (synthetic)" in title and "Multiplicity" in title
    for c in fits["comparison"]["simplicial - dot"].values():
        c.update(verdict="not identified", identifiability=["dot: 3 distinct model sizes"])
    fits["fits"]["dot"].update(identified=False, identifiability=["E = 0 is at its lower boundary 0"])
    s["paths"]["fits"].write_text(json.dumps(fits))
    pages = pdf_text(build_report(s["paths"]["results"], tmp_path / "noid.pdf"))
    assert "not identified (dot: 3 distinct model sizes)" in pages[0]
    assert ci_text(comp["diff"], comp["ci"], signed=True) not in pages[0]
    assert "Pipeline demonstration" in pages[0]
    dot = fits["fits"]["dot"]
    assert ci_text(dot["alpha"], dot["ci"]["alpha"]) not in pages[0]  # the unidentified fit shows no number


def test_null_interval_of_an_unidentified_fit_renders(tmp_path):
    """A fit whose resamples all failed has null intervals (fits.json writes NaN as null): the report draws it as
    not identified instead of refusing the file."""
    s = make_sweep(tmp_path)
    fits = json.loads(s["paths"]["fits"].read_text())
    fits["fits"]["dot"]["ci"]["alpha"] = None
    fits["fits"]["dot"].update(identified=False, identifiability=["no resample converged"])
    s["paths"]["fits"].write_text(json.dumps(fits))
    title = pdf_text(build_report(s["paths"]["results"], tmp_path / "null.pdf"))[0]
    assert "not identified" in title
