"""Triton (`tl`) backward for dK1 and dV1: the k1 frame of 2-simplicial attention.

A program owns BLOCK_N rows of K1 / V1 of one kv head and loops over the query heads of its group, the query tiles
of BLOCK_M rows that see its rows, and the offsets t:

    dK1 += dS^T @ (Q * K2_t),    dV1 += P^T @ (dO * V2_t),

all in registers, one store at the end: no atomics, since no other program writes these rows. Query tiles whose every
(k1 row, query row, t) triple lies inside the windows run without the mask (`_dk1_query_tile`'s MASKED=False); the
edge tiles run masked in their own loops, as the fused-attention tutorial runs its diagonal blocks. On Hopper with
16-bit inputs the Gluon twin (gluon_bwd_dk1dv1.py) runs instead.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_common import LN2, _unscaled_product, base2_scale, dot_precision, launch_options, new_output, strides3


@triton.jit
def _dk1_query_tile(dk1, dv1, k1, v1, Qb, DOb, Lse_bh, Delta_bh, K2b, V2b, stride_qn, stride_don, stride_k2n,
                    stride_v2n, offs_n, offs_d, start_m, seg_hi, W1, W2, qk_scale, dtype: tl.constexpr,
                    BLOCK_M: tl.constexpr, MASKED: tl.constexpr, DOT_PREC: tl.constexpr):
    """dK1 += dS^T @ (Q * K2_t) and dV1 += P^T @ (dO * V2_t) for one query tile (rows < seg_hi), every offset t.
    MASKED=False only where every (k1 row, query row, t) triple is valid."""
    offs_m = start_m + tl.arange(0, BLOCK_M)
    m_ok = offs_m < seg_hi
    q = tl.load(Qb + offs_m[:, None] * stride_qn + offs_d[None, :], mask=m_ok[:, None], other=0.0)
    do = tl.load(DOb + offs_m[:, None] * stride_don + offs_d[None, :], mask=m_ok[:, None], other=0.0)
    lse = tl.load(Lse_bh + offs_m, mask=m_ok, other=0.0)
    delta = tl.load(Delta_bh + offs_m, mask=m_ok, other=0.0)
    for t in range(0, W2):
        k_rows = offs_m - t
        if MASKED:
            k_ok = (k_rows >= 0) & m_ok
            k2 = tl.load(K2b + k_rows[:, None] * stride_k2n + offs_d[None, :], mask=k_ok[:, None], other=0.0)
            v2 = tl.load(V2b + k_rows[:, None] * stride_v2n + offs_d[None, :], mask=k_ok[:, None], other=0.0)
        else:
            k2 = tl.load(K2b + k_rows[:, None] * stride_k2n + offs_d[None, :])
            v2 = tl.load(V2b + k_rows[:, None] * stride_v2n + offs_d[None, :])
        # q and do stay in their input dtype between offsets (fewer live registers)
        qk2 = _unscaled_product(q, k2, dtype)
        dov2 = _unscaled_product(do, v2, dtype)
        st = tl.dot(k1, tl.trans(qk2), input_precision=DOT_PREC)  # [BLOCK_N, BLOCK_M]
        pt = tl.exp2(st * qk_scale - lse[None, :])
        if MASKED:  # 0 <= i - j < W1 and i - t >= 0, as one unsigned compare (the forward's _in_windows, transposed)
            lim = tl.where(k_ok, W1, 0).to(tl.uint32)
            diff = offs_m[None, :] - offs_n[:, None]
            pt = tl.where(diff.to(tl.uint32, bitcast=True) < lim[None, :], pt, 0.0)
        dpt = tl.dot(v1, tl.trans(dov2), input_precision=DOT_PREC)
        dst = pt * (dpt - delta[None, :])
        dv1 = tl.dot(pt.to(dtype), dov2, dv1, input_precision=DOT_PREC)
        dk1 = tl.dot(dst.to(dtype), qk2, dk1, input_precision=DOT_PREC)
    return dk1, dv1


@triton.jit(do_not_specialize=["N", "W1", "W2", "HKV", "GROUP"])
def _simplicial_bwd_dk1dv1(
    Q, K1, K2, V1, V2, DO, Lse, Delta, DK1, DV1,
    stride_qb, stride_qn, stride_qh,
    stride_k1b, stride_k1n, stride_k1h,
    stride_k2b, stride_k2n, stride_k2h,
    stride_v1b, stride_v1n, stride_v1h,
    stride_v2b, stride_v2n, stride_v2h,
    stride_dob, stride_don, stride_doh,
    stride_gb, stride_gn, stride_gh,  # DK1 and DV1 (same layout)
    N, W1, W2, qk_scale,
    HKV, GROUP, HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DOT_PREC: tl.constexpr,
):
    num_n = tl.cdiv(N, BLOCK_N)
    pid = tl.program_id(0)
    pid_n = pid % num_n
    pid_bh = pid // num_n
    b = (pid_bh // HKV).to(tl.int64)
    hk = pid_bh % HKV
    start_n = pid_n * BLOCK_N
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    n_ok = offs_n < N
    dtype = K1.dtype.element_ty

    K2b = K2 + b * stride_k2b + hk * stride_k2h
    V2b = V2 + b * stride_v2b + hk * stride_v2h
    k1 = tl.load(K1 + b * stride_k1b + hk * stride_k1h + offs_n[:, None] * stride_k1n + offs_d[None, :],
                 mask=n_ok[:, None], other=0.0)
    v1 = tl.load(V1 + b * stride_v1b + hk * stride_v1h + offs_n[:, None] * stride_v1n + offs_d[None, :],
                 mask=n_ok[:, None], other=0.0)
    dk1 = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv1 = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    # query rows that see any row of this tile: [start_n, start_n + BLOCK_N - 1 + W1 - 1]; of those, rows in
    # [full_lo, full_hi) see every row of it (i >= last row, i < first row + W1), and whole tiles of them with
    # start_m >= W2 - 1 (every k2 row i - t >= 0) need no mask
    lo = start_n
    hi = tl.minimum(start_n + BLOCK_N + W1 - 1, N)
    full_lo = tl.minimum(start_n + BLOCK_N - 1, hi)
    full_hi = tl.minimum(start_n + W1, N)
    mid_end = full_lo + tl.maximum(full_hi - full_lo, 0) // BLOCK_M * BLOCK_M
    for g in range(0, GROUP):
        h = hk * GROUP + g
        bh = b * (HKV * GROUP) + h
        Qb = Q + b * stride_qb + h * stride_qh
        DOb = DO + b * stride_dob + h * stride_doh
        Lse_bh = Lse + bh * N
        Delta_bh = Delta + bh * N
        for start_m in range(lo, full_lo, BLOCK_M):
            dk1, dv1 = _dk1_query_tile(dk1, dv1, k1, v1, Qb, DOb, Lse_bh, Delta_bh, K2b, V2b, stride_qn, stride_don,
                                       stride_k2n, stride_v2n, offs_n, offs_d, start_m, full_lo, W1, W2, qk_scale,
                                       dtype, BLOCK_M=BLOCK_M, MASKED=True, DOT_PREC=DOT_PREC)
        for start_m in range(full_lo, mid_end, BLOCK_M):
            if start_m >= W2 - 1:
                dk1, dv1 = _dk1_query_tile(dk1, dv1, k1, v1, Qb, DOb, Lse_bh, Delta_bh, K2b, V2b, stride_qn,
                                           stride_don, stride_k2n, stride_v2n, offs_n, offs_d, start_m, mid_end, W1,
                                           W2, qk_scale, dtype, BLOCK_M=BLOCK_M, MASKED=False, DOT_PREC=DOT_PREC)
            else:
                dk1, dv1 = _dk1_query_tile(dk1, dv1, k1, v1, Qb, DOb, Lse_bh, Delta_bh, K2b, V2b, stride_qn,
                                           stride_don, stride_k2n, stride_v2n, offs_n, offs_d, start_m, mid_end, W1,
                                           W2, qk_scale, dtype, BLOCK_M=BLOCK_M, MASKED=True, DOT_PREC=DOT_PREC)
        for start_m in range(mid_end, hi, BLOCK_M):
            dk1, dv1 = _dk1_query_tile(dk1, dv1, k1, v1, Qb, DOb, Lse_bh, Delta_bh, K2b, V2b, stride_qn, stride_don,
                                       stride_k2n, stride_v2n, offs_n, offs_d, start_m, hi, W1, W2, qk_scale,
                                       dtype, BLOCK_M=BLOCK_M, MASKED=True, DOT_PREC=DOT_PREC)
    dk1 = dk1 * (qk_scale * LN2)  # sm_scale
    g_ptr = b * stride_gb + hk * stride_gh + offs_n[:, None] * stride_gn + offs_d[None, :]
    tl.store(DK1 + g_ptr, dk1.to(DK1.dtype.element_ty), mask=n_ok[:, None])
    tl.store(DV1 + g_ptr, dv1.to(DV1.dtype.element_ty), mask=n_ok[:, None])

def backward_dk1dv1(do, q, k1, k2, v1, v2, lse, delta, w1, w2, sm_scale, cfg, poison=False):
    """(dk1, dv1, compiled kernels) in q's dtype. cfg: BLOCK_N k1 rows per program, BLOCK_M query rows per inner
    tile, num_warps, num_stages."""
    b, n, hq, d = q.shape
    hkv = k1.shape[2]
    dk1 = new_output((b, n, hkv, d), q, q.dtype, poison)
    dv1 = new_output((b, n, hkv, d), q, q.dtype, poison)
    kernel = _simplicial_bwd_dk1dv1[(triton.cdiv(n, cfg["BLOCK_N"]) * b * hkv,)](
        q, k1, k2, v1, v2, do, lse, delta, dk1, dv1,
        *strides3(q), *strides3(k1), *strides3(k2), *strides3(v1), *strides3(v2), *strides3(do), *strides3(dk1),
        n, w1, w2, base2_scale(sm_scale),
        HKV=hkv, GROUP=hq // hkv, HEAD_DIM=d,
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], DOT_PREC=dot_precision(q.dtype), **launch_options(cfg),
    )
    return dk1, dv1, (kernel,)
