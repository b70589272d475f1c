"""benchmarks/compile_report.py compiles the kernels for Hopper (sm_90) on this CPU machine, with Triton's own ptxas,
and reads their registers and spills from the cubin. The launch configs in triton_kernels/simplicial_attention.py
are chosen for what the GPU measured (benchmarks/kernel_notes.md); these tests hold the resource claims behind them,
so a kernel edit that makes a fast config spill fails here, before any device time is spent."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "compile_report.py"


def _run(*args, interpret="0"):
    env = dict(os.environ, TRITON_INTERPRET=interpret)
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT, timeout=600)


@pytest.fixture(scope="module")
def defaults():
    proc = _run("--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {(r["kind"], r["D"]): r for r in records}


def test_every_default_launch_compiles_for_sm90(defaults):
    expected = {(k, d) for k in ("fwd", "bwd_dq", "bwd_dk1") for d in (64, 128)} | {("bwd_dq_w", 128)}
    assert set(defaults) == expected, f"launches compiled: {sorted(defaults)}"
    for key, r in defaults.items():
        assert "error" not in r, f"{key}: {r.get('error')}"
        assert 0 < r["regs"] <= 255 and r["smem"] > 0, f"{key}: implausible resource usage {r}"


def test_forward_configs_hold_their_register_budget(defaults):
    # D=64: capped at 168 registers so three programs share an SM, without spilling (the config's whole point);
    # D=128: 64x64 tiles with TMA and RELOAD fit in 255 registers without spilling
    fwd64, fwd128 = defaults[("fwd", 64)], defaults[("fwd", 128)]
    assert fwd64["regs"] <= 168 and fwd64["spills"] == 0, f"D=64 forward: {fwd64}"
    assert fwd128["spills"] == 0, f"D=128 forward: {fwd128}"


def test_dq_configs_do_not_spill_where_measured_clean(defaults):
    assert defaults[("bwd_dq", 64)]["spills"] == 0, defaults[("bwd_dq", 64)]
    assert defaults[("bwd_dq_w", 128)]["spills"] == 0, defaults[("bwd_dq_w", 128)]


def test_refuses_the_interpreter():
    proc = _run("--json", interpret="1")
    assert proc.returncode != 0 and "without TRITON_INTERPRET=1" in proc.stderr + proc.stdout
