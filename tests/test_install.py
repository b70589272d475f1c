"""What an install provides: the analysis half (fitting, reports, reading a sweep file) without torch or triton,
the training extra with triton only where it has wheels, and the fits' BLAS thread limit through threadpoolctl."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

from tests.conftest import REPO_ROOT
from tests.test_reports_synthetic import make_sweep

# torch and triton made unimportable in the child, as on a laptop without them: a finder ahead of all others refuses
# them (not sys.modules[name] = None: libraries such as scipy's array-api layer read "'torch' in sys.modules" as
# "torch is loaded" and then fail on the None)
BLOCK = ("import sys, runpy\n"
         "class NoTorch:\n"
         "    def find_spec(self, name, path=None, target=None):\n"
         "        if name.partition('.')[0] in ('torch', 'triton'):\n"
         "            raise ImportError(f'{name} is blocked (no torch or triton in this install)')\n"
         "sys.meta_path.insert(0, NoTorch())\n")


def _without_torch(module: str, *args, cwd) -> subprocess.CompletedProcess:
    code = BLOCK + f"sys.argv = [{module!r}, *sys.argv[1:]]; runpy.run_module({module!r}, run_name='__main__')\n"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "MPLBACKEND": "Agg"})


def test_fitting_and_reports_work_without_torch(tmp_path):
    sweep_dir = tmp_path / "out" / "syn"
    make_sweep(sweep_dir, fits=False)
    sweep = tmp_path / "syn.yaml"
    sweep.write_text("name: syn\noutput: out\narchitectures: {dot: {type: dot}}\n"
                     "sizes: {a: {n_layers: 2, d_model: 32, n_heads: 2}}\nbudgets: {tokens: [1e6]}\n")
    fit = _without_torch("fitting", "chinchilla", sweep_dir / "results.csv", "--bootstrap", "8", "--starts", "small",
                         "--jobs", "1", "--json", sweep_dir / "fits.json", cwd=tmp_path)
    assert fit.returncode == 0, fit.stdout[-2000:] + fit.stderr[-3000:]
    assert (sweep_dir / "fits.json").exists() and "alpha" in fit.stdout
    report = _without_torch("reports", sweep, cwd=tmp_path)  # reads the sweep file: the loader needs no torch
    assert report.returncode == 0, report.stderr[-3000:]
    assert (sweep_dir / "report.pdf").read_bytes()[:5] == b"%PDF-"
    # the analysis install follows a sweep and plans it; training asks for the train extra
    status = _without_torch("sweeps.cli", "status", sweep, cwd=tmp_path)
    assert status.returncode == 4 and "pending 1 (of 1)" in status.stdout, status.stderr[-3000:]
    plan = _without_torch("sweeps.cli", "run", sweep, "--dry-run", cwd=tmp_path)
    assert plan.returncode == 0 and "1 runs, 1 to submit" in plan.stdout, plan.stderr[-3000:]
    train = _without_torch("sweeps.cli", "run", sweep, cwd=tmp_path)
    assert train.returncode == 2 and "pip install 'simplex-scaling[train]'" in train.stderr, train.stderr[-3000:]
    probe = subprocess.run([sys.executable, "-c", BLOCK + "import torch"], capture_output=True, text=True)
    assert probe.returncode != 0 and "torch is blocked" in probe.stderr  # the block really blocks


def test_base_install_has_no_torch_and_triton_only_on_linux():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    names = [d.split(";")[0].split(">")[0].split("=")[0].strip() for d in project["dependencies"]]
    assert "torch" not in names and "triton" not in names and "threadpoolctl" in names
    train = project["optional-dependencies"]["train"]
    assert any(d.startswith("torch") for d in train)
    assert [d for d in train if d.startswith("triton")] == ["triton>=3.2; sys_platform == 'linux'"]
    assert "simplex-scaling[train,tracking]" in project["optional-dependencies"]["test"]


def test_fits_run_with_one_blas_thread():
    from threadpoolctl import threadpool_info, threadpool_limits

    from fitting._threads import single_blas_thread

    def counts():
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    assert counts(), "numpy's BLAS is not visible to threadpoolctl"
    with threadpool_limits(limits=2, user_api="blas"):  # a multi-threaded BLAS, whatever this machine's default
        assert counts() == {2}
        with single_blas_thread():
            assert counts() == {1}
        assert counts() == {2}  # restored on exit
