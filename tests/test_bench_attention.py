"""The kernel benchmark: its sweep times exactly the plan's table (no config that no default reaches), its shape
arguments fail with the value named, and its SDPA baseline length is the FLOP-equal one."""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import bench_attention as bench  # noqa: E402
from triton_kernels.plan import KERNELS, Launch, default_launch  # noqa: E402


@pytest.mark.parametrize("kind", ["fwd", "bwd_dq", "bwd_dk1"])
@pytest.mark.parametrize("d", [64, 128])
def test_sweep_times_every_default_that_a_bf16_call_reaches_and_nothing_else(kind, d):
    """Each default the plan picks for a bf16 call at head dim d (Gluon or not, at every window class) is one of the
    sweep's launches, and each launch is one of those defaults."""
    variants = bench.sweep_variants(kind, d)
    reached = {default_launch(kind, gluon, d, torch.bfloat16, w1, w2) for gluon in (True, False)
               for w1, w2 in ((128, 128), (200, 32), (256, 64), (300, 16), (512, 32), (1024, 16))}
    assert set(variants) == reached, (kind, d)
    assert all(v.kernel in KERNELS[kind] for v in variants)


def test_variant_label_names_kernel_blocks_and_keys():
    launch = Launch("triton_fwd", dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=3, TMA=True, maxnreg=168))
    assert bench.variant_label(launch) == "triton_fwd 64x64 w4 s3 TMA maxnreg=168"


@pytest.mark.parametrize("text,message", [("8192,512", "expected N,W1,W2"), ("8192,512,x", "expected N,W1,W2"),
                                          ("8192,0,32", "must be positive")])
def test_sweep_shape_errors_name_the_value(capsys, text, message):
    with pytest.raises(SystemExit):
        bench.main(["--sweep", "--shape", text])
    err = capsys.readouterr().err
    assert message in err and repr(text) in err


def test_sdpa_equal_length_matches_the_recorded_grid():
    # N_eq^2 / 2 = N * w1 * w2, to a multiple of 128: the N_eq column of the grids in
    # benchmarks/results/kernels-issue4-2026-11.md
    assert [bench.sdpa_equal_length(n, w1, w2) for n, w1, w2 in
            ((8192, 512, 32), (2048, 512, 32), (16384, 1024, 16), (16384, 128, 128))] == [16384, 8192, 23168, 23168]
    assert bench.sdpa_flops(16384, 64) == 4 * 4 * 8 * 64 * 16384 * 16385 / 2
