"""Benchmark: our Triton 2-simplicial attention vs torch SDPA (FLOP-equal causal) vs `simplicial-attention` 0.1.6.

    python benchmarks/bench_attention.py                 # the full grid, one table (markdown) on stdout
    python benchmarks/bench_attention.py --target        # only B=4, H=8, N=8192, w1=512, w2=32, D in {64, 128}
    python benchmarks/bench_attention.py --sweep         # launch-config variants of each kernel at the target shape
    python benchmarks/bench_attention.py --sweep --baseline-module old.py   # ... timed next to an earlier kernels file
    python benchmarks/bench_attention.py --streams       # the backward's two kernels on one stream vs side by side

FLOPs (tensor-core convention, docs/REFERENCE.md section 2): forward = 4 * B * Hq * D * P with P the exact number of valid
(i, j, k) triples, sum_i min(i+1, w1) * min(i+1, w2); forward+backward = 3.5 x forward. SDPA runs causal attention at
N_eq = sqrt(2 * N * w1 * w2) (rounded to 128), which does the same tensor-core work, and is counted the same way:
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
from triton_kernels import simplicial_attention as sa  # noqa: E402
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
    on an H200 it ran at 472 / 596 TFLOP/s forward at D = 64 / 128, about docs/REFERENCE.md's H100 anchors; which backend it
    picked was not recorded); "flash": the FlashAttention-2 backend forced (300 / 337 there). Ratios use the faster."""
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


def load_module(path):
    """A kernels module from a file (an earlier version, e.g. `git show REV:triton_kernels/simplicial_attention.py`)."""
    spec = importlib.util.spec_from_file_location("baseline_simplicial_attention", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# Every flag a launch config can set, at its off value: a variant replaces the whole default config, so a flag it
# leaves out is off rather than inherited from the default (which would time a config other than its label).
_FLAGS_OFF = dict(TMA=False, RELOAD=False, SPLIT=False, DQ_ATOMIC=False, GLUON=False, PER_QUERY=False, QUERIES=None,
                  maxnreg=None)


def variant(block_m, block_n, warps, stages, **flags) -> dict:
    """One complete launch config for the sweep: blocks, warps, stages and flags (TMA, RELOAD, SPLIT, DQ_ATOMIC,
    GLUON, PER_QUERY with QUERIES, maxnreg)."""
    unknown = set(flags) - set(_FLAGS_OFF)
    if unknown:
        raise ValueError(f"variant: unknown flags {sorted(unknown)}; known: {sorted(_FLAGS_OFF)}")
    return dict(BLOCK_M=block_m, BLOCK_N=block_n, num_warps=warps, num_stages=stages, **{**_FLAGS_OFF, **flags})


def variant_label(cfg: dict) -> str:
    """'64x64 w4 s3 TMA RELOAD maxnreg=168': blocks, warps, stages and the flags that are on."""
    flags = " ".join(k if v is True else f"{k}={v}" for k, v in cfg.items()
                     if k not in ("BLOCK_M", "BLOCK_N", "num_warps", "num_stages") and v)
    return f"{cfg['BLOCK_M']}x{cfg['BLOCK_N']} w{cfg['num_warps']} s{cfg['num_stages']} {flags}".strip()


def _per_query(d: int) -> list[dict]:
    """The per-query forward's variants (simplicial_attention._simplicial_fwd_per_query; BLOCK_M = k2 rows per step,
    QUERIES = queries per program)."""
    pq = dict(PER_QUERY=True, TMA=True, QUERIES=16)
    if d == 64:
        return [variant(64, 64, 4, 3, maxnreg=168, GLUON=True, **pq), variant(64, 64, 4, 3, maxnreg=168, **pq),
                variant(64, 64, 4, 3, maxnreg=168, **dict(pq, QUERIES=64)), variant(64, 64, 4, 3, **pq)]
    return [variant(64, 64, 4, 3, GLUON=True, **pq), variant(64, 64, 4, 3, **pq)]


_TR = dict(TMA=True, RELOAD=True)
# Variants per kernel and head dim. maxnreg caps the registers per thread: at <= 168 (4 warps) three programs fit an
# SM's 64K registers, at <= 128 four (8 warps: two). benchmarks/compile_report.py lists each one's registers and
# spills without a GPU, so only configs that fit go to the device. A GLUON=True variant runs simplicial_attention's
# GLUON_*_CONFIG kernel where it applies (Hopper); its blocks, warps and stages are those of the tl fallback.
SWEEP_VARIANTS = {
    "fwd": {
        64: [variant(64, 64, 4, 3, maxnreg=168, **_TR), variant(64, 32, 4, 3, maxnreg=128, **_TR),
             variant(64, 32, 4, 2, maxnreg=128, **_TR), variant(64, 32, 4, 3, maxnreg=168, **_TR),
             variant(64, 128, 4, 3, **_TR), variant(128, 32, 8, 3, maxnreg=128, **_TR),
             variant(64, 64, 4, 4, maxnreg=168, **_TR), variant(64, 32, 4, 4, maxnreg=128, **_TR),
             *_per_query(64)],
        128: [variant(64, 64, 4, 3, GLUON=True, **_TR), variant(64, 64, 4, 3, **_TR), variant(64, 32, 4, 3, **_TR),
              variant(128, 64, 8, 3, **_TR), variant(64, 64, 4, 2, **_TR), *_per_query(128)],
    },
    "bwd_dq": {
        64: [variant(64, 64, 4, 3, GLUON=True, **_TR), variant(64, 64, 4, 3, **_TR)],
        128: [variant(64, 64, 4, 2, SPLIT=True, DQ_ATOMIC=True, GLUON=True, **_TR),
              variant(64, 64, 4, 2, SPLIT=True, DQ_ATOMIC=True, **_TR)],
    },
    "bwd_dk1": {64: [variant(64, 64, 4, 2, GLUON=True), variant(64, 64, 4, 2), variant(32, 128, 8, 2)],
                128: [variant(32, 128, 8, 2, GLUON=True), variant(32, 128, 8, 2), variant(64, 64, 4, 2)]},
}
TARGET_SHAPE = (8192, 512, 32)  # (N, w1, w2) of issue 4's targets


def _compiled_info(*kernels) -> str:
    """Registers per thread, spills and the PTX atomic instructions of compiled kernels ("a / b" for a config that
    launches two, SPLIT); blank where a launch did not return one."""
    if any(getattr(k, "n_regs", None) is None for k in kernels):
        return "- | - | -"
    atomics = sorted({m for k in kernels for m in re.findall(r"\b(?:red|atom)\.[\w.]+", k.asm.get("ptx", ""))})
    return " | ".join([" / ".join(str(k.n_regs) for k in kernels), " / ".join(str(k.n_spills) for k in kernels),
                       ", ".join(atomics) or "-"])


def sweep(rep, baseline=None, dump_ir=None, kinds=("fwd", "bwd_dq", "bwd_dk1"), shape=TARGET_SHAPE):
    """Launch-config variants of each kernel at one shape (bf16, B=4, H=8, (N, w1, w2), the target by default), each
    kernel timed alone and checked against the default config; with `baseline` (a kernels module loaded from a file)
    that module's forward and whole backward are timed in the same run and the errors are taken against its outputs.
    dump_ir: a folder for the TTGIR of forward variants 0 and 3 at D=64."""
    n, w1, w2 = shape
    fl = 4 * B * H * valid_triples(n, w1, w2)
    for d in (64, 128):
        xs = inputs(n, H, H, d, requires_grad=False)
        scale = 1 / math.sqrt(d)
        sa.CONFIG_OVERRIDE.clear()
        ref = baseline if baseline is not None else sa
        out_ref, lse = ref._forward(*xs, w1, w2, scale)
        dout = torch.randn_like(out_ref)
        g_ref = ref._backward(dout, *xs, out_ref, lse, w1, w2, scale)
        delta = sa._backward_delta(dout, out_ref)
        print(f"\n### sweep N={n} (w1, w2)=({w1}, {w2}) D={d}: TF/s of each pass counts fwd FLOPs for fwd and for "
              f"each of the two backward kernels 1.25x fwd (their sum = the 2.5x of the convention); rel err vs "
              f"{'the baseline module' if baseline else 'the default config'}")
        print("| kernel | BLOCK_MxBLOCK_N warps stages flags | ms | TF/s | rel err | regs | spills | atomics |")
        print("|---|---|---|---|---|---|---|---|")
        if baseline is not None:
            t_f = bench(lambda: baseline._forward(*xs, w1, w2, scale), rep)
            t_b = bench(lambda: baseline._backward(dout, *xs, out_ref, lse, w1, w2, scale), rep)
            print(f"| baseline fwd | its default | {t_f:.3f} | {fl * d / t_f / 1e9:.0f} | 0 | - | - | - |")
            print(f"| baseline whole bwd | its default | {t_b:.3f} | {2.5 * fl * d / t_b / 1e9:.0f} | 0 | - | - | - |",
                  flush=True)
        for kind in kinds:
            for i, v in enumerate(SWEEP_VARIANTS[kind][d]):
                sa.CONFIG_OVERRIDE.clear()
                sa.CONFIG_OVERRIDE[kind] = dict(v)
                try:
                    if kind == "fwd":
                        def run():
                            return sa._forward(*xs, w1, w2, scale)[0]
                        refs, work = [out_ref], fl * d
                    elif kind == "bwd_dq":
                        def run():
                            return sa._backward_dq_dk2dv2(dout, *xs, lse, delta, w1, w2, scale)
                        refs, work = [g_ref[0], g_ref[2], g_ref[4]], 1.25 * fl * d
                    else:
                        def run():
                            return sa._backward_dk1dv1(dout, *xs, lse, delta, w1, w2, scale)
                        refs, work = [g_ref[1], g_ref[3]], 1.25 * fl * d
                    outs = run()
                    outs = [outs] if torch.is_tensor(outs) else list(outs)
                    err = max(((a.float() - r.float()).norm() / r.float().norm()).item() for a, r in zip(outs, refs))
                    ms = bench(run, rep)
                    kernel = sa.LAUNCHED.get(kind)
                    # SPLIT launches the dq kernel twice: the dQ/dK2 part, then the dV2 part
                    split = kind == "bwd_dq" and v.get("SPLIT")
                    info = _compiled_info(kernel, sa.LAUNCHED.get("bwd_dq_w")) if split else _compiled_info(kernel)
                    print(f"| {kind} | {variant_label(v)} | {ms:.3f} | {work / ms / 1e9:.0f} | {err:.1e} | {info} |",
                          flush=True)
                    if dump_ir and kind == "fwd" and i in (0, 3) and d == 64 and hasattr(kernel, "asm"):
                        os.makedirs(dump_ir, exist_ok=True)
                        tag = variant_label(v).replace(" ", "-").replace("=", "")  # no "=" in file names
                        with open(os.path.join(dump_ir, f"simplicial-fwd-D{d}-{tag}.ttgir"), "w") as fh:
                            fh.write(kernel.asm.get("ttgir", ""))
                except Exception as exc:  # noqa: BLE001
                    print(f"| {kind} | {variant_label(v)} | failed: {type(exc).__name__}: {str(exc)[:120]} | | | | | |",
                          flush=True)
        sa.CONFIG_OVERRIDE.clear()
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
    (simplicial_attention.BACKWARD_STREAMS), alternating in each round so that clock drift hits both alike."""
    print("| D | round | f+b one stream ms | f+b two streams ms | ratio |")
    print("|---|---|---|---|---|")
    try:
        for d in GRID_D:
            xs = inputs(TARGET_SHAPE[0], H, H, d)
            dout = torch.randn_like(xs[0])

            def fb():
                two_simplicial_attention(*xs, TARGET_SHAPE[1], TARGET_SHAPE[2]).backward(dout)

            for r in range(rounds):
                times = []
                for on in (False, True):
                    sa.BACKWARD_STREAMS = on
                    times.append(triton.testing.do_bench(fb, warmup=25, rep=rep, grad_to_none=xs))
                print(f"| {d} | {r} | {times[0]:.3f} | {times[1]:.3f} | {times[0] / times[1]:.3f} |", flush=True)
    finally:
        sa.BACKWARD_STREAMS = True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", action="store_true", help="only the target shape N=8192, (512, 32), GQA 1")
    ap.add_argument("--sweep", action="store_true", help="launch-config variants at the target shape")
    ap.add_argument("--rep", type=int, default=100, help="do_bench rep (ms)")
    ap.add_argument("--no-package", action="store_true")
    ap.add_argument("--streams", action="store_true",
                    help="f+b at the target shape with the backward's kernels on one stream vs two")
    ap.add_argument("--baseline-module", metavar="PATH",
                    help="with --sweep: also time this kernels file's defaults and check errors against it")
    ap.add_argument("--kinds", default="fwd,bwd_dq,bwd_dk1", help="with --sweep: which kernels to sweep")
    ap.add_argument("--shape", action="append", metavar="N,W1,W2",
                    help="with --sweep: sweep at this (N, w1, w2) instead of the target (repeatable)")
    ap.add_argument("--dump-ir", metavar="DIR",
                    help="with --sweep: write the TTGIR of forward variants 0 and 3 at D=64 here")
    args = ap.parse_args(argv)
    kinds = tuple(args.kinds.split(","))
    if set(kinds) - set(SWEEP_VARIANTS):
        ap.error(f"--kinds {args.kinds!r}: each must be one of {', '.join(SWEEP_VARIANTS)}")
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
        baseline = load_module(args.baseline_module) if args.baseline_module else None
        for shape in shapes:
            sweep(args.rep, baseline, args.dump_ir, kinds, shape)
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
