"""Triton (`tl`) forward of causal sliding-window 2-simplicial attention: the portable kernels.

Math (docs/REFERENCE.md section 1): for query i, j in (i - w1, i] of (k1, v1), k in (i - w2, i] of (k2, v2),

    A_ijk = sm_scale * <q_i, k1_j, k2_k>,   S_i = softmax over (j, k) of A_i,   o_i = sum_jk S_ijk v1_j * v2_k.

Tiling: the diagonal-offset form (docs/REFERENCE.md section 2). A program owns BLOCK_M consecutive queries of one
head and loops over the offset t = 0 .. w2-1 of the small window (k = i - t). For a fixed t, row r of the tile uses
k2 row i_r - t, so Q * K2_shift(t) is a dense [BLOCK_M, D] tile and the logits against a K1 tile are one GEMM:

    S(t, j) = (Q * K2_t) @ K1_j^T,     out += (P(t, j) @ V1_j) * V2_t

with one online softmax over all (t, j). No work is spent on k2 positions outside a query's window (tiling queries
along k2 would waste (BLOCK_M - 1) / (w2 + BLOCK_M - 1) of it); along k1 the waste is
(BLOCK_M - 1) / (w1 + BLOCK_M - 1).
The (t, K1 tile) pairs run as one flat loop, so the software pipeline keeps prefetching K1/V1 tiles across offsets;
on Hopper the tiles come through TMA tensor descriptors.

`_simplicial_fwd_per_query` is the form for a large w2 (>= 64 at D=64 in 16 bits, where it measured 1.03-1.13x the
query tile): one query's logits are a dense [w2, w1] matrix, k2 positions by k1 positions, so it computes no position
outside the windows.

These kernels run wherever the Gluon forward (gluon_fwd.py) does not: GPUs other than Hopper, fp32, head dims other
than 64 and 128, layouts whose heads are not packed in rows, and the CPU interpreter. plan.py picks the kernel and
its launch config. Output: out [B, N, Hq, D] and the base-2 log-sum-exp [B, Hq, N] (fp32) the backward reads.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_common import (base2_scale, _in_windows, _load_rows, _next_tile, _program_head, _unscaled_product,
                            _window_tiles, dot_precision, launch_options, new_output, strides3, tma_descriptors)


@triton.jit(do_not_specialize=["N", "W1", "W2", "H", "GROUP"])
def _simplicial_fwd(
    Q, K1, K2, V1, V2, Out, Lse, DK1d, DK2d, DV1d, DV2d,
    stride_qb, stride_qn, stride_qh,
    stride_k1b, stride_k1n, stride_k1h,
    stride_k2b, stride_k2n, stride_k2h,
    stride_v1b, stride_v1n, stride_v1h,
    stride_v2b, stride_v2n, stride_v2h,
    stride_ob, stride_on, stride_oh,
    N, W1, W2, qk_scale,
    H, GROUP, HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DOT_PREC: tl.constexpr, TMA: tl.constexpr,
    RELOAD: tl.constexpr,
):
    """One program: BLOCK_M queries of one head. The (offset t, K1 tile) pairs run as ONE flat loop of
    W2 * n_tiles steps, so the software pipeline (num_stages) keeps its K1/V1 prefetch running across offsets instead
    of draining and refilling a short loop per offset. At the first tile of an offset the step forms Q * K2_t; at the
    last it folds that offset's accumulator into the output. Only tiles that cross a window edge pay the mask."""
    tl.static_assert(BLOCK_M >= 16 and BLOCK_N >= 16, "tl.dot needs tiles of at least 16")
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

    q_ptrs = Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qn + offs_d[None, :]
    if not RELOAD:
        q = tl.load(q_ptrs, mask=m_ok[:, None], other=0.0)
        v2 = tl.zeros([BLOCK_M, HEAD_DIM], dtype=dtype)
    lo, hi, full_lo, full_hi, n_tiles = _window_tiles(start_m, N, W1, BLOCK_M, BLOCK_N)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    acc_t = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    scale_t = tl.full([BLOCK_M], 1.0, dtype=tl.float32)  # rescaling owed to acc for this offset's updates of m_i
    qk2 = tl.zeros([BLOCK_M, HEAD_DIM], dtype=dtype)
    t = 0
    j = -1
    for step in range(0, W2 * n_tiles):
        t, j = _next_tile(t, j, n_tiles)
        if j == 0:  # a new offset: row r uses k2 / v2 row i_r - t
            k2 = _load_rows(K2b, DK2d, stride_k2n, b32, hk, start_m - t, N, offs_d, BLOCK_M, HEAD_DIM, TMA)
            if RELOAD:
                q_t = tl.load(q_ptrs, mask=m_ok[:, None], other=0.0)
            else:
                q_t = q
                v2 = _load_rows(V2b, DV2d, stride_v2n, b32, hk, start_m - t, N, offs_d, BLOCK_M, HEAD_DIM, TMA)
            qk2 = _unscaled_product(q_t, k2, dtype)
        start_n = lo + j * BLOCK_N
        k1 = _load_rows(K1b, DK1d, stride_k1n, b32, hk, start_n, hi, offs_d, BLOCK_N, HEAD_DIM, TMA)
        v1 = _load_rows(V1b, DV1d, stride_v1n, b32, hk, start_n, hi, offs_d, BLOCK_N, HEAD_DIM, TMA)
        s = tl.dot(qk2, tl.trans(k1), input_precision=DOT_PREC)
        if (start_n < full_lo) | (start_n + BLOCK_N > full_hi) | (t > start_m):  # tile crosses a window edge
            s = tl.where(_in_windows(offs_m, start_n, offs_n, t, m_ok, W1), s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)  # base-2 logits s * qk_scale; qk_scale > 0
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing valid yet stay at zero
        alpha = tl.exp2(m_i - m_use)
        p = tl.exp2(s * qk_scale - m_use[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        # an offset's first tile starts its accumulator from zero (the last one was folded) and its rescaling at 1
        acc_t = acc_t * tl.where(j == 0, 0.0, alpha)[:, None] + tl.dot(p.to(dtype), v1, input_precision=DOT_PREC)
        scale_t = tl.where(j == 0, 1.0, scale_t) * alpha
        m_i = m_new
        if j == n_tiles - 1:  # the offset's last tile: out += (sum_j P V1_j) * V2_t
            if RELOAD:
                v2_t = _load_rows(V2b, DV2d, stride_v2n, b32, hk, start_m - t, N, offs_d, BLOCK_M, HEAD_DIM, TMA)
            else:
                v2_t = v2
            acc = acc * scale_t[:, None] + acc_t * v2_t.to(tl.float32)
    l_safe = tl.where(l_i > 0.0, l_i, 1.0)
    out = acc / l_safe[:, None]
    tl.store(Lse + pid_bh.to(tl.int64) * N + offs_m, m_i + tl.log2(l_safe), mask=m_ok)
    Ob = Out + b * stride_ob + h * stride_oh
    tl.store(Ob + offs_m[:, None] * stride_on + offs_d[None, :], out.to(Out.dtype.element_ty), mask=m_ok[:, None])


@triton.jit(do_not_specialize=["N", "W1", "W2", "H", "GROUP"])
def _simplicial_fwd_per_query(
    Q, K1, K2, V1, V2, Out, Lse, DK1d, DK2d, DV1d, DV2d,
    stride_qb, stride_qn, stride_qh,
    stride_k1b, stride_k1n, stride_k1h,
    stride_k2b, stride_k2n, stride_k2h,
    stride_v1b, stride_v1n, stride_v1h,
    stride_v2b, stride_v2n, stride_v2h,
    stride_ob, stride_on, stride_oh,
    N, W1, W2, qk_scale,
    H, GROUP, HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, QUERIES: tl.constexpr, DOT_PREC: tl.constexpr,
    TMA: tl.constexpr,
):
    """The per-query form, for a large w2 (w2 >= 64): no position outside the windows is computed.

    For one query i the logits over its windows are one dense [w2, w1] matrix, (q_i * K2[i-w2+1 .. i]) @
    K1[i-w1+1 .. i]^T: rows are its k2 positions, columns its k1 positions. The query-tile form computes a tile's k1
    union, w1 + BLOCK_M - 1 columns, for w1 useful ones per row: a third wasted at (128, 128), a fifth at (256, 64).
    A program runs QUERIES consecutive queries of one head, one after another, in [BLOCK_M, BLOCK_N] steps: BLOCK_M
    k2 rows (a group) by BLOCK_N k1 columns. Each row keeps its own online softmax and its P @ V1 accumulator over
    the k1 tiles; at a group's last tile the rows fold into the query's running output,
    o += sum_r 2^(m_r - M) acc_r * v2_r (and l, M likewise), and at its last group the output row is stored."""
    tl.static_assert(BLOCK_M >= 16 and BLOCK_N >= 16, "tl.dot needs tiles of at least 16")
    pid_q, pid_bh, b32, b, h, hk = _program_head(tl.cdiv(N, QUERIES), H, GROUP)
    first_q = pid_q * QUERIES
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    dtype = K1.dtype.element_ty

    K1b = K1 + b * stride_k1b + hk * stride_k1h
    K2b = K2 + b * stride_k2b + hk * stride_k2h
    V1b = V1 + b * stride_v1b + hk * stride_v1h
    V2b = V2 + b * stride_v2b + hk * stride_v2h
    Qb = Q + b * stride_qb + h * stride_qh
    Ob = Out + b * stride_ob + h * stride_oh

    n_tiles = tl.cdiv(W1, BLOCK_N)
    n_groups = tl.cdiv(W2, BLOCK_M)
    per_query = n_groups * n_tiles
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    kq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=dtype)
    o_run = tl.zeros([HEAD_DIM], dtype=tl.float32)  # the query's output so far, scaled by 2^-m_run
    l_run = 0.0
    m_run = float("-inf")
    for step in range(0, tl.minimum(QUERIES, N - first_q) * per_query):
        qi = step // per_query  # divided: counting the three indices measured 4-5% slower here
        rest = step - qi * per_query
        g = rest // n_tiles
        j = rest - g * n_tiles
        i = first_q + qi
        first_k = i - W2 + 1 + g * BLOCK_M  # the group's k2 rows: first_k .. first_k + BLOCK_M - 1
        if j == 0:  # a new group
            q = tl.load(Qb + i * stride_qn + offs_d)
            k2 = _load_rows(K2b, DK2d, stride_k2n, b32, hk, first_k, N, offs_d, BLOCK_M, HEAD_DIM, TMA)
            kq = _unscaled_product(k2, q[None, :], dtype)
        start_n = i - W1 + 1 + j * BLOCK_N
        k1 = _load_rows(K1b, DK1d, stride_k1n, b32, hk, start_n, N, offs_d, BLOCK_N, HEAD_DIM, TMA)
        v1 = _load_rows(V1b, DV1d, stride_v1n, b32, hk, start_n, N, offs_d, BLOCK_N, HEAD_DIM, TMA)
        s = tl.dot(kq, tl.trans(k1), input_precision=DOT_PREC)
        if (start_n < 0) | (start_n + BLOCK_N > i + 1) | (first_k < 0) | (first_k + BLOCK_M > i + 1):
            # rows k and columns j in [0, i] (the windows' far edges are the tiles' own starts)
            row_ok = (first_k + offs_m).to(tl.uint32, bitcast=True) <= i.to(tl.uint32)
            col_ok = (start_n + offs_n).to(tl.uint32, bitcast=True) <= i.to(tl.uint32)
            s = tl.where(row_ok[:, None] & col_ok[None, :], s, float("-inf"))
        m_prev = tl.where(j == 0, float("-inf"), m_i)  # a group's rows start their softmax afresh
        m_new = tl.maximum(m_prev, tl.max(s, 1) * qk_scale)  # base-2 logits s * qk_scale; qk_scale > 0
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing valid yet stay at zero
        alpha = tl.exp2(m_prev - m_use)
        p = tl.exp2(s * qk_scale - m_use[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(dtype), v1, input_precision=DOT_PREC)
        m_i = m_new
        if j == n_tiles - 1:  # the group's last tile: fold its rows into the query's output
            v2 = _load_rows(V2b, DV2d, stride_v2n, b32, hk, first_k, N, offs_d, BLOCK_M, HEAD_DIM, TMA)
            m_g = tl.max(m_i, 0)
            m_top = tl.maximum(m_run, m_g)
            m_top_use = tl.where(m_top == float("-inf"), 0.0, m_top)
            w = tl.exp2(m_i - m_top_use)  # rows without a valid position have m = -inf and weigh 0
            run_scale = tl.exp2(m_run - m_top_use)
            o_run = o_run * run_scale + tl.sum(acc * v2.to(tl.float32) * w[:, None], 0)
            l_run = l_run * run_scale + tl.sum(l_i * w, 0)
            m_run = m_top
            if g == n_groups - 1:  # the query's last group: out_i = o / l, lse_i = m + log2(l)
                tl.store(Ob + i * stride_on + offs_d, (o_run / l_run).to(Out.dtype.element_ty))
                tl.store(Lse + pid_bh.to(tl.int64) * N + i, m_run + tl.log2(l_run))
                o_run = tl.zeros([HEAD_DIM], dtype=tl.float32)
                l_run = 0.0
                m_run = float("-inf")


def forward(q, k1, k2, v1, v2, w1, w2, sm_scale, cfg, poison=False):
    """(out, lse, compiled kernels) of the query-tile forward `_simplicial_fwd` with launch config cfg: BLOCK_M query
    rows per program, BLOCK_N k1 columns per step, TMA (tensor-descriptor loads where the tensors allow), RELOAD
    (re-read Q / V2 at an offset's edges instead of holding them: fewer live registers), num_warps, num_stages,
    maxnreg. Windows already clipped to N; sm_scale > 0."""
    b, n, hq, d = q.shape
    out = new_output((b, n, hq, d), q, q.dtype, poison)
    lse = new_output((b, hq, n), q, torch.float32, poison)
    grid = (triton.cdiv(n, cfg["BLOCK_M"]) * b * hq,)
    descs, tma = tma_descriptors(cfg, k1, k2, v1, v2)
    kernel = _simplicial_fwd[grid](
        q, k1, k2, v1, v2, out, lse, *descs,
        *strides3(q), *strides3(k1), *strides3(k2), *strides3(v1), *strides3(v2), *strides3(out),
        n, w1, w2, base2_scale(sm_scale),
        H=hq, GROUP=hq // k1.shape[2], HEAD_DIM=d,
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], DOT_PREC=dot_precision(q.dtype),
        TMA=tma, RELOAD=cfg.get("RELOAD", False), **launch_options(cfg),
    )
    return out, lse, (kernel,)


def forward_per_query(q, k1, k2, v1, v2, w1, w2, sm_scale, cfg, poison=False):
    """(out, lse, compiled kernels) of the per-query forward `_simplicial_fwd_per_query`: QUERIES queries of one
    head per program, BLOCK_M k2 rows by BLOCK_N k1 columns per step; TMA, num_warps, num_stages, maxnreg as in
    `forward`."""
    b, n, hq, d = q.shape
    out = new_output((b, n, hq, d), q, q.dtype, poison)
    lse = new_output((b, hq, n), q, torch.float32, poison)
    grid = (triton.cdiv(n, cfg["QUERIES"]) * b * hq,)
    descs, tma = tma_descriptors(cfg, k1, k2, v1, v2)
    kernel = _simplicial_fwd_per_query[grid](
        q, k1, k2, v1, v2, out, lse, *descs,
        *strides3(q), *strides3(k1), *strides3(k2), *strides3(v1), *strides3(v2), *strides3(out),
        n, w1, w2, base2_scale(sm_scale),
        H=hq, GROUP=hq // k1.shape[2], HEAD_DIM=d,
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], QUERIES=cfg["QUERIES"], DOT_PREC=dot_precision(q.dtype),
        TMA=tma, **launch_options(cfg),
    )
    return out, lse, (kernel,)
