"""Triton (`tl`) backward for dQ, dK2 and dV2: the query frame of 2-simplicial attention.

With S the probabilities the forward formed (recomputed from the saved base-2 log-sum-exp), dP_ijk =
<do_i, v1_j * v2_k> and delta_i = <o_i, do_i> (triton_common.backward_delta), dS = S * (dP - delta)
(docs/REFERENCE.md section 1 has the five gradients). A program owns BLOCK_M query rows of one head and walks the
forward's flat (offset t, K1 tile j) loop: per offset

    U_t = sum_j dS(t, j) @ K1_j,    W_t = sum_j P(t, j) @ V1_j,

and at the offset's last tile dQ += U_t * K2_t (registers), while the shifted rows i - t receive dK2 += U_t * Q and
dV2 += W_t * dO through one fp32 atomic add per (tile, t): a row of dK2 / dV2 gets contributions from w2 offsets and
from every query head of its group, so no program owns it. The atomics are relaxed: only their sums are read, after
the kernel, and acq_rel ones (tl.atomic_add's default) cost 1.7x the kernel time at D=64.

SPLIT runs the kernel as two launches (PART=1: dQ and dK2; PART=2: dV2) that each recompute P but hold one fp32
accumulator less; DQ_ATOMIC sends dQ through atomics into an fp32 buffer instead of a third accumulator. Both are the
D=128 default of this kernel (plan.py), where the one-launch form spills. On Hopper with 16-bit inputs the Gluon twin
(gluon_bwd_dqdk2dv2.py) runs instead.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_common import (base2_scale, _load_rows, _next_tile, _program_head, _unscaled_product, _window_tiles,
                            _in_windows, dot_precision, launch_options, new_output, strides3, tma_descriptors)


@triton.jit(do_not_specialize=["N", "W1", "W2", "H", "GROUP"])
def _simplicial_bwd_dq_dk2dv2(
    Q, K1, K2, V1, V2, DO, Lse, Delta, DQ, DK2, DV2, DK1d, DK2d, DV1d, DV2d,
    stride_qb, stride_qn, stride_qh,
    stride_k1b, stride_k1n, stride_k1h,
    stride_k2b, stride_k2n, stride_k2h,
    stride_v1b, stride_v1n, stride_v1h,
    stride_v2b, stride_v2n, stride_v2h,
    stride_dob, stride_don, stride_doh,
    stride_dqb, stride_dqn, stride_dqh,
    stride_gb, stride_gn, stride_gh,  # DK2 and DV2 (fp32, same layout)
    N, W1, W2, qk_scale, sm_scale,
    H, GROUP, HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DOT_PREC: tl.constexpr, TMA: tl.constexpr,
    RELOAD: tl.constexpr, PART: tl.constexpr, DQ_ATOMIC: tl.constexpr,
):
    """Query frame, the forward's flat (offset, K1 tile) loop: per offset U_t = sum_j dS @ K1_j, W_t = sum_j P @ V1_j
    accumulate over its tiles; at its last tile dQ += U_t * K2_t and one atomic add each sends U_t * Q to dK2 and
    W_t * dO to dV2 at rows i - t. PART=0 does both; PART=1 only U (dQ, dK2) and PART=2 only W (dV2), two launches
    that recompute P but each hold one fp32 accumulator less (config SPLIT). DQ_ATOMIC: DQ is an fp32 buffer that
    receives each offset's U_t * K2_t by atomic add, instead of a third register accumulator. The atomics are relaxed:
    only their sums are read, after the kernel, and acq_rel ones (tl.atomic_add's default) cost 1.7x the kernel time
    at D=64 (benchmarks/results/kernels-issue4-2026-11.md, v5 sweeps)."""
    pid_m, pid_bh, b32, b, h, hk = _program_head(tl.cdiv(N, BLOCK_M), H, GROUP)
    start_m = pid_m * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    m_ok = offs_m < N
    dtype = K1.dtype.element_ty

    K1b = K1 + b * stride_k1b + hk * stride_k1h
    K2b = K2 + b * stride_k2b + hk * stride_k2h
    V1b = V1 + b * stride_v1b + hk * stride_v1h
    V2b = V2 + b * stride_v2b + hk * stride_v2h
    DK2b = DK2 + b * stride_gb + hk * stride_gh
    DV2b = DV2 + b * stride_gb + hk * stride_gh

    q_ptrs = Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qn + offs_d[None, :]
    do_ptrs = DO + b * stride_dob + h * stride_doh + offs_m[:, None] * stride_don + offs_d[None, :]
    if not RELOAD:  # else re-read where needed (at an offset's first and last tile): fewer live registers
        q = tl.load(q_ptrs, mask=m_ok[:, None], other=0.0)
        do = tl.load(do_ptrs, mask=m_ok[:, None], other=0.0)
        k2 = tl.zeros([BLOCK_M, HEAD_DIM], dtype=dtype)
    lse = tl.load(Lse + pid_bh.to(tl.int64) * N + offs_m, mask=m_ok, other=0.0)
    delta = tl.load(Delta + pid_bh.to(tl.int64) * N + offs_m, mask=m_ok, other=0.0)
    lo, hi, full_lo, full_hi, n_tiles = _window_tiles(start_m, N, W1, BLOCK_M, BLOCK_N)
    qk2 = tl.zeros([BLOCK_M, HEAD_DIM], dtype=dtype)
    dq_ptrs = DQ + b * stride_dqb + h * stride_dqh + offs_m[:, None] * stride_dqn + offs_d[None, :]
    if PART != 2:
        if not DQ_ATOMIC:
            dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        u = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        dov2 = tl.zeros([BLOCK_M, HEAD_DIM], dtype=dtype)
    if PART != 1:
        w = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    t = 0
    j = -1
    for step in range(0, W2 * n_tiles):
        t, j = _next_tile(t, j, n_tiles)
        if j == 0:
            k2_t = _load_rows(K2b, DK2d, stride_k2n, b32, hk, start_m - t, N, offs_d, BLOCK_M, HEAD_DIM, TMA)
            if RELOAD:
                q_t = tl.load(q_ptrs, mask=m_ok[:, None], other=0.0)
            else:
                q_t, k2 = q, k2_t
            qk2 = _unscaled_product(q_t, k2_t, dtype)
            # a new offset's sums start at zero (a zeroed accumulator before a dot costs nothing: wgmma's use-C flag)
            if PART != 2:
                v2_t = _load_rows(V2b, DV2d, stride_v2n, b32, hk, start_m - t, N, offs_d, BLOCK_M, HEAD_DIM, TMA)
                if RELOAD:
                    do_t = tl.load(do_ptrs, mask=m_ok[:, None], other=0.0)
                else:
                    do_t = do
                dov2 = _unscaled_product(do_t, v2_t, dtype)
                u = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
            if PART != 1:
                w = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        start_n = lo + j * BLOCK_N
        k1 = _load_rows(K1b, DK1d, stride_k1n, b32, hk, start_n, hi, offs_d, BLOCK_N, HEAD_DIM, TMA)
        v1 = _load_rows(V1b, DV1d, stride_v1n, b32, hk, start_n, hi, offs_d, BLOCK_N, HEAD_DIM, TMA)
        s = tl.dot(qk2, tl.trans(k1), input_precision=DOT_PREC)
        p = tl.exp2(s * qk_scale - lse[:, None])
        if (start_n < full_lo) | (start_n + BLOCK_N > full_hi) | (t > start_m):  # tile crosses a window edge
            p = tl.where(_in_windows(offs_m, start_n, offs_n, t, m_ok, W1), p, 0.0)
        if PART != 2:
            dp = tl.dot(dov2, tl.trans(v1), input_precision=DOT_PREC)
            ds = p * (dp - delta[:, None])
            u = tl.dot(ds.to(dtype), k1, u, input_precision=DOT_PREC)
        if PART != 1:
            w = tl.dot(p.to(dtype), v1, w, input_precision=DOT_PREC)
        if j == n_tiles - 1:  # the offset's last tile
            k_rows = offs_m - t
            k_ok = (k_rows >= 0) & m_ok
            g_ptr = k_rows[:, None] * stride_gn + offs_d[None, :]
            if PART != 2:
                if RELOAD:
                    k2_t = _load_rows(K2b, DK2d, stride_k2n, b32, hk, start_m - t, N, offs_d, BLOCK_M, HEAD_DIM, TMA)
                    q_t = tl.load(q_ptrs, mask=m_ok[:, None], other=0.0)
                else:
                    q_t, k2_t = q, k2
                if DQ_ATOMIC:
                    tl.atomic_add(dq_ptrs, u * k2_t.to(tl.float32) * sm_scale, mask=m_ok[:, None], sem="relaxed")
                else:
                    dq += u * k2_t.to(tl.float32)
                tl.atomic_add(DK2b + g_ptr, u * q_t.to(tl.float32) * sm_scale, mask=k_ok[:, None], sem="relaxed")
            if PART != 1:
                if RELOAD:
                    do_t = tl.load(do_ptrs, mask=m_ok[:, None], other=0.0)
                else:
                    do_t = do
                tl.atomic_add(DV2b + g_ptr, w * do_t.to(tl.float32), mask=k_ok[:, None], sem="relaxed")
    if PART != 2 and not DQ_ATOMIC:
        tl.store(dq_ptrs, (dq * sm_scale).to(DQ.dtype.element_ty), mask=m_ok[:, None])

def backward_dq_dk2dv2(do, q, k1, k2, v1, v2, lse, delta, w1, w2, sm_scale, cfg, poison=False):
    """(dq, dk2, dv2, compiled kernels) in q's dtype. cfg: BLOCK_M, BLOCK_N, TMA, RELOAD, SPLIT, DQ_ATOMIC,
    num_warps, num_stages (see the module docstring)."""
    b, n, hq, d = q.shape
    hkv = k1.shape[2]
    dq_atomic = cfg.get("DQ_ATOMIC", False)
    dq_shape = (b, n, hq, d)
    dq = torch.zeros(dq_shape, device=q.device, dtype=torch.float32) if dq_atomic else new_output(dq_shape, q, q.dtype,
                                                                                                   poison)
    dk2 = torch.zeros((b, n, hkv, d), device=q.device, dtype=torch.float32)
    dv2 = torch.zeros((b, n, hkv, d), device=q.device, dtype=torch.float32)
    descs, tma = tma_descriptors(cfg, k1, k2, v1, v2)
    grid = (triton.cdiv(n, cfg["BLOCK_M"]) * b * hq,)
    kernels = []
    for part in ((1, 2) if cfg.get("SPLIT", False) else (0,)):
        kernels.append(_simplicial_bwd_dq_dk2dv2[grid](
            q, k1, k2, v1, v2, do, lse, delta, dq, dk2, dv2, *descs,
            *strides3(q), *strides3(k1), *strides3(k2), *strides3(v1), *strides3(v2), *strides3(do), *strides3(dq),
            *strides3(dk2),
            n, w1, w2, base2_scale(sm_scale), sm_scale,
            H=hq, GROUP=hq // hkv, HEAD_DIM=d,
            BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], DOT_PREC=dot_precision(q.dtype),
            TMA=tma, RELOAD=cfg.get("RELOAD", False), PART=part, DQ_ATOMIC=dq_atomic,
            **launch_options(cfg),
        ))
    return dq.to(q.dtype), dk2.to(q.dtype), dv2.to(q.dtype), tuple(kernels)
