"""benchmarks/compile_report.py compiles the kernels for Hopper (sm_90) on this CPU machine, with Triton's own ptxas,
and reads their registers and spills from the cubin. The launch configs in triton_kernels/plan.py are chosen for what
the GPU measured (benchmarks/kernel_notes.md); these tests hold the resource claims behind them, so a kernel edit that
makes a fast config spill fails here, before any device time is spent."""

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
    expected = {(k, d) for k in ("fwd", "bwd_dq", "bwd_dk1") for d in (64, 128)}
    assert set(defaults) == expected, f"launches compiled: {sorted(defaults)}"
    for key, r in defaults.items():
        assert "error" not in r, f"{key}: {r.get('error')}"
        assert 0 < r["regs"] <= 255 and r["smem"] > 0, f"{key}: implausible resource usage {r}"


def test_hopper_runs_the_gluon_kernels_where_they_won(defaults):
    # sm_90 with 16-bit inputs: the forward and both backward kernels at D=64 and 128 are the Gluon ones
    # (benchmarks/results/kernels-issue4-2026-11.md: the forward packed at D=64 since v12, at D=128 since v15)
    assert defaults[("fwd", 64)]["name"] == "_simplicial_fwd_packed_gluon"
    assert defaults[("fwd", 128)]["name"] == "_simplicial_fwd_packed_gluon"
    # dK1/dV1: two K1 tiles per program since v10; dQ at D=128: one launch and dK1/dV1 with two consumers of
    # different roles since v11
    assert defaults[("bwd_dq", 64)]["name"] == "_simplicial_bwd_dq_dk2dv2_gluon"
    assert defaults[("bwd_dk1", 64)]["name"] == "_simplicial_bwd_dk1dv1_gluon"
    assert defaults[("bwd_dq", 128)]["name"] == "_simplicial_bwd_dq_dk2dv2_roles_gluon"
    assert defaults[("bwd_dk1", 128)]["name"] == "_simplicial_bwd_dk1dv1_roles_gluon"


def test_forward_configs_hold_their_register_budget(defaults):
    # D=64: packed rows, two K1 tiles per softmax step, 128 registers at launch and a ring of five tiles so two
    # programs share an SM, no spills (at 80 registers, three programs per SM, the paired step spills 80 slots and
    # runs 1.4x slower; without _masked's FRESH masks the packed kernel spills 68);
    # D=128 at w1=512: packed rows, two query groups (one consumer warpgroup each, 240 registers) on one streamed
    # ring of four tiles, one program per SM, 168 at launch, at most the 4 spill slots it was measured with (v15)
    fwd64, fwd128 = defaults[("fwd", 64)], defaults[("fwd", 128)]
    assert fwd64["regs"] <= 128 and fwd64["spills"] == 0 and 2 * fwd64["smem"] <= 227 * 1024, f"D=64 forward: {fwd64}"
    assert fwd128["regs"] <= 168 and fwd128["spills"] <= 4 and fwd128["smem"] <= 227 * 1024, f"D=128: {fwd128}"


def test_backward_configs_hold_their_budgets(defaults):
    # the Gluon dQ kernel at D=64: 128 registers at launch and <= 113 KiB of shared memory (two programs per SM),
    # without spills; at D=128 the two-role one: one program per SM (12 warps at 168 registers, each consumer 240),
    # a ring of four K1/V1 tiles in <= 227 KiB, without spills; the dK1/dV1 kernels: one program per SM (16 warps at
    # 128 registers), at D=64 two K1 tiles with at most the 2 spill slots measured, at D=128 the two-role one
    # without spills
    r = defaults[("bwd_dq", 64)]
    assert r["regs"] <= 128 and r["smem"] <= 113 * 1024 and r["spills"] == 0, f"dQ D=64: {r}"
    r = defaults[("bwd_dq", 128)]
    assert r["regs"] <= 168 and r["smem"] <= 227 * 1024 and r["spills"] == 0, f"dQ D=128: {r}"
    for d, spills in ((64, 2), (128, 0)):
        r = defaults[("bwd_dk1", d)]
        assert r["regs"] <= 128 and r["smem"] <= 227 * 1024 and r["spills"] <= spills, f"dK1/dV1 D={d}: {r}"


@pytest.mark.parametrize("windows", ["128,128", "256,64", "1024,16"])
def test_the_forward_kernels_at_other_window_classes(windows):
    # the tl fallback picks per window class (per-query at w2 >= 64, K1 tiles of 128 at w1 >= 1024); on Hopper the
    # Gluon kernel beat each of them (v8, v10, v12)
    proc = _run("--json", "--windows", windows)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = {(r["kind"], r["D"]): r for r in map(json.loads, proc.stdout.splitlines()) if "kind" in r}
    fwd64 = records[("fwd", 64)]
    # D=64 with the k1 window resident at w1 <= 265: at w1=128 two slots, three programs per SM (80 registers, at
    # most the 6 spill slots measured, v13 run 7); at w1=256 four slots, paired
    # steps, opaque slots, two programs per SM; at w1=1024 the paired steps over the streamed ring
    programs = 3 if windows == "128,128" else 2
    assert fwd64["name"] == "_simplicial_fwd_packed_gluon" and fwd64["regs"] <= 256 // programs, fwd64
    assert fwd64["spills"] <= (6 if windows == "128,128" else 0), fwd64
    assert programs * fwd64["smem"] <= 227 * 1024, fwd64
    fwd128 = records[("fwd", 128)]
    # D=128: at w1=1024 two query groups on one streamed ring, as at w1=512 (v15); at w1=128 packed rows with
    # the query group's k1 window resident, two programs per SM, its slots indexed through an opaque zero
    # (OPAQUE_SLOTS), no spills (as constants 8 spill slots, 1.07x slower: v14 run 2)
    if windows == "1024,16":
        assert fwd128["name"] == "_simplicial_fwd_packed_gluon" and fwd128["regs"] <= 168, fwd128
        assert fwd128["spills"] <= 4 and fwd128["smem"] <= 227 * 1024, fwd128
    elif windows == "128,128":
        assert fwd128["name"] == "_simplicial_fwd_packed_gluon" and fwd128["regs"] <= 128, fwd128
        assert fwd128["spills"] == 0 and 2 * fwd128["smem"] <= 227 * 1024, fwd128
    else:  # w1=256: two query groups share a window of four slots, one consumer each (240 registers), one program
        # per SM, opaque slots: at most the 2 spill slots it was measured with (18 as constants, 1.10x slower: v14)
        assert fwd128["name"] == "_simplicial_fwd_packed_gluon" and fwd128["regs"] <= 168, fwd128
        assert fwd128["spills"] <= 2 and fwd128["smem"] <= 227 * 1024, fwd128


def test_every_packed_forward_default_applies_at_its_windows():
    # the least-w1 thresholds of plan.py's Gluon forward rows must match what each resident window fits: at every w1
    # the default applies, and one column more than the widest window a resident config fits is refused
    import torch

    from triton_kernels.gluon_fwd import check_config
    from triton_kernels.plan import default_launch

    def cfg(d, w1):
        launch = default_launch("fwd", True, d, torch.bfloat16, w1, 32)
        assert launch.kernel == "gluon_fwd"
        return launch.config

    widest = {}
    for d in (64, 128):
        for w1 in range(1, 1200):
            check_config(w1, cfg(d, w1))
            if cfg(d, w1).get("RESIDENT"):
                widest[d, cfg(d, w1)["NUM_BUF"], cfg(d, w1).get("CONSUMERS", 1)] = w1
    assert widest == {(64, 2, 1): 128, (64, 4, 1): 265, (128, 2, 1): 128, (128, 4, 2): 257}, widest
    with pytest.raises(ValueError, match=r"\(273 columns at w1=266\) does not fit NUM_BUF=4"):
        check_config(266, cfg(64, 265))
    with pytest.raises(ValueError, match=r"\(273 columns at w1=258\)"):
        check_config(258, cfg(128, 257))


def _gluon_fwd(windows, override):
    proc = _run("--json", "--windows", windows, "--gluon-fwd", json.dumps(override))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {r["D"]: r for r in map(json.loads, proc.stdout.splitlines()) if "kind" in r}


def test_opaque_slots_keep_the_resident_windows_descriptors_from_spilling():
    # OPAQUE_SLOTS (every resident default but D=64's two slots, since v14): indexed as constants, the resident
    # window's first slots and tail have their shared-memory descriptors hoisted out of every loop and spilled;
    # through an opaque zero they are formed where used. D=128 at w1=128: 8 spill slots -> 0; D=64 paired steps over
    # four slots: 30 -> 0
    fixed, opaque = _gluon_fwd("128,128", {"OPAQUE_SLOTS": False}), _gluon_fwd("128,128", {"OPAQUE_SLOTS": True})
    assert fixed[128]["spills"] > 0 and opaque[128]["spills"] == 0, (fixed[128], opaque[128])
    assert opaque[64]["spills"] <= fixed[64]["spills"], (fixed[64], opaque[64])
    paired = _gluon_fwd("256,64", {"PAIRED": True, "OPAQUE_SLOTS": True})[64]
    assert paired["spills"] == 0 and paired["regs"] <= 128 and 2 * paired["smem"] <= 227 * 1024, paired
    assert _gluon_fwd("256,64", {"PAIRED": True, "OPAQUE_SLOTS": False})[64]["spills"] > 0


def test_a_gluon_forward_config_that_does_not_apply_is_a_row_not_a_crash():
    r = _gluon_fwd("512,32", {"RESIDENT": True, "NUM_BUF": 2})
    assert "does not fit NUM_BUF=2" in r[64]["error"] and "(519 columns at w1=512)" in r[64]["error"], r[64]
    proc = _run("--gluon-fwd", "[1]")
    assert proc.returncode == 2 and "expected a JSON object" in proc.stderr


def test_bad_windows_are_refused():
    proc = _run("--windows", "128")
    assert proc.returncode == 2 and "--windows '128'" in proc.stderr


def test_refuses_the_interpreter():
    proc = _run("--json", interpret="1")
    assert proc.returncode != 0 and "without TRITON_INTERPRET=1" in proc.stderr + proc.stdout
