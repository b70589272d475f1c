"""What a plain Triton causal attention forward reaches on this GPU: the ceiling for our 2-simplicial forward.

    python benchmarks/triton_flash_ceiling.py            # GPU: B=4, H=8, N_eq=16384, D in {64, 128}, bf16
    TRITON_INTERPRET=1 python benchmarks/triton_flash_ceiling.py --check   # CPU: correctness at a tiny shape

Our forward does, per (offset, K1 tile) step, FlashAttention's inner work (two GEMMs and one online-softmax tile) plus
amortised element-wise products (benchmarks/kernel_notes.md). So a FlashAttention forward written with the same
Triton idioms (tl.dot on pointer-loaded tiles, exp2 with the scale folded, no warp specialisation) bounds what the
2-simplicial forward can reach with them. This script times such a kernel at the FLOP-equal causal length next to
torch's SDPA (default dispatch and the flash backend) in one run, over a few launch configs. If the best config runs
near our 2-simplicial forward, the remaining gap to SDPA is Triton-vs-Hopper-specific code, not our algorithm.

    python benchmarks/triton_flash_ceiling.py --ablation   # GPU: the table above, then the ablation table

The ablation attributes the gap between this kernel (0.9-1.0x SDPA) and our forward (~0.5x) by adding our kernel's
structural burdens to it one at a time (constexpr flags, all off by default, so the table above is unchanged):
EXTRA_ACC=P a second fp32 accumulator acc_t for P @ V, folded into acc as acc * scale_t + acc_t * G every P key
tiles and at the end (our per-offset acc_t and V2 fold); MASK_PERIOD=P a full element-wise mask on 2 of every P
interior tiles that is always true (our window-edge tiles, 2 of 9); QK2 the query operand re-formed as
(reloaded Q * G' * scale) every P steps (our per-offset Q * K2_t). G, G' are the V, K rows i - t of query i in group
t (our V2 / K2 rows). The flags change the math (except MASK_PERIOD), so only flags-off is checked against SDPA on the
GPU; --check compares every combination with a float64 model of the ablated math.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
# importing the kernels module under TRITON_INTERPRET=1 fixes the interpreter's runtime loop bounds (NumPy >= 2.3)
from triton_kernels.triton_common import LOG2E  # noqa: E402 - its import fixes the interpreter's loop bounds too

_LOG2E = LOG2E.value


@triton.jit
def _load_tile(X, desc, base, row0, first, offs_r, offs_d, N, HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr,
               MASKED: tl.constexpr, TMA: tl.constexpr):
    """[BLOCK, HEAD_DIM] rows first.. of one (batch, head): a TMA descriptor load over the [B*H*N, D] view (rows past
    this head's N belong to the next one; the causal mask drops them), or pointer loads (masked past N if MASKED)."""
    if TMA:
        return desc.load([row0 + first, 0])
    else:
        rows = first + offs_r
        if MASKED:
            return tl.load(X + base + rows[:, None] * HEAD_DIM + offs_d[None, :], mask=(rows < N)[:, None], other=0.0)
        else:
            return tl.load(X + base + rows[:, None] * HEAD_DIM + offs_d[None, :])


@triton.jit
def _load_rows(G, desc, base, bh, first, offs_r, offs_d, N, HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr,
               TMA: tl.constexpr):
    """[BLOCK, HEAD_DIM] rows first.. of one (batch, head), zero outside [0, N): the ablation's stand-in for our
    per-offset K2 / V2 rows (TMA: a [B*H, N, D] descriptor, which reads rows outside the head as zero, like ours)."""
    if TMA:
        return tl.reshape(desc.load([bh, first, 0]), [BLOCK, HEAD_DIM])
    else:
        rows = first + offs_r
        ok = (rows >= 0) & (rows < N)
        return tl.load(G + base + rows[:, None] * HEAD_DIM + offs_d[None, :], mask=ok[:, None], other=0.0)


@triton.jit
def _attend_tiles(acc, acc_t, scale_t, m_i, l_i, q, Q, K, V, G, GQ, desc_k, desc_v, desc_g, desc_gq, base, bh, row0,
                  start_m, offs_m, offs_n, offs_d, m_ok, N, lo, hi, qk_scale, mask_lim,
                  HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr,
                  TMA: tl.constexpr, EXTRA_ACC: tl.constexpr, MASK_PERIOD: tl.constexpr, QK2: tl.constexpr,
                  QK2_PERIOD: tl.constexpr):
    """Key/value tiles starting in [lo, hi) with the online softmax; MASKED applies the causal mask. The ablation
    flags (module docstring) act on the tile index idx within the row's loop."""
    if EXTRA_ACC > 0:
        last = tl.cdiv(tl.minimum(start_m + BLOCK_M, N), BLOCK_N) - 1  # the row's last key tile: fold there too
    for start_n in range(lo, hi, BLOCK_N):
        idx = start_n // BLOCK_N
        cols = start_n + offs_n
        if QK2:
            if idx % QK2_PERIOD == 0:  # our per-offset qk2 = Q * K2_t * scale, from a re-read Q (RELOAD)
                q_r = tl.load(Q + base + offs_m[:, None] * HEAD_DIM + offs_d[None, :], mask=m_ok[:, None], other=0.0)
                gq = _load_rows(GQ, desc_gq, base, bh, start_m - idx // QK2_PERIOD, offs_m - start_m, offs_d, N,
                                HEAD_DIM, BLOCK_M, TMA)
                q = (q_r.to(tl.float32) * (gq.to(tl.float32) * qk_scale)).to(q.dtype)
        k = _load_tile(K, desc_k, base, row0, start_n, offs_n, offs_d, N, HEAD_DIM, BLOCK_N, MASKED, TMA)
        v = _load_tile(V, desc_v, base, row0, start_n, offs_n, offs_d, N, HEAD_DIM, BLOCK_N, MASKED, TMA)
        s = tl.dot(q, tl.trans(k))
        if MASKED:
            s = tl.where((cols[None, :] <= offs_m[:, None]) & (cols < N)[None, :], s, float("-inf"))
        if MASK_PERIOD > 0:
            if not MASKED:  # interior tiles only (the diagonal ones pay the causal mask already)
                if idx % MASK_PERIOD < 2:  # always true here (0 <= i - j < N < mask_lim), but not to the compiler
                    diff = offs_m[:, None] - cols[None, :]
                    s = tl.where(diff.to(tl.uint32, bitcast=True) < mask_lim, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        if EXTRA_ACC > 0:  # our acc_t: a group's first tile starts it from zero and its owed rescaling at 1
            first = idx % EXTRA_ACC == 0
            acc_t = acc_t * tl.where(first, 0.0, alpha)[:, None] + tl.dot(p.to(v.dtype), v)
            scale_t = tl.where(first, 1.0, scale_t) * alpha
            if (idx % EXTRA_ACC == EXTRA_ACC - 1) | (idx == last):  # the group's last tile: fold, like our V2 fold
                g = _load_rows(G, desc_g, base, bh, start_m - idx // EXTRA_ACC, offs_m - start_m, offs_d, N,
                               HEAD_DIM, BLOCK_M, TMA)
                acc = acc * scale_t[:, None] + acc_t * g.to(tl.float32)
        else:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    return acc, acc_t, scale_t, m_i, l_i, q


@triton.jit
def _causal_attention_fwd(Q, K, V, Out, G, GQ, desc_k, desc_v, desc_g, desc_gq, N, qk_scale, mask_lim,
                          HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, TMA: tl.constexpr,
                          EXTRA_ACC: tl.constexpr = 0, MASK_PERIOD: tl.constexpr = 0, QK2: tl.constexpr = False,
                          QK2_PERIOD: tl.constexpr = 8):
    """One program: BLOCK_M queries of one (batch, head); inputs [B*H, N, D] contiguous. Off-diagonal key tiles are
    unmasked, the diagonal ones masked (the causal FlashAttention split). G, GQ, desc_g, desc_gq, mask_lim: only for
    the ablation flags; QK2_PERIOD: steps between QK2's re-formed query operands."""
    pid_m = tl.program_id(0)
    row0 = tl.program_id(1) * N
    bh = tl.program_id(1).to(tl.int64)
    start_m = pid_m * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    base = bh * N * HEAD_DIM
    m_ok = offs_m < N
    q = tl.load(Q + base + offs_m[:, None] * HEAD_DIM + offs_d[None, :], mask=m_ok[:, None], other=0.0)
    q = (q.to(tl.float32) * qk_scale).to(Q.dtype.element_ty)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    acc_t = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)  # EXTRA_ACC only (else unused and dropped)
    scale_t = tl.full([BLOCK_M], 1.0, dtype=tl.float32)
    lim = mask_lim.to(tl.uint32)
    full_end = (start_m // BLOCK_N) * BLOCK_N  # key tiles entirely before the first query row: no mask
    acc, acc_t, scale_t, m_i, l_i, q = _attend_tiles(
        acc, acc_t, scale_t, m_i, l_i, q, Q, K, V, G, GQ, desc_k, desc_v, desc_g, desc_gq, base, tl.program_id(1),
        row0, start_m, offs_m, offs_n, offs_d, m_ok, N, 0, full_end, qk_scale, lim,
        HEAD_DIM=HEAD_DIM, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, MASKED=False, TMA=TMA, EXTRA_ACC=EXTRA_ACC,
        MASK_PERIOD=MASK_PERIOD, QK2=QK2, QK2_PERIOD=QK2_PERIOD)
    acc, acc_t, scale_t, m_i, l_i, q = _attend_tiles(
        acc, acc_t, scale_t, m_i, l_i, q, Q, K, V, G, GQ, desc_k, desc_v, desc_g, desc_gq, base, tl.program_id(1),
        row0, start_m, offs_m, offs_n, offs_d, m_ok, N, full_end, tl.minimum(start_m + BLOCK_M, N), qk_scale, lim,
        HEAD_DIM=HEAD_DIM, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, MASKED=True, TMA=TMA, EXTRA_ACC=EXTRA_ACC,
        MASK_PERIOD=MASK_PERIOD, QK2=QK2, QK2_PERIOD=QK2_PERIOD)
    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(Out + base + offs_m[:, None] * HEAD_DIM + offs_d[None, :], out.to(Out.dtype.element_ty),
             mask=m_ok[:, None])


LAUNCHED: dict = {}  # the last compiled kernel (registers, spills, IR)


def causal_attention(q, k, v, block_m=64, block_n=64, num_warps=4, num_stages=3, tma=False, extra_acc=0,
                     mask_period=0, qk2=False):
    """q, k, v: [B, H, N, D] contiguous -> [B, H, N, D], causal, scale 1/sqrt(D). tma: K/V through TMA descriptors.
    extra_acc, mask_period, qk2: the ablation flags (module docstring); G = v, G' = k."""
    b, h, n, d = q.shape
    out = torch.empty_like(q)
    grid = (triton.cdiv(n, block_m), b * h)
    descs = (None, None)
    gdescs = (None, None)
    if tma:
        descs = tuple(TensorDescriptor.from_tensor(x.view(b * h * n, d), [block_n, d]) for x in (k, v))
        if extra_acc or qk2:
            gdescs = tuple(TensorDescriptor.from_tensor(x.view(b * h, n, d), [1, block_m, d]) for x in (v, k))
    LAUNCHED["fwd"] = _causal_attention_fwd[grid](q, k, v, out, v, k, *descs, *gdescs, n, _LOG2E / math.sqrt(d),
                                                  n + 1, HEAD_DIM=d, BLOCK_M=block_m, BLOCK_N=block_n, TMA=tma,
                                                  EXTRA_ACC=extra_acc, MASK_PERIOD=mask_period, QK2=qk2,
                                                  QK2_PERIOD=extra_acc or 8,
                                                  num_warps=num_warps, num_stages=num_stages)
    return out


def check() -> None:
    """Against SDPA's math in float64 on a tiny shape whose N is not a multiple of the block (fp32 inputs)."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = (torch.randn(2, 3, 45, 16, generator=g).to(dev) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True)
    for tma in (False, True):
        out = causal_attention(q, k, v, block_m=16, block_n=16, num_warps=1, num_stages=1, tma=tma)
        err = ((out.double() - ref).norm() / ref.norm()).item()
        tol = 1e-4 if dev == "cpu" else 5e-3  # tl.dot on fp32 runs as TF32 on the GPU
        print(f"check (tma={tma}): relative error vs SDPA (float64) {err:.2e} (tolerance {tol:.0e})")
        assert err < tol, err


def ablation_reference(q, k, v, block_n, extra_acc=0, mask_period=0, qk2=False):
    """The ablated kernel's math in float64 (so --check tests that each burden does what the docstring says): query
    i, key tile idx; QK2 logits (q_i * k_{i-t}) . k_j with t = idx // (extra_acc or 8); EXTRA_ACC output
    sum_j S_ij v_j * v_{i-t'} with t' = idx // extra_acc (rows before 0 are zero); MASK_PERIOD changes nothing."""
    del mask_period  # always-true mask
    q, k, v = q.double(), k.double(), v.double()
    n = q.shape[2]
    i = torch.arange(n, device=q.device)
    tile = i // block_n  # key j's tile index

    def shifted(x, period):  # [B, H, N_i, N_j, D]: row i - (tile(j) // period) of x, zero before row 0
        r = i[:, None] - (tile // period)[None, :]
        return x[:, :, r.clamp(min=0)] * (r >= 0)[..., None].to(x.dtype)

    if qk2:
        s = torch.einsum("bhid,bhijd,bhjd->bhij", q, shifted(k, extra_acc or 8), k)
    else:
        s = q @ k.transpose(-1, -2)
    s = (s / math.sqrt(q.shape[-1])).masked_fill(i[None, :] > i[:, None], float("-inf"))
    p = torch.softmax(s, dim=-1)
    if extra_acc:
        return torch.einsum("bhij,bhjd,bhijd->bhid", p, v, shifted(v, extra_acc))
    return p @ v


def check_ablation() -> None:
    """Every combination of the ablation flags (short periods, so the tiny shape has several groups and masked tiles)
    against ablation_reference: finite, and flags-off / MASK_PERIOD-only also equal to SDPA and to each other."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator(device="cpu").manual_seed(1)
    q, k, v = (torch.randn(2, 2, 93, 16, generator=g).to(dev) for _ in range(3))
    sdpa = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True)
    tol = 1e-4 if dev == "cpu" else 5e-3
    for tma in (False, True):
        plain = None
        for extra_acc in (0, 3):
            for mask_period in (0, 3):
                for qk2 in (False, True):
                    flags = dict(extra_acc=extra_acc, mask_period=mask_period, qk2=qk2)
                    out = causal_attention(q, k, v, 16, 16, 1, 1, tma, **flags)
                    assert torch.isfinite(out).all(), flags
                    ref = ablation_reference(q, k, v, 16, **flags)
                    err = ((out.double() - ref).norm() / ref.norm()).item()
                    line = f"check ablation (tma={tma}, {flags}): rel err vs float64 model {err:.2e}"
                    if not extra_acc and not qk2:
                        err_sdpa = ((out.double() - sdpa).norm() / sdpa.norm()).item()
                        line += f", vs SDPA {err_sdpa:.2e}"
                        assert err_sdpa < tol, (flags, err_sdpa)
                        if mask_period:
                            assert torch.equal(out, plain), "the always-true mask changed the output"
                            line += ", bitwise equal to flags-off"
                        plain = out
                    print(line)
                    assert err < tol, (flags, err)


ABLATION_CONFIGS = {64: [(64, 64, 4, 3), (64, 128, 4, 3)], 128: [(64, 64, 4, 3), (128, 128, 8, 3)]}
ABLATION_ROWS = [("off", {}), ("EXTRA_ACC=9", dict(extra_acc=9)), ("MASK_PERIOD=9", dict(mask_period=9)),
                 ("QK2, EXTRA_ACC=9", dict(extra_acc=9, qk2=True)),
                 ("all three", dict(extra_acc=9, mask_period=9, qk2=True))]


def ablation(b: int, h: int, n: int, rep: int, rows=None) -> None:
    """Our forward's burdens added one at a time to the TMA kernel, each timed next to flags-off in the same run.
    rows: indices into ABLATION_ROWS (default all; flags-off always runs first)."""
    chosen = [ABLATION_ROWS[0]] + [r for i, r in enumerate(ABLATION_ROWS) if i and (rows is None or i in rows)]
    print()
    print("## Ablation: our forward's burdens added to the TMA kernel (period 9: our K1 tiles per offset at w1=512, "
          "BLOCK_N=64, 2 of which cross a window edge)")
    print("# ms: do_bench median; TFLOP/s counts the causal FLOPs only; vs off = t(off) / t (below 1: slower); "
          "flags-on outputs are only checked finite (their math differs)")
    print("| D | flags | (BLOCK_M, BLOCK_N, warps, stages) | ms | TFLOP/s | vs off | regs | spills |")
    print("|---|---|---|---|---|---|---|---|")
    for d, configs in ABLATION_CONFIGS.items():
        q, k, v = (torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        flops = 4 * b * h * d * n * (n + 1) / 2
        ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True).float()
        for bm, bn, nw, ns in configs:
            t_off = None
            for name, flags in chosen:
                try:
                    out = causal_attention(q, k, v, bm, bn, nw, ns, True, **flags)
                    if not torch.isfinite(out).all():
                        raise RuntimeError("non-finite output")
                    if not flags:
                        err = ((out.float() - ref).norm() / ref.norm()).item()
                        if err > 2e-2:
                            raise RuntimeError(f"wrong output: rel err {err:.1e} vs SDPA")
                        name = f"off (rel err {err:.1e})"
                    t = triton.testing.do_bench(lambda: causal_attention(q, k, v, bm, bn, nw, ns, True, **flags),
                                                rep=rep, return_mode="median")
                    kern = LAUNCHED["fwd"]
                    t_off = t if not flags else t_off
                    ratio = f"{t_off / t:.2f}" if t_off else "-"
                    print(f"| {d} | {name} | {(bm, bn, nw, ns)} | {t:.3f} | {flops / t / 1e9:.0f} | {ratio} "
                          f"| {getattr(kern, 'n_regs', '?')} | {getattr(kern, 'n_spills', '?')} |", flush=True)
                except Exception as exc:  # noqa: BLE001 - a config may not fit in shared memory
                    print(f"| {d} | {name} | {(bm, bn, nw, ns)} | failed: {type(exc).__name__}: {str(exc)[:100]} "
                          f"| - | - | - | - |", flush=True)
        del q, k, v, ref
        torch.cuda.empty_cache()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="correctness only (works under TRITON_INTERPRET=1)")
    ap.add_argument("--rep", type=int, default=100)
    ap.add_argument("--dump-ir", metavar="DIR", help="write the TTGIR of the (64, 64, 4, 3) TMA kernel at D=64 here")
    ap.add_argument("--ablation", action="store_true", help="also time our forward's burdens one at a time (docstring)")
    ap.add_argument("--ablation-only", action="store_true", help="the ablation table without the ceiling table")
    ap.add_argument("--ablation-rows", help="comma-separated indices into ABLATION_ROWS (default: all)")
    args = ap.parse_args()
    if args.check:
        check()
        check_ablation()
        return 0
    if not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1":
        print("timing needs a CUDA GPU (use --check on CPU)")
        return 1
    check()
    if args.ablation or args.ablation_only:
        check_ablation()
    b, h, n = 4, 8, 16384  # N_eq of the issue-4 target shape (N=8192, w1=512, w2=32)
    rows = [int(i) for i in args.ablation_rows.split(",")] if args.ablation_rows else None
    if args.ablation_only:
        ablation(b, h, n, args.rep, rows)
        return 0
    from torch.nn.attention import SDPBackend, sdpa_kernel

    configs = [(64, 64, 4, 3, False), (64, 64, 4, 3, True), (128, 64, 8, 3, False), (128, 64, 8, 3, True),
               (128, 128, 8, 2, False), (128, 128, 8, 3, True), (128, 64, 4, 3, True), (64, 64, 4, 4, True)]
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} | {torch.cuda.get_device_name()} | torch "
          f"{torch.__version__} | triton {triton.__version__} | python benchmarks/triton_flash_ceiling.py")
    print(f"# bf16, B={b}, H={h}, N={n}, causal forward; FLOPs = 4*B*H*D*N(N+1)/2; do_bench medians")
    print("| D | kernel | (BLOCK_M, BLOCK_N, warps, stages) | ms | TFLOP/s | vs SDPA default |")
    print("|---|---|---|---|---|---|")
    for d in (64, 128):
        q, k, v = (torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        flops = 4 * b * h * d * n * (n + 1) / 2

        def sdpa_default():
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)

        def sdpa_flash():
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)

        ref = sdpa_default()
        t_def = triton.testing.do_bench(sdpa_default, rep=args.rep, return_mode="median")
        print(f"| {d} | SDPA default dispatch | - | {t_def:.3f} | {flops / t_def / 1e9:.0f} | 1.00 |", flush=True)
        t = triton.testing.do_bench(sdpa_flash, rep=args.rep, return_mode="median")
        print(f"| {d} | SDPA flash backend | - | {t:.3f} | {flops / t / 1e9:.0f} | {t_def / t:.2f} |", flush=True)
        for bm, bn, nw, ns, tma in configs:
            try:
                out = causal_attention(q, k, v, bm, bn, nw, ns, tma)
                err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
                t = triton.testing.do_bench(lambda: causal_attention(q, k, v, bm, bn, nw, ns, tma), rep=args.rep,
                                            return_mode="median")
                kern = LAUNCHED["fwd"]
                if args.dump_ir and d == 64 and tma and (bm, bn, nw, ns) == (64, 64, 4, 3):
                    os.makedirs(args.dump_ir, exist_ok=True)
                    with open(os.path.join(args.dump_ir, f"flash-fwd-D{d}-tma{int(tma)}.ttgir"), "w") as fh:
                        fh.write(kern.asm.get("ttgir", ""))
                print(f"| {d} | Triton causal ({'TMA' if tma else 'pointer'} loads, rel err {err:.1e}, "
                      f"{getattr(kern, 'n_regs', '?')} regs, {getattr(kern, 'n_spills', '?')} spills) "
                      f"| {(bm, bn, nw, ns)} | {t:.3f} "
                      f"| {flops / t / 1e9:.0f} | {t_def / t:.2f} |", flush=True)
            except Exception as exc:  # noqa: BLE001 - a config may not fit in shared memory
                print(f"| {d} | Triton causal (tma={tma}) | {(bm, bn, nw, ns)} | failed: {type(exc).__name__}: "
                      f"{str(exc)[:100]} | - | - |")
        del q, k, v
        torch.cuda.empty_cache()
    if args.ablation:
        ablation(b, h, n, args.rep, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
