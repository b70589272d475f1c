"""One launch each of the kernels to compare, inside a CUDA profiler range, for Nsight Compute (ncu).

    ncu --profile-from-start off --section SpeedOfLight --section ComputeWorkloadAnalysis \
        --section WarpStateStats --section Occupancy python benchmarks/profile_kernels.py --d 64
    ncu --profile-from-start off --section SourceCounters --page source --print-source cuda,sass --csv \
        python benchmarks/profile_kernels.py --d 64 --backward       # per source line of the backward kernels

Why: timings say how far our kernels are from SDPA (bench_attention.py), not which unit or stall bounds them. ncu
reads the hardware counters of each kernel: tensor-pipe, MUFU (XU) and FMA utilisation, issue-slot use, the stall
reasons and, per source line, the instructions executed. The forward pass profiles our 2-simplicial forward (the
default config at the shape), the plain causal Triton kernel of triton_flash_ceiling.py at the FLOP-equal length (the
ceiling of the same idioms) and torch's SDPA there; --backward profiles our two backward kernels (dQ/dK2/dV2 and
dK1/dV1) instead. Each runs a few times untimed first, so that compilation stays outside the profiled range.
(Named profile_forward.py in results/kernels-issue4-2026-11.md, forward-profile-2026-11-27.)
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchmarks.bench_attention import B, H, inputs, parse_shape, sdpa_equal_length  # noqa: E402
from benchmarks.triton_flash_ceiling import causal_attention  # noqa: E402
from triton_kernels import attention  # noqa: E402
from triton_kernels.plan import make_plan  # noqa: E402
from triton_kernels.triton_common import backward_delta  # noqa: E402

LAUNCHED: dict = {}  # what the launches below recorded: their compiled kernels


def forwards(n: int, w1: int, w2: int, d: int) -> dict:
    """{name: zero-argument launch} of the three forwards at (N, w1, w2) and its FLOP-equal causal length."""
    xs = inputs(n, H, H, d, requires_grad=False)
    n_eq = sdpa_equal_length(n, w1, w2)
    q, k, v = (torch.randn(B, H, n_eq, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    return {
        "ours": lambda: attention.forward(*xs, w1, w2, 1 / math.sqrt(d), make_plan(*xs, w1, w2), LAUNCHED),
        "plain causal Triton (64, 64, 4, 3), TMA": lambda: causal_attention(q, k, v, 64, 64, 4, 3, tma=True),
        "SDPA": lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True),
    }


def backwards(n: int, w1: int, w2: int, d: int) -> dict:
    """{name: zero-argument launch} of our two backward kernels at (N, w1, w2), on a real forward's lse and delta."""
    xs = inputs(n, H, H, d, requires_grad=False)
    scale = 1 / math.sqrt(d)
    plan = make_plan(*xs, w1, w2)
    out, lse = attention.forward(*xs, w1, w2, scale, plan)
    dout = torch.randn_like(out)
    delta = backward_delta(dout, out, False)

    def run(kind):
        launch = getattr(plan, kind)
        *_, LAUNCHED[kind] = attention.launcher(launch.kernel)(dout, *xs, lse, delta, w1, w2, scale, launch.config)

    return {"dQ/dK2/dV2": lambda: run("bwd_dq"), "dK1/dV1": lambda: run("bwd_dk1")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d", type=int, default=64, choices=(64, 128), help="head dim (default 64)")
    ap.add_argument("--shape", default="8192,512,32", metavar="N,W1,W2", help="default: the issue-4 target")
    ap.add_argument("--backward", action="store_true", help="our two backward kernels instead of the forwards")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        ap.error("needs a CUDA GPU")
    n, w1, w2 = parse_shape(ap, args.shape)
    launches = (backwards if args.backward else forwards)(n, w1, w2, args.d)
    for launch in launches.values():  # compile and warm up outside the profiled range
        for _ in range(3):
            launch()
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    for name, launch in launches.items():
        torch.cuda.nvtx.range_push(name)
        launch()
        torch.cuda.nvtx.range_pop()
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    kernels = ", ".join(k.name for ks in LAUNCHED.values() if isinstance(ks, tuple) for k in ks)
    print(f"profiled at N={n} (w1, w2)=({w1}, {w2}) D={args.d}: {', '.join(launches)}; our kernels: {kernels}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
