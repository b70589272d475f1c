"""Triton kernels for causal sliding-window 2-simplicial attention, forward and backward.

Math (docs/REFERENCE.md section 1): for query i, j in (i - w1, i] of (k1, v1), k in (i - w2, i] of (k2, v2),

    A_ijk = sm_scale * <q_i, k1_j, k2_k>,   S_i = softmax over (j, k) of A_i,   o_i = sum_jk S_ijk v1_j * v2_k.

Structure: the diagonal-offset form (docs/REFERENCE.md section 2). A program owns BLOCK_M consecutive queries of one head
and loops over the offset t = 0 .. w2-1 of the small window (k = i - t). For a fixed t, row r of the tile uses k2 row
i_r - t, so Q * K2_shift(t) is a dense [BLOCK_M, D] tile and the logits against a K1 tile are one GEMM:

    S(t, j) = (Q * K2_t) @ K1_j^T,     out += (P(t, j) @ V1_j) * V2_t

with one online softmax over all (t, j). No work is spent on k2 positions outside a query's window (tiling queries
along k2 would waste (BLOCK_M - 1) / (w2 + BLOCK_M - 1) of it); along k1 the waste is (BLOCK_M - 1) / (w1 + BLOCK_M - 1).
The (t, K1 tile) pairs run as one flat loop, so the software pipeline keeps prefetching K1/V1 tiles across offsets;
on Hopper the tiles come through TMA tensor descriptors (benchmarks/kernel_notes.md has the measurements).
For a large w2 (>= 64, D=64) the tl forward runs the per-query form instead (`_simplicial_fwd_per_query`): one query's
logits are a dense [w2, w1] matrix, k2 positions by k1 positions, so it computes no position outside the windows.

Backward (dS = S * (dP - delta), delta_i = <o_i, do_i>, dP_ijk = <do_i, v1_j * v2_k>), split so that no output
needs atomics inside an inner loop:
  * `_simplicial_bwd_preprocess`: delta = rowsum(O * dO).
  * `_simplicial_bwd_dq_dk2dv2` (query frame, like the forward): per t, U_t = sum_j dS @ K1_j, W_t = sum_j P @ V1_j;
    dQ += U_t * K2_t (registers), and the shifted rows i - t receive dK2 += U_t * Q, dV2 += W_t * dO through one
    fp32 atomic add per (tile, t) (rows of dK2/dV2 get contributions from w2 offsets and from every query head of
    the group).
  * `_simplicial_bwd_dk1dv1` (k1 frame): a program owns BLOCK_N rows of K1/V1 of one kv head and loops over the
    query heads of its group, the query tiles that see it and t: dK1 += dS^T @ (Q * K2_t), dV1 += P^T @ (dO * V2_t),
    all in registers, one store.
Softmax runs in base 2: every kernel forms the unscaled product Q * K2_t (rounded once) and applies
qk_scale = sm_scale * log2(e) > 0 to the fp32 logits (`_unscaled_product`); the saved log-sum-exp is in base 2 too.
On Hopper (sm_90) with 16-bit inputs, the forward and both backward kernels at D=64 and 128 run the warp-specialised
Gluon versions in simplicial_attention_gluon.py instead (same math, same outputs; _config's GLUON).
Saved for backward: the inputs, the output and the per-row log-sum-exp [B, Hq, N] (fp32): O(B * N * H * D).
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

try:  # host-side TMA descriptors (triton >= 3.4)
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # pragma: no cover
    TensorDescriptor = None

__all__ = ["two_simplicial_attention_triton"]

_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _patch_interpreter_index() -> None:
    """Let the triton 3.6 interpreter use runtime scalars as loop bounds under NumPy >= 2.3.

    The interpreter holds a scalar as a 1-element array and converts it with int(array), which NumPy 2.3 made an
    error ("only 0-dimensional arrays can be converted to Python scalars"), so `range(lo, hi)` with a runtime bound
    fails on CPU. We re-set tensor.__index__ after the interpreter's own patch, in the same undoable scope.
    """
    try:
        from triton.runtime import interpreter
    except ImportError:  # pragma: no cover
        return
    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None or getattr(original, "_simplicial_patched", False):
        return

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched._simplicial_patched = True
    interpreter._patch_lang_tensor = patched


if _interpreting():
    _patch_interpreter_index()


# --------------------------------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------------------------------


@triton.jit
def _window_tiles(start_m, N, W1, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """The k1 positions a query tile sees, [lo, hi) = (start_m - W1, start_m + BLOCK_M - 1] clipped to [0, N), as
    n_tiles tiles of BLOCK_N from lo, and [full_lo, full_hi): the positions inside every row's window (j > i - W1 for
    the last row, j <= i for the first). A tile inside [full_lo, full_hi) needs no k1 mask."""
    lo = tl.maximum(start_m - W1 + 1, 0)
    hi = tl.minimum(start_m + BLOCK_M, N)
    full_lo = tl.maximum(start_m + BLOCK_M - W1, lo)
    full_hi = tl.minimum(start_m + 1, hi)
    return lo, hi, full_lo, full_hi, tl.cdiv(hi - lo, BLOCK_N)


@triton.jit
def _load_rows(base, desc, stride_n, b, hk, first, limit, offs_d, BLOCK: tl.constexpr, HEAD_DIM: tl.constexpr,
               TMA: tl.constexpr):
    """Rows first .. first + BLOCK - 1 of one (batch, head) as [BLOCK, HEAD_DIM], zero for rows < 0 and rows >= limit.
    TMA: through a [B, N, H, D] tensor descriptor, which reads rows outside [0, N) as zero; rows in [limit, N) are
    read and the caller's window masks drop them."""
    if TMA:
        return tl.reshape(desc.load([b, first, hk, 0]), [BLOCK, HEAD_DIM])
    else:
        rows = first + tl.arange(0, BLOCK)
        ok = (rows >= 0) & (rows < limit)
        return tl.load(base + rows[:, None] * stride_n + offs_d[None, :], mask=ok[:, None], other=0.0)


@triton.jit
def _unscaled_product(a, b, dtype: tl.constexpr):
    """a * b rounded once to dtype: the per-offset operands Q * K2_t and dO * V2_t. The product of two 16-bit numbers
    is exact in fp32, so every kernel (and a packed 16-bit multiply) gets the same bits. The logit scale is applied to
    the fp32 GEMM result instead (s * qk_scale, fused into the exp2's FFMA): forward and backward then round their
    logits at the same point, whichever kernel runs (benchmarks/kernel_notes.md, v8)."""
    return (a.to(tl.float32) * b.to(tl.float32)).to(dtype)


@triton.jit
def _in_windows(offs_m, start_n, offs_n, t, m_ok, W1):
    """[BLOCK_M, BLOCK_N] mask of the (query i, k1 column j) pairs inside the windows at offset t: 0 <= i - j < W1
    and the k2 row i - t exists. One unsigned compare per element: rows without a k2 row get the bound 0."""
    lim = tl.where(((offs_m - t) >= 0) & m_ok, W1, 0).to(tl.uint32)
    diff = offs_m[:, None] - (start_n + offs_n)[None, :]
    return diff.to(tl.uint32, bitcast=True) < lim[:, None]


@triton.jit
def _next_tile(t, j, n_tiles):
    """The (offset t, tile j) after (t, j) in a flat loop over n_tiles tiles per offset: divmod(step, n_tiles)
    counted instead of divided (a division per step cost ~25 instructions, benchmarks/kernel_notes.md, v7). Start
    from (0, -1). simplicial_attention_gluon has its twin: Gluon kernels call Gluon functions only."""
    j += 1
    t = tl.where(j == n_tiles, t + 1, t)
    j = tl.where(j == n_tiles, 0, j)
    return t, j


@triton.jit
def _program_head(num_tiles, H, GROUP):
    """A query-frame program's (tile index, batch*head index, batch as int32 and int64, query head, kv head): programs
    run a head's num_tiles tiles consecutively, so neighbouring programs share K1 / V1 rows in L2."""
    pid = tl.program_id(0)
    pid_bh = pid // num_tiles
    b32 = pid_bh // H
    h = pid_bh % H
    return pid % num_tiles, pid_bh, b32, b32.to(tl.int64), h, h // GROUP


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


# --------------------------------------------------------------------------------------------------------------------
# backward
# --------------------------------------------------------------------------------------------------------------------


@triton.jit(do_not_specialize=["N", "H"])
def _simplicial_bwd_preprocess(
    Out, DO, Delta,
    stride_ob, stride_on, stride_oh,
    stride_db, stride_dn, stride_dh,
    N, H, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
):
    num_m = tl.cdiv(N, BLOCK_M)
    pid = tl.program_id(0)
    pid_m = pid % num_m
    pid_bh = pid // num_m
    b = (pid_bh // H).to(tl.int64)
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    m_ok = offs_m < N
    o = tl.load(Out + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_on + offs_d[None, :],
                mask=m_ok[:, None], other=0.0)
    do = tl.load(DO + b * stride_db + h * stride_dh + offs_m[:, None] * stride_dn + offs_d[None, :],
                 mask=m_ok[:, None], other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), axis=1)
    tl.store(Delta + pid_bh.to(tl.int64) * N + offs_m, delta, mask=m_ok)


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
    at D=64 (benchmarks/results/attention-2026-11-27-v5-sweeps.md)."""
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
    dk1 = dk1 * (qk_scale * 0.6931471805599453)  # sm_scale: qk_scale / log2(e)
    g_ptr = b * stride_gb + hk * stride_gh + offs_n[:, None] * stride_gn + offs_d[None, :]
    tl.store(DK1 + g_ptr, dk1.to(DK1.dtype.element_ty), mask=n_ok[:, None])
    tl.store(DV1 + g_ptr, dv1.to(DV1.dtype.element_ty), mask=n_ok[:, None])


# --------------------------------------------------------------------------------------------------------------------
# launch configuration
# --------------------------------------------------------------------------------------------------------------------

# Tests set this to fill every output with NaN before the kernels run, so an element a kernel fails to write shows.
POISON_OUTPUTS = False


def _new(shape, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if POISON_OUTPUTS:
        return torch.full(shape, float("nan"), device=like.device, dtype=dtype)
    return torch.empty(shape, device=like.device, dtype=dtype)


# The compiled kernel of each kind's last launch (register / spill counts and IR for benchmarks/bench_attention.py).
LAUNCHED: dict[str, object] = {}

# Overrides for benchmarks/bench_attention.py's variant sweep: {"fwd": {...}, "bwd_dq": {...}, "bwd_dk1": {...}}.
CONFIG_OVERRIDE: dict[str, dict] = {}


# The Gluon forward's launch config per head dim (benchmarks/gluon_kernels.py): at D=128 64x64 tiles, two K1/V1
# buffers and one V2 buffer keep shared memory at 112 KiB and maxnreg=128 keeps the launch at 128 registers, so two
# programs share an SM; the consumer warpgroup then takes 232 registers from the producer's share (setmaxnreg). At
# D=128 it runs at 376-382 TF/s against the tl kernel's 298. At D=64 (v8), maxnreg=80 fit three programs per SM (57
# KiB of shared memory each; the consumer got 136 registers, 2 spilled) and beat every tl D=64 kernel, the per-query
# one included: 1.07x at (512, 32), 1.05x at (256, 64), 1.03x at (128, 128), 1.14x at N=2048
# (benchmarks/results/attention-2026-11-27-v8.md); the paired steps below replaced it.
# At D=128 and w1 >= 512 two consumer warpgroups of one program (128 query rows, one per SM, 240 registers each)
# share each K1/V1 tile load instead (CONSUMERS=2): 1.01-1.05x at (512, 32), 1.04-1.07x at (1024, 16) with K1 tiles
# of 128 there; at w1 <= 256 it lost 2-7% (benchmarks/results/attention-2026-11-27-v9.md).
# At D=64 the consumer takes two K1 tiles per softmax step (PAIRED: one row max and one rescale per 128 columns) at
# two programs per SM (maxnreg=128; paired at 80 spills 80 slots) with a ring of five tiles: 1.02-1.07x over the
# three-program kernel on an H100 and an H200 (benchmarks/results/attention-2026-11-27-v10.md). Since v12 its tiles
# hold 8 queries x 8 offsets (PACKED, simplicial_attention_gluon._simplicial_fwd_packed_gluon): their k1 windows
# span w1 + 7 columns instead of a query tile's w1 + 63, the last 7 in a 16-column tail taken with the first paired
# step. Against v11's paired query tiles on an H100: 1.19x at (128, 128), 1.06x at (256, 64), 1.01-1.02x at
# (512, 32), level at (1024, 16) (benchmarks/results/attention-2026-11-28-v12.md). At D=128 the same form, one K1
# tile per step, ran 0.93-0.98x of the kernels below, except at w1 <= 128: there a query group's whole k1 window
# (w1 + 7 columns) fits two tile slots and a 16-row tail buffer, is loaded once for all its offsets (RESIDENT), and
# only the V2 rows stream. The query-tile kernel reloads the window every offset (L2 -> shared-memory bound): the
# resident one ran 1.36x faster at (128, 128) (benchmarks/results/attention-2026-11-28-v12.md, run 16). Up to
# w1 = 257 two adjacent query groups share a window of four slots and the tail (w1 + 15 columns), one consumer
# warpgroup each, one program per SM: 1.22x the query-tile kernel at (256, 64), 0.97x the form above at (128, 128)
# (-v13.md, run 3, H200); one consumer alone on the four slots ran 0.94x the query-tile kernel (run 2).
# At D=64 a resident window (one tile per step) beat the paired streamed steps where it fits: four slots at
# 129 <= w1 <= 265 (w1 + 7 <= 4 * 64 + 16; two programs per SM) 1.08x at (256, 64); two slots at w1 <= 128, at
# maxnreg=80 (three programs per SM, 6 spill slots) 1.16x at (128, 128) (-v13.md, run 7, H100).
# Since v14 the D=128 resident windows index their first slots and tail through an opaque zero (OPAQUE_SLOTS: the
# compiler no longer hoists and spills their shared-memory descriptors; 8 -> 0 and 18 -> 2 spill slots): 1.07x at
# (128, 128), 1.10x at (256, 64); at D=64 alone it ran level (0.98-1.01x) (-v14.md, run 2, H100). But at D=64 it
# lets the four-slot window take two tiles per softmax step (PAIRED; as constants that spills 30 slots, opaque 0):
# 1.10x the one-tile steps at (256, 64); at (128, 128) 0.98x the two slots at three programs per SM (run 4).
# Since v15 the D=128 forward is packed at every window: at w1 >= 258 two adjacent query groups (one consumer
# warpgroup each, 240 registers, one program per SM) share one ring of four K1 / V1 tiles, which the producer
# streams once per offset group for both (their union window, w1 + 15 columns: 528 computed per 512 useful at
# (512, 32) where the query tile computed 576). Against the query-tile kernels it replaced (two consumers on 64-row
# query tiles; K1 tiles of 128 at w1 >= 1024), on an H100: 1.08-1.11x at (512, 32) and N=8192, 1.09x at N=16384,
# 1.13-1.17x at N=2048, 1.12x at (384, 32), 1.01-1.02x at (1024, 16) (-v15.md, runs 1 and 2).
# {head dim: [(least w1, config), ...]}, the largest w1 first, the last one for every window.
_PACKED = dict(PACKED=True, QUERIES=8, TAIL=16, BLOCK_M=64, BLOCK_N=64, num_warps=4)  # 8 queries x 8 offsets
_RESIDENT = dict(_PACKED, RESIDENT=True)
# two query groups per program, one consumer warpgroup of 240 registers each, sharing four K1 / V1 slots (one program
# per SM): streamed at D=128 and w1 >= 258, resident below
_TWO_GROUPS = dict(_PACKED, NUM_BUF=4, maxnreg=168, CONSUMERS=2, CONSUMER_REGS=240)
GLUON_FWD_CONFIG = {128: [(258, _TWO_GROUPS),
                          (129, dict(_TWO_GROUPS, RESIDENT=True, OPAQUE_SLOTS=True)),
                          (0, dict(NUM_BUF=2, maxnreg=128, OPAQUE_SLOTS=True, **_RESIDENT))],
                    64: [(266, dict(NUM_BUF=5, maxnreg=128, PAIRED=True, **_PACKED)),
                         (129, dict(NUM_BUF=4, maxnreg=128, PAIRED=True, OPAQUE_SLOTS=True, **_RESIDENT)),
                         (0, dict(NUM_BUF=2, maxnreg=80, **_RESIDENT))]}


def gluon_fwd_config(d: int, w1: int) -> dict:
    """The Gluon forward's launch config at head dim d and k1 window w1 (already clipped to N)."""
    return next(cfg for min_w1, cfg in GLUON_FWD_CONFIG[d] if w1 >= min_w1)


# The Gluon dK1/dV1 kernel's: one program per SM owns two K1 tiles of 64 rows, one consumer warpgroup each (232
# registers), and two producer warpgroups (24 registers) form Q*K2_t and dO*V2_t once for both consumers
# (results/attention-2026-11-27-v10.md: on an H100 4.89 vs 5.02-5.33 ms at D=64 against v9's kernel, whose one
# producer formed both products for one consumer at two programs per SM; 11.13-11.17 vs 11.48-11.58 ms at D=128,
# where v9's consumer formed them itself and the query tiles are of 32 rows, as here). The tl kernel takes 6.4-6.7 /
# 13.3 ms.
# The Gluon dQ/dK2/dV2 kernel's: at D=64 one consumer, two programs per SM (5.7 vs 7.0 ms for the tl kernel; the
# two-role kernel below runs 0.65-0.84x of it there). At D=128 the two-role kernel (ROLES=2): one program per SM, a
# probs and a grads consumer (240 registers each), P handed over in bf16, a ring of four K1/V1 tiles
# (results/attention-2026-11-27-v11.md: 10.90 vs 15.44-16.25 ms for v10's two launches, which recomputed S and held
# K1 tiles of 32 rows to fit two programs per SM).
GLUON_DQ_CONFIG = {64: dict(BLOCK_M=64, BLOCK_N=64, NUM_BUF=2, num_warps=4, maxnreg=128),
                   128: dict(BLOCK_M=64, BLOCK_N=64, NUM_BUF=4, NUM_P=2, ROLES=2, CONSUMER_REGS=240,
                             PRODUCER_REGS=24, num_warps=4, maxnreg=168)}
# At D=128 its two-role kernel instead (ROLES=2, as the dQ one's): one K1 tile per program, a probs consumer (dV1)
# and a grads consumer (dK1) with one accumulator each, so query tiles of 64 rows (results/attention-2026-11-27-v11.md:
# 10.37 vs 11.20 ms; at D=64 it runs 0.70x of the two-tile kernel).
GLUON_DK1_CONFIG = {64: dict(BLOCK_M=64, BLOCK_N=64, NUM_F=4, CONSUMER_REGS=232, PRODUCER_REGS=24, num_warps=4,
                             maxnreg=128),
                    128: dict(BLOCK_M=64, BLOCK_N=64, NUM_F=2, NUM_P=2, ROLES=2, CONSUMER_REGS=232, PRODUCER_REGS=24,
                              num_warps=4, maxnreg=128)}


def _config(kind: str, d: int, dtype: torch.dtype, w1: int = 0, w2: int = 0) -> dict:
    """Launch config per (kernel, head dim), from the variant sweeps of benchmarks/bench_attention.py --sweep at
    N=8192, (w1, w2)=(512, 32), bf16 (benchmarks/kernel_notes.md). TMA loads K1/V1/K2/V2 tiles through tensor
    descriptors (Hopper and later; the launcher falls back to pointer loads where it cannot); RELOAD re-reads the
    per-query operands at an offset's edges instead of holding them in registers (D=128 spills without it). The 16-bit
    D=64 tl forward (the Gluon one's fallback) caps registers at 168 per thread with TMA and RELOAD, so three programs
    share an SM instead of two (no spills; 278 vs 250 TF/s for the v4 default at w1=512; with pointer loads the cap
    spills); at w1 >= 1024 K1 tiles of 128 with TMA win instead (more tiles per offset amortise the per-offset work
    over larger steps); at w2 >= 64 the per-query form (PER_QUERY, _simplicial_fwd_per_query), which computes no
    position outside the windows, wins by 1.03-1.13x (results/attention-2026-11-27-v7-per-query.md; at D=128 the
    Gluon query-tile kernel stays ahead of it). At D=128 the dq kernel runs as two launches (SPLIT) and sends dQ
    through atomics (DQ_ATOMIC): each holds fewer fp32 accumulators and spills less. GLUON: where
    simplicial_attention_gluon applies (Hopper, 16-bit inputs whose heads pack into rows), the forward and both
    backward kernels (D=64, 128) run its warp-specialised kernels with GLUON_FWD_CONFIG / GLUON_DQ_CONFIG /
    GLUON_DK1_CONFIG instead; the tl config here is the fallback (other GPUs, other layouts)."""
    if _interpreting():
        cfg = dict(BLOCK_M=16, BLOCK_N=16, num_warps=1, num_stages=1, QUERIES=4)
    elif kind == "fwd":
        if d <= 64 and dtype != torch.float32 and w2 >= 64:
            cfg = dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=3, TMA=True, PER_QUERY=True, QUERIES=16,
                       maxnreg=168, GLUON=True)
        elif d <= 64 and dtype != torch.float32 and w1 >= 1024:
            cfg = dict(BLOCK_M=64, BLOCK_N=128, num_warps=4, num_stages=3, TMA=True, RELOAD=True, GLUON=True)
        elif d <= 64 and dtype != torch.float32:
            cfg = dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=3, TMA=True, RELOAD=True, maxnreg=168,
                       GLUON=True)
        elif d <= 64:
            cfg = dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=3)
        elif d <= 128:
            cfg = dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=3, TMA=True, RELOAD=True, GLUON=True)
        else:
            cfg = dict(BLOCK_M=32, BLOCK_N=32, num_warps=4, num_stages=2, RELOAD=True)
    elif kind == "bwd_dq":
        if d <= 64:
            cfg = dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=3, TMA=True, RELOAD=True, GLUON=True)
        elif d <= 128:
            cfg = dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=2, TMA=True, RELOAD=True, SPLIT=True,
                       DQ_ATOMIC=True, GLUON=True)
        else:
            cfg = dict(BLOCK_M=16, BLOCK_N=32, num_warps=4, num_stages=1, RELOAD=True)
    else:  # bwd_dk1: BLOCK_N k1 rows per program, BLOCK_M query rows per inner tile
        if d <= 64:
            cfg = dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=2, GLUON=True)
        elif d <= 128:
            cfg = dict(BLOCK_M=32, BLOCK_N=128, num_warps=8, num_stages=2, GLUON=True)
        else:
            cfg = dict(BLOCK_M=16, BLOCK_N=32, num_warps=4, num_stages=1)
    if dtype == torch.float32 and not _interpreting():
        # fp32 tiles are twice the bytes: halve the larger block to stay in shared memory / registers
        cfg = dict(cfg, BLOCK_M=max(16, cfg["BLOCK_M"] // 2) if d >= 128 else cfg["BLOCK_M"])
        cfg["num_stages"] = min(cfg["num_stages"], 2)
    cfg.update(CONFIG_OVERRIDE.get(kind, {}))
    return cfg


def _launch_options(cfg: dict) -> dict:
    """Compiler options of a launch: warps, pipeline stages and, where cfg sets it, a register cap per thread
    (maxnreg: fewer registers let more programs share an SM, at the price of spills)."""
    opts = dict(num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    if cfg.get("maxnreg"):
        opts["maxnreg"] = cfg["maxnreg"]
    return opts


def _gluon_kernels(cfg: dict, has_config: bool, *tensors):
    """The Gluon kernels module where cfg asks for it (GLUON), the head dim has a Gluon config and the inputs allow
    it (simplicial_attention_gluon.applies: Hopper, 16-bit, heads packed in rows); else None and the tl kernel runs.
    Imported here, at first use, so that machines without Hopper or without Gluon never load it."""
    if not (cfg.get("GLUON") and has_config):
        return None
    try:
        from triton_kernels import simplicial_attention_gluon
    except ImportError:  # a triton without Gluon's Hopper module
        return None
    return simplicial_attention_gluon if simplicial_attention_gluon.applies(*tensors) else None


def _dot_prec(dtype: torch.dtype) -> str:
    # fp32 inputs: full-precision products (TF32 would miss the 1e-4 tolerance); ignored for fp16/bf16
    return "ieee" if dtype == torch.float32 else "tf32"


def _s3(t: torch.Tensor):
    return t.stride(0), t.stride(1), t.stride(2)


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _tma_descriptors(cfg: dict, k1, k2, v1, v2):
    """[B, N, H, D] tensor descriptors for (k1, k2, v1, v2) with the kernel's row blocks, and whether the kernel uses
    them: only where cfg asks for TMA and the tensors allow it (16-byte aligned bases and strides); otherwise four
    Nones and pointer loads."""
    tensors = (k1, k2, v1, v2)
    usable = all(t.data_ptr() % 16 == 0 and all(st * t.element_size() % 16 == 0 for st in t.stride()[:-1])
                 for t in tensors)
    if not (cfg.get("TMA", False) and usable and TensorDescriptor is not None):
        return (None,) * 4, False
    rows = (cfg["BLOCK_N"], cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["BLOCK_M"])  # k1/v1 tiles; k2/v2 query-aligned rows
    return tuple(TensorDescriptor(t, list(t.shape), list(t.stride()), [1, r, 1, t.shape[3]])
                 for t, r in zip(tensors, rows)), True


def _forward(q, k1, k2, v1, v2, w1, w2, sm_scale):
    b, n, hq, d = q.shape
    hkv = k1.shape[2]
    out = _new((b, n, hq, d), q, q.dtype)
    lse = _new((b, hq, n), q, torch.float32)
    cfg = _config("fwd", d, q.dtype, w1, w2)
    gluon_kernels = _gluon_kernels(cfg, d in GLUON_FWD_CONFIG, q, k1, k2, v1, v2)
    if gluon_kernels is not None:
        LAUNCHED["fwd"] = gluon_kernels.forward(q, k1, k2, v1, v2, w1, w2, sm_scale * _LOG2E, out, lse,
                                                gluon_fwd_config(d, w1))
        return out, lse
    if cfg.get("PER_QUERY"):
        return _forward_per_query(q, k1, k2, v1, v2, w1, w2, sm_scale, out, lse, cfg)
    grid = (triton.cdiv(n, cfg["BLOCK_M"]) * b * hq,)
    descs, tma = _tma_descriptors(cfg, k1, k2, v1, v2)
    LAUNCHED["fwd"] = _simplicial_fwd[grid](
        q, k1, k2, v1, v2, out, lse, *descs,
        *_s3(q), *_s3(k1), *_s3(k2), *_s3(v1), *_s3(v2), *_s3(out),
        n, w1, w2, sm_scale * _LOG2E,
        H=hq, GROUP=hq // hkv, HEAD_DIM=d,
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], DOT_PREC=_dot_prec(q.dtype),
        TMA=tma, RELOAD=cfg.get("RELOAD", False), **_launch_options(cfg),
    )
    return out, lse


def _forward_per_query(q, k1, k2, v1, v2, w1, w2, sm_scale, out, lse, cfg):
    """The per-query form's launch (_simplicial_fwd_per_query): QUERIES queries of one head per program."""
    b, n, hq, d = q.shape
    grid = (triton.cdiv(n, cfg["QUERIES"]) * b * hq,)
    descs, tma = _tma_descriptors(cfg, k1, k2, v1, v2)
    LAUNCHED["fwd"] = _simplicial_fwd_per_query[grid](
        q, k1, k2, v1, v2, out, lse, *descs,
        *_s3(q), *_s3(k1), *_s3(k2), *_s3(v1), *_s3(v2), *_s3(out),
        n, w1, w2, sm_scale * _LOG2E,
        H=hq, GROUP=hq // k1.shape[2], HEAD_DIM=d,
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], QUERIES=cfg["QUERIES"], DOT_PREC=_dot_prec(q.dtype),
        TMA=tma, **_launch_options(cfg),
    )
    return out, lse


def _backward_delta(do, out):
    """delta_i = <o_i, do_i> (fp32, [B, Hq, N])."""
    b, n, hq, d = out.shape
    delta = _new((b, hq, n), out, torch.float32)
    pre_m = 16 if _interpreting() else 64
    _simplicial_bwd_preprocess[(triton.cdiv(n, pre_m) * b * hq,)](
        out, do, delta, *_s3(out), *_s3(do), n, H=hq, HEAD_DIM=d, BLOCK_M=pre_m,
    )
    return delta


def _backward_dq_dk2dv2(do, q, k1, k2, v1, v2, lse, delta, w1, w2, sm_scale):
    b, n, hq, d = q.shape
    hkv = k1.shape[2]
    cfg = _config("bwd_dq", d, q.dtype)
    gluon_kernels = _gluon_kernels(cfg, d in GLUON_DQ_CONFIG, q, k1, k2, v1, v2, do)
    gluon_cfg = None if gluon_kernels is None else GLUON_DQ_CONFIG[d]
    dq_atomic = (gluon_cfg or cfg).get("DQ_ATOMIC", False)
    dq_shape = (b, n, hq, d)
    dq = torch.zeros(dq_shape, device=q.device, dtype=torch.float32) if dq_atomic else _new(dq_shape, q, q.dtype)
    dk2 = torch.zeros((b, n, hkv, d), device=q.device, dtype=torch.float32)
    dv2 = torch.zeros((b, n, hkv, d), device=q.device, dtype=torch.float32)
    if gluon_cfg is not None:
        kernels = gluon_kernels.backward_dq_dk2dv2(do, q, k1, k2, v1, v2, lse, delta, w1, w2, sm_scale, dq, dk2, dv2,
                                                   gluon_cfg)
        LAUNCHED["bwd_dq"] = kernels[0]
        if len(kernels) == 2:  # SPLIT: the dV2 launch
            LAUNCHED["bwd_dq_w"] = kernels[1]
        return dq.to(q.dtype), dk2.to(q.dtype), dv2.to(q.dtype)
    descs, tma = _tma_descriptors(cfg, k1, k2, v1, v2)
    grid = (triton.cdiv(n, cfg["BLOCK_M"]) * b * hq,)
    for part in ((1, 2) if cfg.get("SPLIT", False) else (0,)):
        LAUNCHED["bwd_dq_w" if part == 2 else "bwd_dq"] = _simplicial_bwd_dq_dk2dv2[grid](
            q, k1, k2, v1, v2, do, lse, delta, dq, dk2, dv2, *descs,
            *_s3(q), *_s3(k1), *_s3(k2), *_s3(v1), *_s3(v2), *_s3(do), *_s3(dq), *_s3(dk2),
            n, w1, w2, sm_scale * _LOG2E, sm_scale,
            H=hq, GROUP=hq // hkv, HEAD_DIM=d,
            BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], DOT_PREC=_dot_prec(q.dtype),
            TMA=tma, RELOAD=cfg.get("RELOAD", False), PART=part, DQ_ATOMIC=dq_atomic,
            **_launch_options(cfg),
        )
    return dq.to(q.dtype), dk2.to(q.dtype), dv2.to(q.dtype)


def _backward_dk1dv1(do, q, k1, k2, v1, v2, lse, delta, w1, w2, sm_scale):
    b, n, hq, d = q.shape
    hkv = k1.shape[2]
    dk1 = _new((b, n, hkv, d), q, q.dtype)
    dv1 = _new((b, n, hkv, d), q, q.dtype)
    cfg = _config("bwd_dk1", d, q.dtype)
    gluon_kernels = _gluon_kernels(cfg, d in GLUON_DK1_CONFIG, q, k1, k2, v1, v2, do)
    if gluon_kernels is not None:
        LAUNCHED["bwd_dk1"] = gluon_kernels.backward_dk1dv1(do, q, k1, k2, v1, v2, lse, delta, w1, w2,
                                                            sm_scale * _LOG2E, dk1, dv1, GLUON_DK1_CONFIG[d])
        return dk1, dv1
    LAUNCHED["bwd_dk1"] = _simplicial_bwd_dk1dv1[(triton.cdiv(n, cfg["BLOCK_N"]) * b * hkv,)](
        q, k1, k2, v1, v2, do, lse, delta, dk1, dv1,
        *_s3(q), *_s3(k1), *_s3(k2), *_s3(v1), *_s3(v2), *_s3(do), *_s3(dk1),
        n, w1, w2, sm_scale * _LOG2E,
        HKV=hkv, GROUP=hq // hkv, HEAD_DIM=d,
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], DOT_PREC=_dot_prec(q.dtype), **_launch_options(cfg),
    )
    return dk1, dv1


# Whether the backward runs its two kernels side by side on two CUDA streams (a benchmark switches it off to compare).
BACKWARD_STREAMS = True
_SIDE_STREAMS: dict[torch.device, torch.cuda.Stream] = {}  # one per device, for _on_two_streams


def _on_two_streams(first, second):
    """(first(), second()) with first on a side stream and second on the current one, joined before returning. The
    dQ and dK1 kernels are independent: side by side, the second fills the SMs the first's last wave leaves idle
    (f+b 0.8-0.9% faster at the target shape, benchmarks/results/backward-2026-11-27-v8.md)."""
    main = torch.cuda.current_stream()
    side = _SIDE_STREAMS.get(main.device)
    if side is None:
        side = _SIDE_STREAMS[main.device] = torch.cuda.Stream(main.device)
    side.wait_stream(main)  # its inputs are ready
    with torch.cuda.stream(side):
        a = first()
    b = second()
    main.wait_stream(side)
    for t in a:
        t.record_stream(main)  # allocated on the side stream, used and freed on the caller's
    return a, b


def _backward(do, q, k1, k2, v1, v2, out, lse, w1, w2, sm_scale):
    do = _last_dim_contiguous(do)
    delta = _backward_delta(do, out)

    def dq_dk2dv2():
        return _backward_dq_dk2dv2(do, q, k1, k2, v1, v2, lse, delta, w1, w2, sm_scale)

    def dk1dv1():
        return _backward_dk1dv1(do, q, k1, k2, v1, v2, lse, delta, w1, w2, sm_scale)

    if q.is_cuda and BACKWARD_STREAMS:
        (dq, dk2, dv2), (dk1, dv1) = _on_two_streams(dq_dk2dv2, dk1dv1)
    else:  # the interpreter (CPU tensors)
        (dq, dk2, dv2), (dk1, dv1) = dq_dk2dv2(), dk1dv1()
    return dq, dk1, dk2, dv1, dv2


class _TwoSimplicialAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k1, k2, v1, v2, w1, w2, sm_scale):
        q, k1, k2, v1, v2 = (_last_dim_contiguous(t) for t in (q, k1, k2, v1, v2))
        out, lse = _forward(q, k1, k2, v1, v2, w1, w2, sm_scale)
        ctx.save_for_backward(q, k1, k2, v1, v2, out, lse)
        ctx.w1, ctx.w2, ctx.sm_scale = w1, w2, sm_scale
        return out

    @staticmethod
    def backward(ctx, do):
        q, k1, k2, v1, v2, out, lse = ctx.saved_tensors
        dq, dk1, dk2, dv1, dv2 = _backward(do, q, k1, k2, v1, v2, out, lse, ctx.w1, ctx.w2, ctx.sm_scale)
        return dq, dk1, dk2, dv1, dv2, None, None, None


def two_simplicial_attention_triton(q, k1, k2, v1, v2, w1, w2, sm_scale=None):
    """Triton path of `triton_kernels.two_simplicial_attention` (inputs already validated there)."""
    n, d = q.shape[1], q.shape[3]
    scale = 1.0 / math.sqrt(d) if sm_scale is None else float(sm_scale)
    # windows longer than the sequence act as the sequence
    w1e, w2e = min(int(w1), n), min(int(w2), n)
    if scale <= 0.0:
        # The kernels apply a positive scale to the unscaled product's logits after their row max (_unscaled_product);
        # a negative scale's sign (or a zero scale) moves into q: scale * q.k1.k2 = |scale| * (sign * q).k1.k2.
        q, scale = q * (-1.0 if scale < 0.0 else 0.0), (-scale if scale < 0.0 else 1.0)
    return _TwoSimplicialAttention.apply(q, k1, k2, v1, v2, w1e, w2e, scale)
