"""A/B of two versions of the kernel package on one GPU: forward and forward+backward times, alternating rounds.

    python benchmarks/bench_ab.py --baseline /path/to/copy/triton_kernels_old     # a copy of an earlier package,
                                                                                 # renamed so both import side by side

Why: a refactor of the kernels must not slow them; timings from different runs or GPUs do not show a 2% change, so
both versions run in one process, on the same inputs, each shape's rounds alternating old/new so that clock drift
hits both alike. The baseline is an earlier `triton_kernels/` folder copied under another package name (its absolute
imports of `triton_kernels` renamed to match; `git show REV:triton_kernels/...` gives its files). Each version's
outputs and five gradients are compared too: the same kernels give the same bits for the output, dq, dk1 and dv1;
dk2 and dv2 are sums of fp32 atomic adds (gluon_bwd_dqdk2dv2.py), whose order varies from launch to launch, so for
them the table gives the largest difference relative to the tensor's largest magnitude (bf16 rounding: about 4e-3).

Shapes: issue 4's target (B=4, H=8, N=8192, (w1, w2) = (512, 32), D = 64 and 128, bf16) and the grid's other window
classes at N = 8192. Reported per shape: each version's median over rounds of triton.testing.do_bench medians, and
new / old: the median over rounds of each round's ratio (the two versions' calls of one round are seconds apart,
so the clock and temperature drift that moves a version's time by several percent between rounds cancels); above
1.02 it is slower by more than 2%. Also each version's spread over rounds (max / min - 1): a
forward+backward runs its two kernels on two streams, whose overlap varies from launch to launch, so it needs a
`--rep` of several of its calls (a 30 ms pass at rep 50 is two calls).
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time

import torch
import triton

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import triton_kernels  # noqa: E402

B, H, N = 4, 8, 8192
WINDOWS = ((512, 32), (256, 64), (128, 128), (1024, 16))


def load_baseline(path: str):
    """The package at `path` (a folder), imported under its folder name."""
    folder, name = os.path.split(os.path.abspath(path.rstrip("/")))
    if name == "triton_kernels":
        raise SystemExit(f"--baseline {path!r}: rename the copy (e.g. triton_kernels_old) so both versions import")
    sys.path.insert(0, folder)
    return importlib.import_module(name)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", required=True, metavar="DIR", help="a copy of the earlier package, renamed")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--rep", type=int, default=100, help="do_bench rep (ms)")
    ap.add_argument("--windows", nargs="+", default=[f"{a},{b}" for a, b in WINDOWS], metavar="W1,W2",
                    help="window classes (default: the target's and the grid's others)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_ab.py needs a CUDA GPU")
        return 1
    try:
        windows = [tuple(int(x) for x in w.split(",")) for w in args.windows]
        assert all(len(w) == 2 and min(w) >= 1 for w in windows)
    except (ValueError, AssertionError):
        ap.error(f"--windows {args.windows!r}: expected W1,W2 pairs of positive integers")
    old = load_baseline(args.baseline)
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} | {torch.cuda.get_device_name()} | "
          f"torch {torch.__version__} | triton {triton.__version__} | command: python benchmarks/bench_ab.py "
          f"{' '.join(argv if argv is not None else sys.argv[1:])}", flush=True)
    print(f"# bf16, B={B}, H={H}, N={N}; old = {old.__name__} ({args.baseline}), new = triton_kernels; "
          f"{args.rounds} alternating rounds, median of do_bench medians")
    print("| w1 | w2 | D | pass | old ms | new ms | new / old | spread old, new "
          "| out, dq, dk1, dv1 same bits | dk2, dv2 max rel diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for (w1, w2) in windows:
        for d in (64, 128):
            g = torch.Generator(device="cuda").manual_seed(0)
            xs = [torch.randn(B, N, H, d, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
                  for _ in range(5)]
            dout = torch.randn(B, N, H, d, device="cuda", dtype=torch.bfloat16, generator=g)
            fns = {"old": old.two_simplicial_attention, "new": triton_kernels.two_simplicial_attention}
            results = {}
            for name, f in fns.items():
                out = f(*xs, w1, w2, backend="triton")
                results[name] = (out, *torch.autograd.grad(out, xs, dout))
            # results: (out, dq, dk1, dk2, dv1, dv2); dk2 and dv2 are atomics' sums (see the docstring)
            same = all(torch.equal(results["old"][i], results["new"][i]) for i in (0, 1, 2, 4))
            rel = max(((results["old"][i].float() - results["new"][i].float()).abs().max()
                       / results["old"][i].float().abs().max().clamp_min(1e-30)).item() for i in (3, 5))
            times = {(name, p): [] for name in fns for p in ("fwd", "f+b")}
            for r in range(args.rounds):
                order = ("old", "new") if r % 2 == 0 else ("new", "old")
                for name in order:
                    f = fns[name]
                    with torch.no_grad():
                        times[name, "fwd"].append(triton.testing.do_bench(
                            lambda: f(*xs, w1, w2, backend="triton"), warmup=25, rep=args.rep, return_mode="median"))
                    times[name, "f+b"].append(triton.testing.do_bench(
                        lambda: torch.autograd.grad(f(*xs, w1, w2, backend="triton"), xs, dout), warmup=25,
                        rep=args.rep, return_mode="median"))
            for p in ("fwd", "f+b"):
                t_old, t_new = statistics.median(times["old", p]), statistics.median(times["new", p])
                ratio = statistics.median(n / o for n, o in zip(times["new", p], times["old", p]))
                spread = [max(times[v, p]) / min(times[v, p]) - 1 for v in ("old", "new")]
                worst = max(worst, ratio)
                print(f"| {w1} | {w2} | {d} | {p} | {t_old:.3f} | {t_new:.3f} | {ratio:.3f} "
                      f"| {spread[0]:.1%}, {spread[1]:.1%} | {'yes' if same else 'NO'} | {rel:.1e} |", flush=True)
            del xs, results
            torch.cuda.empty_cache()
    print(f"# worst new / old: {worst:.3f} ({'within' if worst <= 1.02 else 'OVER'} the 2% bound)")
    return 0 if worst <= 1.02 else 1


if __name__ == "__main__":
    raise SystemExit(main())
