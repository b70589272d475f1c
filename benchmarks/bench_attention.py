"""Benchmark: our Triton 2-simplicial attention vs torch SDPA (FLOP-equal causal) vs `simplicial-attention` 0.1.6.

    python benchmarks/bench_attention.py                 # the full grid, one table (markdown) on stdout
    python benchmarks/bench_attention.py --target        # only B=4, H=8, N=8192, w1=512, w2=32, D in {64, 128}
    python benchmarks/bench_attention.py --sweep         # every launch of the plan's table, at the target shape
    python benchmarks/bench_attention.py --streams       # the backward's two kernels on one stream vs side by side

FLOPs (tensor-core convention, docs/REFERENCE.md section 2): forward = 4 * B * Hq * D * P with P the exact number of
valid (i, j, k) triples, sum_i min(i+1, w1) * min(i+1, w2); forward+backward = 3.5 x forward. SDPA runs causal
attention at N_eq = sqrt(2 * N * w1 * w2) (rounded to 128), which does the same tensor-core work, and is counted the
same way:
forward = 4 * B * H * D * N_eq (N_eq + 1) / 2. SDPA is timed twice, with torch's default dispatch and with the
FlashAttention-2 backend forced; the ratios ours/SDPA use the faster of the two. Every time is a median of
triton.testing.do_bench in this run.
The `simplicial-attention` package is a comparison only: carried as a wheel to the device (see gpu_check.sh), loaded
without its package __init__ (which needs unrelated dependencies); it applies at D=64 (its kernels' only head dim).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import os
import re
import sys
import time
import types

import torch
import triton

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from triton_kernels import two_simplicial_attention  # noqa: E402

GRID_N = (2048, 8192, 16384)
GRID_D = (64, 128)
GRID_W = ((512, 32), (256, 64), (1024, 16), (128, 128))
GRID_GQA = (1, 8)
B, H = 4, 8


def valid_triples(n: int, w1: int, w2: int) -> int:
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return int((torch.clamp(i, max=w1) * torch.clamp(i, max=w2)).sum().item())


def sdpa_equal_length(n: int, w1: int, w2: int) -> int:
    """N_eq of the FLOP-equal causal SDPA: N_eq^2 / 2 = N * w1 * w2, rounded to a multiple of 128 (at least 128)."""
    return max(128, int(round(math.sqrt(2 * n * w1 * w2) / 128)) * 128)


def sdpa_flops(n_eq: int, d: int) -> float:
    """Tensor-core FLOPs of one causal SDPA forward at N_eq, B=4, H=8, head dim d (4 * B * H * d * N_eq(N_eq+1)/2)."""
    return 4 * B * H * d * n_eq * (n_eq + 1) / 2


def bench(fn, rep=100) -> float:
    return triton.testing.do_bench(fn, warmup=10, rep=rep, return_mode="median")


def inputs(n, hq, hkv, d, dtype=torch.bfloat16, requires_grad=True, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(B, n, hq, d, device="cuda", dtype=dtype, generator=g)
    ks = [torch.randn(B, n, hkv, d, device="cuda", dtype=dtype, generator=g) for _ in range(4)]
    return [x.requires_grad_(requires_grad) for x in [q, *ks]]


def time_fwd_bwd(f, xs, rep):
    """(fwd ms, fwd+bwd ms, peak MiB of fwd+bwd above the inputs)."""
    with torch.no_grad():
        t_f = bench(lambda: f(*xs), rep)
    out = f(*xs)
    dout = torch.randn_like(out)
    del out

    def fb():
        o = f(*xs)
        torch.autograd.grad(o, xs, dout)

    t_fb = bench(fb, rep)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fb()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return t_f, t_fb, peak


_SDPA_CACHE: dict = {}


def sdpa(n_eq, d, rep, backend):
    """(fwd ms, fwd+bwd ms, peak MiB) of causal SDPA at N_eq. backend "default": torch's own dispatch (with torch 2.11
    on an H200 it ran at 472 / 596 TFLOP/s forward at D = 64 / 128, about docs/REFERENCE.md's H100 anchors; which
    backend it picked was not recorded); "flash": the FlashAttention-2 backend forced (300 / 337 there). Ratios use
    the faster."""
    key = (n_eq, d, backend)
    if key not in _SDPA_CACHE:
        from contextlib import nullcontext

        from torch.nn.attention import SDPBackend, sdpa_kernel

        xs = [torch.randn(B, H, n_eq, d, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3)]

        def f(q, k, v):
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION) if backend == "flash" else nullcontext():
                return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)

        _SDPA_CACHE[key] = time_fwd_bwd(f, xs, rep)
    return _SDPA_CACHE[key]


def load_package():
    """The simplicial-attention 0.1.6 Triton kernel module, or None (with the reason printed)."""
    try:
        spec = importlib.util.find_spec("simplicial_attention")
        if spec is None:
            print("# simplicial-attention: not installed (carry .whl, see benchmarks/gpu_check.sh)")
            return None
        pkg = types.ModuleType("simplicial_attention")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["simplicial_attention"] = pkg
        mha = types.ModuleType("simplicial_attention.simplicial_mha")
        mha.HigherOrderAttention = object  # only its class definition at the end of the module needs the name
        sys.modules["simplicial_attention.simplicial_mha"] = mha
        return importlib.import_module("simplicial_attention.triton_two_simplicial_attention")
    except Exception as exc:  # noqa: BLE001 - a comparison only
        print(f"# simplicial-attention: failed to load: {exc!r}")
        return None


def row(n, d, w1, w2, ratio, pkg, rep):
    hkv = H // ratio
    p = valid_triples(n, w1, w2)
    fl = 4 * B * H * d * p
    xs = inputs(n, H, hkv, d)
    f = lambda *a: two_simplicial_attention(*a, w1, w2, backend="triton")  # noqa: E731
    t_f, t_fb, mem = time_fwd_bwd(f, xs, rep)
    n_eq = sdpa_equal_length(n, w1, w2)
    fl_s = sdpa_flops(n_eq, d)
    r = dict(N=n, D=d, w1=w1, w2=w2, gqa=ratio, fwd_ms=t_f, fb_ms=t_fb,
             fwd_tf=fl / t_f / 1e9, fb_tf=3.5 * fl / t_fb / 1e9, mem=mem, n_eq=n_eq)
    for backend in ("default", "flash"):
        s_f, s_fb, s_mem = sdpa(n_eq, d, rep, backend)
        r[f"{backend}_fwd_tf"], r[f"{backend}_fb_tf"] = fl_s / s_f / 1e9, 3.5 * fl_s / s_fb / 1e9
        r["s_mem"] = min(s_mem, r.get("s_mem", s_mem))
    r["s_fwd_tf"] = max(r["default_fwd_tf"], r["flash_fwd_tf"])
    r["s_fb_tf"] = max(r["default_fb_tf"], r["flash_fb_tf"])
    r["vs_s_fwd"] = r["fwd_tf"] / r["s_fwd_tf"]
    r["vs_s_fb"] = r["fb_tf"] / r["s_fb_tf"]
    r["pk_fwd_tf"] = r["pk_fb_tf"] = None
    if pkg is not None and d == 64 and w2 <= 32:
        def g(q, k1, k2, v1, v2):
            return pkg.sliding_two_simplicial_attn(q, (k1, k2), (v1, v2), w1=w1, w2=w2)

        try:
            with torch.no_grad():
                pk_f = bench(lambda: g(*xs), max(20, rep // 4))
            r["pk_fwd_tf"] = fl / pk_f / 1e9
        except Exception as exc:  # noqa: BLE001
            print(f"# package fwd failed at N={n} w=({w1},{w2}) gqa={ratio}: {type(exc).__name__}: {str(exc)[:200]}")
        try:
            out = g(*xs)
            dout = torch.randn_like(out)
            pk_fb = bench(lambda: torch.autograd.grad(g(*xs), xs, dout), max(20, rep // 4))
            r["pk_fb_tf"] = 3.5 * fl / pk_fb / 1e9
        except Exception as exc:  # noqa: BLE001
            print(f"# package fwd+bwd failed at N={n} w=({w1},{w2}) gqa={ratio}: {type(exc).__name__}: {str(exc)[:200]}")
    del xs
    torch.cuda.empty_cache()
    return r


def fmt(x, spec=".0f"):
    return "-" if x is None else format(x, spec)


HEADER = ("| N | D | w1 | w2 | GQA | ours fwd ms | ours fwd TF/s | ours f+b ms | ours f+b TF/s | SDPA N_eq "
          "| SDPA default fwd / f+b TF/s | SDPA flash fwd / f+b TF/s | fwd ours/SDPA | f+b ours/SDPA "
          "| pkg fwd TF/s | pkg f+b TF/s | fwd ours/pkg | f+b ours/pkg | ours peak MiB | SDPA peak MiB |")


def print_row(r):
    pf = None if r["pk_fwd_tf"] is None else r["fwd_tf"] / r["pk_fwd_tf"]
    pb = None if r["pk_fb_tf"] is None else r["fb_tf"] / r["pk_fb_tf"]
    print(f"| {r['N']} | {r['D']} | {r['w1']} | {r['w2']} | {r['gqa']} | {r['fwd_ms']:.3f} | {r['fwd_tf']:.0f} "
          f"| {r['fb_ms']:.3f} | {r['fb_tf']:.0f} | {r['n_eq']} "
          f"| {r['default_fwd_tf']:.0f} / {r['default_fb_tf']:.0f} "
          f"| {r['flash_fwd_tf']:.0f} / {r['flash_fb_tf']:.0f} "
          f"| {r['vs_s_fwd']:.2f} | {r['vs_s_fb']:.2f} | {fmt(r['pk_fwd_tf'], '.1f')} | {fmt(r['pk_fb_tf'], '.1f')} "
          f"| {fmt(pf, '.1f')} | {fmt(pb, '.1f')} | {r['mem']:.0f} | {r['s_mem']:.0f} |", flush=True)


def sweep_variants(kind: str, d: int) -> list:
    """The launches a sweep times for pass `kind` at head dim d in bf16: every row of the plan's table that can run
    them (triton_kernels/plan.py; a Gluon row only on Hopper), each a (kernel, config) Launch. These are the configs a
    default reaches at some window; alternatives that no default reaches are in git history (kernel_notes.md)."""
    from triton_kernels.plan import Launch, table

    return [Launch(r["kernel"], r["config"]) for r in table()
            if r["pass_"] == kind and (r["dims"] is None or d in r["dims"])
            and (r["dtypes"] is None or "bfloat16" in r["dtypes"])]


def variant_label(launch) -> str:
    """'triton_fwd 64x64 w4 s3 TMA RELOAD maxnreg=168': the kernel, blocks, warps, stages and the keys that are on."""
    cfg = dict(launch.config)
    flags = " ".join(k if v is True else f"{k}={v}" for k, v in cfg.items()
                     if k not in ("BLOCK_M", "BLOCK_N", "num_warps", "num_stages") and v)
    shape = f"{cfg['BLOCK_M']}x{cfg['BLOCK_N']} w{cfg['num_warps']}" + (f" s{cfg['num_stages']}"
                                                                       if "num_stages" in cfg else "")
    return f"{launch.kernel} {shape} {flags}".strip()


TARGET_SHAPE = (8192, 512, 32)  # (N, w1, w2) of issue 4's targets


def _compiled_info(kernels) -> str:
    """Registers per thread, spills and the PTX atomic instructions of compiled kernels ("a / b" for a config that
    launches two, SPLIT); blank where a launch did not return one."""
    if any(getattr(k, "n_regs", None) is None for k in kernels):
        return "- | - | -"
    atomics = sorted({m for k in kernels for m in re.findall(r"\b(?:red|atom)\.[\w.]+", k.asm.get("ptx", ""))})
    return " | ".join([" / ".join(str(k.n_regs) for k in kernels), " / ".join(str(k.n_spills) for k in kernels),
                       ", ".join(atomics) or "-"])


def sweep(rep, kinds=("fwd", "bwd_dq", "bwd_dk1"), shape=TARGET_SHAPE):
    """Every launch the plan's table has for each pass at one shape (bf16, B=4, H=8, (N, w1, w2), the target by
    default), each kernel timed alone and checked against the default plan's outputs. A config whose resident window
    does not fit these windows is a row that says so."""
    from triton_kernels import attention
    from triton_kernels.plan import make_plan
    from triton_kernels.triton_common import backward_delta

    n, w1, w2 = shape
    fl = 4 * B * H * valid_triples(n, w1, w2)
    for d in (64, 128):
        xs = inputs(n, H, H, d, requires_grad=False)
        scale = 1 / math.sqrt(d)
        plan = make_plan(*xs, w1, w2)
        out_ref, lse = attention.forward(*xs, w1, w2, scale, plan)
        dout = torch.randn_like(out_ref)
        g_ref = attention.backward(dout, *xs, out_ref, lse, w1, w2, scale, plan)
        delta = backward_delta(dout, out_ref, False)
        print(f"\n### sweep N={n} (w1, w2)=({w1}, {w2}) D={d}: TF/s of each pass counts fwd FLOPs for fwd and for "
              f"each of the two backward kernels 1.25x fwd (their sum = the 2.5x of the convention); rel err vs the "
              f"default plan ({plan.fwd.kernel}, {plan.bwd_dq.kernel}, {plan.bwd_dk1.kernel})")
        print("| pass | kernel BLOCK_MxBLOCK_N warps stages keys | ms | TF/s | rel err | regs | spills | atomics |")
        print("|---|---|---|---|---|---|---|---|")
        for kind in kinds:
            for v in sweep_variants(kind, d):
                launcher = attention.launcher(v.kernel)
                if kind == "fwd":
                    def run():
                        return launcher(*xs, w1, w2, scale, v.config)
                    refs, work = [out_ref], fl * d
                elif kind == "bwd_dq":
                    def run():
                        return launcher(dout, *xs, lse, delta, w1, w2, scale, v.config)
                    refs, work = [g_ref[0], g_ref[2], g_ref[4]], 1.25 * fl * d
                else:
                    def run():
                        return launcher(dout, *xs, lse, delta, w1, w2, scale, v.config)
                    refs, work = [g_ref[1], g_ref[3]], 1.25 * fl * d
                try:
                    *outs, kernels = run()
                    outs = outs[:1] if kind == "fwd" else outs
                    err = max(((a.float() - r.float()).norm() / r.float().norm()).item() for a, r in zip(outs, refs))
                    ms = bench(run, rep)
                    print(f"| {kind} | {variant_label(v)} | {ms:.3f} | {work / ms / 1e9:.0f} | {err:.1e} "
                          f"| {_compiled_info(kernels)} |", flush=True)
                except Exception as exc:  # noqa: BLE001 - a launch that does not apply here is a row
                    print(f"| {kind} | {variant_label(v)} | failed: {type(exc).__name__}: {str(exc)[:120]} | | | | | |",
                          flush=True)
        del xs
        torch.cuda.empty_cache()


def parse_shape(ap, text: str) -> tuple[int, int, int]:
    """'8192,256,64' -> (8192, 256, 64); anything else is a usage error that names the value."""
    try:
        n, w1, w2 = (int(x) for x in text.split(","))
    except ValueError:
        ap.error(f"--shape {text!r}: expected N,W1,W2 (three integers, e.g. 8192,512,32)")
    if min(n, w1, w2) < 1:
        ap.error(f"--shape {text!r}: N, w1 and w2 must be positive")
    return n, w1, w2


def streams(rep, rounds=3) -> None:
    """Forward+backward at the target shape with the backward's dQ and dK1 kernels on one stream and on two
    (KernelPlan.backward_streams), alternating in each round so that clock drift hits both alike."""
    from triton_kernels.attention import simplicial_attention
    from triton_kernels.plan import make_plan

    print("| D | round | f+b one stream ms | f+b two streams ms | ratio |")
    print("|---|---|---|---|---|")
    n, w1, w2 = TARGET_SHAPE
    for d in GRID_D:
        xs = inputs(n, H, H, d)
        dout = torch.randn_like(xs[0])
        plan = make_plan(*xs, w1, w2)
        for r in range(rounds):
            times = []
            for on in (False, True):
                p = plan.replace(backward_streams=on)
                times.append(triton.testing.do_bench(
                    lambda: simplicial_attention(*xs, w1, w2, plan=p).backward(dout), warmup=25, rep=rep,
                    grad_to_none=xs))
            print(f"| {d} | {r} | {times[0]:.3f} | {times[1]:.3f} | {times[0] / times[1]:.3f} |", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", action="store_true", help="only the target shape N=8192, (512, 32), GQA 1")
    ap.add_argument("--sweep", action="store_true", help="launch-config variants at the target shape")
    ap.add_argument("--rep", type=int, default=100, help="do_bench rep (ms)")
    ap.add_argument("--no-package", action="store_true")
    ap.add_argument("--streams", action="store_true",
                    help="f+b at the target shape with the backward's kernels on one stream vs two")
    ap.add_argument("--kinds", default="fwd,bwd_dq,bwd_dk1", help="with --sweep: which kernels to sweep")
    ap.add_argument("--shape", action="append", metavar="N,W1,W2",
                    help="with --sweep: sweep at this (N, w1, w2) instead of the target (repeatable)")
    args = ap.parse_args(argv)
    kinds = tuple(args.kinds.split(","))
    if set(kinds) - {"fwd", "bwd_dq", "bwd_dk1"}:
        ap.error(f"--kinds {args.kinds!r}: each must be one of fwd, bwd_dq, bwd_dk1")
    shapes = [parse_shape(ap, text) for text in args.shape] if args.shape else [TARGET_SHAPE]
    if not torch.cuda.is_available():
        print("bench_attention.py needs a CUDA GPU")
        return 1
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} | {torch.cuda.get_device_name()} | "
          f"torch {torch.__version__} | triton {triton.__version__} | command: python benchmarks/bench_attention.py "
          f"{' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"# bf16, B={B}, H={H}; FLOPs fwd = 4*B*Hq*D*P (P exact valid triples), f+b = 3.5x fwd; SDPA = causal "
          f"at N_eq = sqrt(2 N w1 w2), torch's default dispatch and the flash backend, ratios vs the faster; "
          f"peak memory = max allocated during fwd+bwd above the inputs")
    if args.streams:
        streams(max(args.rep, 1000))  # a 15-35 ms call needs a second of samples per median to resolve 1%
        return 0
    if args.sweep:
        for shape in shapes:
            sweep(args.rep, kinds, shape)
        return 0
    pkg = None if args.no_package else load_package()
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    if args.target:
        shapes = [(8192, d, 512, 32, 1) for d in GRID_D]
    else:
        shapes = [(n, d, w1, w2, g) for n in GRID_N for d in GRID_D for (w1, w2) in GRID_W for g in GRID_GQA]
    for n, d, w1, w2, g in shapes:
        try:
            print_row(row(n, d, w1, w2, g, pkg, args.rep))
        except Exception as exc:  # noqa: BLE001
            print(f"| {n} | {d} | {w1} | {w2} | {g} | failed: {type(exc).__name__}: {str(exc)[:200]} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
