"""What a plain Triton causal attention forward reaches on this GPU: the ceiling for our 2-simplicial forward.

    python benchmarks/triton_flash_ceiling.py            # GPU: B=4, H=8, N_eq=16384, D in {64, 128}, bf16
    TRITON_INTERPRET=1 python benchmarks/triton_flash_ceiling.py --check   # CPU: correctness at a tiny shape

Our forward does, per (offset, K1 tile) step, FlashAttention's inner work (two GEMMs and one online-softmax tile) plus
amortised element-wise products (benchmarks/kernel_notes.md). So a FlashAttention forward written with the same
Triton idioms (tl.dot on pointer-loaded tiles, exp2 with the scale folded, no warp specialisation) bounds what the
2-simplicial forward can reach with them. This script times such a kernel at the FLOP-equal causal length next to
torch's SDPA (default dispatch and the flash backend) in one run, over a few launch configs. If the best config runs
near our 2-simplicial forward, the remaining gap to SDPA is Triton-vs-Hopper-specific code, not our algorithm.
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
from triton_kernels import simplicial_attention as _kernels  # noqa: E402,F401

_LOG2E = 1.4426950408889634


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
def _attend_tiles(acc, m_i, l_i, q, K, V, desc_k, desc_v, base, row0, offs_m, offs_n, offs_d, N, lo, hi,
                  HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr, TMA: tl.constexpr):
    """Key/value tiles starting in [lo, hi) with the online softmax; MASKED applies the causal mask."""
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        k = _load_tile(K, desc_k, base, row0, start_n, offs_n, offs_d, N, HEAD_DIM, BLOCK_N, MASKED, TMA)
        v = _load_tile(V, desc_v, base, row0, start_n, offs_n, offs_d, N, HEAD_DIM, BLOCK_N, MASKED, TMA)
        s = tl.dot(q, tl.trans(k))
        if MASKED:
            s = tl.where((cols[None, :] <= offs_m[:, None]) & (cols < N)[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    return acc, m_i, l_i


@triton.jit
def _causal_attention_fwd(Q, K, V, Out, desc_k, desc_v, N, qk_scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                          BLOCK_N: tl.constexpr, TMA: tl.constexpr):
    """One program: BLOCK_M queries of one (batch, head); inputs [B*H, N, D] contiguous. Off-diagonal key tiles are
    unmasked, the diagonal ones masked (the causal FlashAttention split)."""
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
    full_end = (start_m // BLOCK_N) * BLOCK_N  # key tiles entirely before the first query row: no mask
    acc, m_i, l_i = _attend_tiles(acc, m_i, l_i, q, K, V, desc_k, desc_v, base, row0, offs_m, offs_n, offs_d, N, 0,
                                  full_end, HEAD_DIM=HEAD_DIM, BLOCK_N=BLOCK_N, MASKED=False, TMA=TMA)
    acc, m_i, l_i = _attend_tiles(acc, m_i, l_i, q, K, V, desc_k, desc_v, base, row0, offs_m, offs_n, offs_d, N,
                                  full_end, tl.minimum(start_m + BLOCK_M, N), HEAD_DIM=HEAD_DIM, BLOCK_N=BLOCK_N,
                                  MASKED=True, TMA=TMA)
    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(Out + base + offs_m[:, None] * HEAD_DIM + offs_d[None, :], out.to(Out.dtype.element_ty),
             mask=m_ok[:, None])


LAUNCHED: dict = {}  # the last compiled kernel (registers, spills, IR)


def causal_attention(q, k, v, block_m=64, block_n=64, num_warps=4, num_stages=3, tma=False):
    """q, k, v: [B, H, N, D] contiguous -> [B, H, N, D], causal, scale 1/sqrt(D). tma: K/V through TMA descriptors."""
    b, h, n, d = q.shape
    out = torch.empty_like(q)
    grid = (triton.cdiv(n, block_m), b * h)
    descs = (None, None)
    if tma:
        descs = tuple(TensorDescriptor.from_tensor(x.view(b * h * n, d), [block_n, d]) for x in (k, v))
    LAUNCHED["fwd"] = _causal_attention_fwd[grid](q, k, v, out, *descs, n, _LOG2E / math.sqrt(d), HEAD_DIM=d,
                                                  BLOCK_M=block_m, BLOCK_N=block_n, TMA=tma, num_warps=num_warps,
                                                  num_stages=num_stages)
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="correctness only (works under TRITON_INTERPRET=1)")
    ap.add_argument("--rep", type=int, default=100)
    ap.add_argument("--dump-ir", metavar="DIR", help="write the TTGIR of the (64, 64, 4, 3) TMA kernel at D=64 here")
    args = ap.parse_args()
    if args.check:
        check()
        return 0
    if not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1":
        print("timing needs a CUDA GPU (use --check on CPU)")
        return 1
    check()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    b, h, n = 4, 8, 16384  # N_eq of the issue-4 target shape (N=8192, w1=512, w2=32)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
