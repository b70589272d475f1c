"""launch.py end to end on this machine: dry run, a tiny sweep through submitit's local executor to a PDF,
re-launch skipping finished runs, status and collect, and errors for bad sweep files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import REPO_ROOT, write_sweep


def launch(*args, timeout=600):
    return subprocess.run([sys.executable, "launch.py", *map(str, args)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_dry_run_table(tiny_sweep):
    out = launch(tiny_sweep, "--dry-run")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["run", "arch", "size", "shape"] and "FLOPs" in lines[0]
    assert sum(l.startswith(("dot-", "simplicial-")) for l in lines) == 8
    assert "8 runs, 8 to submit" in out.stdout
    assert not (tiny_sweep.parent / "out" / "tiny" / "runs").exists()  # a dry run writes nothing


def test_bad_sweep_exits_2_naming_key(tmp_path):
    path = write_sweep(tmp_path)
    path.write_text(path.read_text().replace("w2: 4", "w2: 0"))
    out = launch(path, "--dry-run")
    assert out.returncode == 2
    assert "architectures.simplicial.w2" in out.stderr and "sweep.yaml" in out.stderr


@pytest.mark.timeout(900)
def test_tiny_sweep_end_to_end_to_pdf(tmp_path):
    path = write_sweep(tmp_path, budgets="2560, 5120, 7680")  # 2 archs x 2 sizes x 3 budgets = 12 runs
    out = launch(path, "--fit", "--report", "--bootstrap", "20")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sweep_dir = tmp_path / "out" / "tiny"
    assert "[12/12]" in out.stdout and "ETA" in out.stdout  # progress lines
    table = pd.read_csv(sweep_dir / "results.csv")
    assert len(table) == 12 and (table["status"] == "done").all()
    assert {"run_id", "arch", "params", "tokens", "flops", "loss"} <= set(table.columns)
    assert (table["loss"] > 0).all() and table["loss"].notna().all()
    fits = json.loads((sweep_dir / "fits.json").read_text())
    assert set(fits["fits"]) == {"dot", "simplicial"}
    assert "alpha" in out.stdout  # the fitted exponents are printed
    pdf = sweep_dir / "report.pdf"
    assert pdf.exists() and pdf.read_bytes()[:5] == b"%PDF-" and str(pdf) in out.stdout
    assert (sweep_dir / "results_curves.csv").exists()

    # re-launch: everything is done, nothing runs again
    again = launch(path)
    assert again.returncode == 0 and "12 done or in flight, 0 to run" in again.stdout, again.stdout
    status = launch("status", path)
    assert status.returncode == 0 and "done 12" in status.stdout

    # a run whose result is lost is the only one re-run
    victim = table["run_id"].iloc[0]
    (sweep_dir / "runs" / victim / "result.json").unlink()
    third = launch(path)
    assert "1 to run" in third.stdout and "[1/1]" in third.stdout and victim in third.stdout, third.stdout
    collect = launch("collect", path, "-o", tmp_path / "r.csv")
    assert collect.returncode == 0 and len(pd.read_csv(tmp_path / "r.csv")) == 12
