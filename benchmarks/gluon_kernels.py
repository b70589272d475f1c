"""Race check of the warp-specialised Gluon kernels on the GPU: the same launch, many times, must give the same bits.

    python benchmarks/gluon_kernels.py --stress     # the forward (three window classes) and the dK1/dV1 kernels, 40
                                                   # launches each in fp16 and bf16: a launch that differs shows a race

Why: the Gluon kernels hand buffers between warpgroups through mbarriers (triton_kernels/gluon_common.py); a missing
fence or an early hand-back is a race that a single comparison against the tl kernels can miss (one seen in 3 of 40
fp16 launches). The forward and the dK1/dV1 kernels sum without atomics, so every launch of the same inputs must give
the first one's bits; the first must also be as accurate as the tl forward (tests/test_kernels_gpu.py holds each
kernel's accuracy on many more shapes). The backward dQ kernels add through atomics, whose order varies by design.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import triton

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from triton_kernels import attention  # noqa: E402
from triton_kernels.plan import make_plan  # noqa: E402
from triton_kernels.testing import as_accurate, make_inputs, rel_err  # noqa: E402
from triton_kernels.triton_common import backward_delta  # noqa: E402


def stress_forward(launches=40, windows=((512, 32), (256, 64), (128, 128))) -> bool:
    """The package's forward (the default plan: Gluon on Hopper) launched many times on the GPU test's largest shape,
    in fp16 and bf16, at each of `windows`: every launch must give the first one's bits (a launch that differs, and
    where (batch, row, head), shows a race), and the first must be as accurate as the tl query-tile forward."""
    ok = True
    cases = [(w, d, dt) for w in windows for d in (64, 128) for dt in (torch.float16, torch.bfloat16)]
    for (w1, w2), d, dtype in cases:
        xs = make_inputs(1, 4096, 4, 1, d, dtype, "cuda", seed=3)
        scale = d ** -0.5
        plan = make_plan(*xs, w1, w2)
        tl_plan = make_plan(*xs, w1, w2, gluon=False).replace("fwd", kernel="triton_fwd")
        ref, ref_lse = attention.forward(*xs, w1, w2, scale, tl_plan)
        x32 = [x.float() for x in xs]
        exact, _ = attention.forward(*x32, w1, w2, scale, make_plan(*x32, w1, w2))
        record = {}
        first, first_lse = attention.forward(*xs, w1, w2, scale, plan, record)
        err, ref_err = rel_err(first, exact), rel_err(ref, exact)
        lse_err = (first_lse - ref_lse).abs().max().item()
        bad = 0
        for i in range(launches):
            out, lse = attention.forward(*xs, w1, w2, scale, plan)
            diff = (out.float() - first.float()).abs().amax(dim=-1)  # [B, N, H]
            if diff.max().item() > 0 or not torch.equal(lse, first_lse):
                bad += 1
                rows = diff.nonzero()
                print(f"{str(dtype)[6:]} launch {i}: max abs diff {diff.max().item():.3e} at {rows.shape[0]} rows, "
                      f"first {rows[:4].tolist()} last {rows[-2:].tolist()}; lse diff "
                      f"{(lse - first_lse).abs().max().item():.2e}", flush=True)
        close = as_accurate(err, ref_err) and lse_err < 1e-3
        print(f"# stress ({w1}, {w2}) D={d} {str(dtype)[6:]} ({record['fwd'][0].name}): {bad} of {launches} launches "
              f"differ from the first; the first's rel err vs fp32 {err:.2e} (tl {ref_err:.2e}), lse max abs err vs tl "
              f"{lse_err:.2e} {'ok' if close else 'FAIL'}", flush=True)
        ok &= bad == 0 and close
    return ok


def stress_dk1(launches=40) -> bool:
    """The package's dK1/dV1 kernels (Gluon on Hopper: at D=64 two consumers share each formed operand, at D=128 two
    consumers of different roles hand P over) launched many times: every launch must give the first one's bits."""
    ok = True
    for d, dtype in ((d, dtype) for d in (64, 128) for dtype in (torch.float16, torch.bfloat16)):
        xs = make_inputs(1, 4096, 4, 1, d, dtype, "cuda", seed=3)
        do = torch.randn_like(xs[0])
        plan = make_plan(*xs, 512, 32, do=do)
        out, lse = attention.forward(*xs, 512, 32, 0.125, plan)
        delta = backward_delta(do, out, False)
        launch = attention.launcher(plan.bwd_dk1.kernel)

        def run():
            return launch(do, *xs, lse, delta, 512, 32, 0.125, plan.bwd_dk1.config)

        *first, kernels = run()
        bad = sum(any(not torch.equal(a, f) for a, f in zip(run()[:2], first)) for _ in range(launches))
        print(f"# stress dk1 D={d} {str(dtype)[6:]} ({kernels[0].name}): {bad} of {launches} launches "
              f"differ from the first", flush=True)
        ok &= bad == 0
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stress", action="store_true", help="run the race check (the only mode)")
    ap.add_argument("--launches", type=int, default=40)
    args = ap.parse_args(argv)
    if not args.stress:
        ap.error("nothing to do: pass --stress")
    if not torch.cuda.is_available():
        print("gluon_kernels.py needs a CUDA GPU (registers without one: benchmarks/compile_report.py)")
        return 1
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} | {torch.cuda.get_device_name()} | "
          f"torch {torch.__version__} | triton {triton.__version__} | command: python benchmarks/gluon_kernels.py "
          f"{' '.join(argv if argv is not None else sys.argv[1:])}", flush=True)
    ok = stress_forward(args.launches) & stress_dk1(args.launches)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
