"""Fitting and reports on inputs that used to be accepted silently or end in a traceback (issue 28): duplicate runs,
an empty architecture cell, malformed --predict, --json and -o naming folders, and a fits.json from another table."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from fitting.cli import main as fit_main
from reports.cli import main as report_main
from tests.conftest import REPO_ROOT
from tests.test_fitting import synth

FAST = ["--bootstrap", "0", "--starts", "small", "--jobs", "1", "--method", "approach3"]


def _table(seed: int = 1) -> pd.DataFrame:
    df = pd.concat([synth(3, 3, 0.01, seed, arch="dot"), synth(3, 3, 0.01, seed + 1, arch="simplicial")])
    df["status"] = "done"
    df["run_id"] = [f"r{i}" for i in range(len(df))]
    df["size"] = "s"
    return df.reset_index(drop=True)


def _csv(tmp_path, df, name="results.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def test_duplicate_run_ids_are_refused(tmp_path, capsys):
    """A results.csv with repeated run ids was fitted as if each row were a run (32 "runs" from 16)."""
    df = _table()
    path = _csv(tmp_path, pd.concat([df, df.iloc[[3, 4]]]))
    assert fit_main(["chinchilla", str(path), *FAST]) == 2
    err = capsys.readouterr().err
    assert "run_id 'r3' appears 2 times (rows [5, 20])" in err and "2 run id(s) are repeated" in err, err


def test_empty_architecture_cell_is_a_message(tmp_path, capsys):
    df = _table()
    df.loc[4, "arch"] = None
    assert fit_main(["chinchilla", str(_csv(tmp_path, df)), *FAST]) == 2
    assert "column 'arch' is empty for 1 run(s); first: r4" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["1:2:3", "1e8", "1e8:-2", "a:b"])
def test_malformed_predict_is_a_usage_error(tmp_path, capsys, bad):
    assert fit_main(["chinchilla", str(_csv(tmp_path, _table())), *FAST, "--predict", bad]) == 2
    assert "expected N:D pairs of positive numbers" in capsys.readouterr().err


def test_json_naming_a_folder_is_refused_and_leaves_nothing(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    assert fit_main(["chinchilla", str(_csv(tmp_path, _table())), *FAST, "--json", str(tmp_path / "out")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "results.csv"]  # no stray .tmp
    assert not any((tmp_path / "out").iterdir())


def test_report_refuses_fits_of_another_table(tmp_path, capsys):
    """A fits.json from another CSV (same groups, same run count) was drawn over points it did not fit."""
    (tmp_path / "a").mkdir()
    a = _csv(tmp_path / "a", _table(seed=1))
    fits = tmp_path / "a" / "fits.json"
    assert fit_main(["chinchilla", str(a), *FAST, "--json", str(fits)]) == 0
    assert len(json.loads(fits.read_text())["meta"]["table_sha256"]) == 64
    (tmp_path / "b").mkdir()
    other = _table(seed=7)  # the same run ids, groups and count; other losses
    b = _csv(tmp_path / "b", other)
    capsys.readouterr()
    assert report_main([str(b), "--fits", str(fits), "-o", str(tmp_path / "b" / "r.pdf")]) == 2
    err = capsys.readouterr().err
    assert f"{fits} was fitted to other runs than {b} holds" in err, err
    assert not (tmp_path / "b" / "r.pdf").exists()


def test_report_refuses_a_comparison_without_its_verdict(tmp_path, capsys):
    """The verdict carries identifiability; a fits.json without one (written before verdicts) was once given a
    verdict from its interval alone, which could call an unidentified comparison 'larger'."""
    path = _csv(tmp_path, _table())
    fits = tmp_path / "fits.json"
    assert fit_main(["chinchilla", str(path), *FAST, "--json", str(fits)]) == 0
    doc = json.loads(fits.read_text())
    key = next(iter(doc["comparison"]))
    del doc["comparison"][key]["alpha"]["verdict"]
    fits.write_text(json.dumps(doc))
    capsys.readouterr()
    assert report_main([str(path), "--fits", str(fits), "-o", str(tmp_path / "r.pdf")]) == 2
    assert f"comparison.{key}.alpha.verdict missing" in capsys.readouterr().err
    assert not (tmp_path / "r.pdf").exists()


def test_report_output_naming_a_folder_is_a_message(tmp_path, capsys):
    path = _csv(tmp_path, _table())
    (tmp_path / "pdfs").mkdir()
    assert report_main([str(path), "-o", str(tmp_path / "pdfs")]) == 2
    assert "-o " in capsys.readouterr().err


def test_train_module_help_is_usage_not_a_traceback():
    out = subprocess.run([sys.executable, "-m", "simplicial.train", "--help"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "usage: python -m simplicial.train" in out.stdout, out.stderr
    bad = subprocess.run([sys.executable, "-m", "simplicial.train", "missing.json"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "missing.json: cannot read" in bad.stderr and "Traceback" not in bad.stderr
