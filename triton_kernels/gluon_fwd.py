"""Gluon forward of 2-simplicial attention for Hopper (sm_90), 16-bit, D = 64 and 128: the packed, warp-specialised
kernel `_simplicial_fwd_packed_gluon`. Same math and outputs as triton_fwd.py (out and the base-2 log-sum-exp).

Tiling: packed rows. The tl kernel's tile is 64 consecutive queries at one offset t, whose k1 windows (one column
apart) span w1 + 63 columns: at w1 = 512 an eighth of the S and P @ V1 work is masked away, at w1 = 128 a third.
Here a tile's 64 rows are QUERIES = 8 queries x OFFSETS = 8 offsets: row q * 8 + s is query i0 + q at offset
t0 + 7 - s, so a tile's k1 windows span w1 + 7 columns, taken as wide tiles of 64 plus one narrow TAIL tile of 16.
The offset fold: for one offset group the rows' K2 rows i0 + q - t form one TMA block (a "diagonal" descriptor
whose two leading dims both step one row), so the S GEMM's A operand Q * K2 is formed in registers without data
movement (`_packed_operand`); each row keeps its own online softmax over its offsets, and at the end of an offset
group acc_t is folded into the output accumulator with the group's V2 rows (acc = acc * scale + acc_t * V2,
`_fold_tile`). At the end of a query group its rows' (m, l, acc), one warp per query, merge into the 8 queries'
outputs and LSE (`_packed_store`).

Roles (gluon_common.py): a producer warpgroup issues every TMA load: per query group its Q rows; per offset group the
K2 rows, the K1 / V1 tiles through a ring of NUM_BUF slots (tail first), then the V2 rows. One or two consumer
warpgroups form the products, run the wgmmas and the softmax, and hand each slot back.

Defaults (plan.py, each row with its measurement; bf16, B=4, H=8, N=8192 on an H100):
  * RESIDENT: where a query group's whole k1 window fits the slots (w1 + 7 <= 2 * 64 + 16 at two slots, <= 4 * 64 +
    16 at four), it is loaded once for all the group's offsets instead of once per offset; only K2 / V2 stream.
    1.36x the query-tile kernel at (128, 128), D=128; 1.16x at D=64 (two slots, three programs per SM).
  * PAIRED (D=64): two K1 tiles per softmax step (one row max and one rescale for 128 columns): 1.01-1.07x.
  * CONSUMERS=2 (D=128): two adjacent query groups, one consumer warpgroup each (240 registers, one program per SM),
    share one window, resident (w1 <= 257) or streamed once per offset group for both (w1 >= 258): 1.08-1.11x the
    query-tile kernels at (512, 32).
  * OPAQUE_SLOTS: a resident window's first slots and tail are indexed through an opaque zero, so that the compiler
    forms their shared-memory descriptors where used instead of hoisting and spilling them (8 -> 0 and 18 -> 2 spill
    slots at D=128, 1.07-1.10x).
  * FRESH masks (`_masked`): the window mask is recomputed per step from an opaque row index; hoisted, the
    row - column differences stayed live and spilled 68 slots.
At the target shape this forward runs at 0.73x (D=64) and 0.78x (D=128) of torch's SDPA at the FLOP-equal causal
length (H200, benchmarks/results/kernels-issue4-2026-11.md, v18).
"""

from __future__ import annotations

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from .gluon_common import (PRODUCER_WARPS, _barriers, _descriptor, _fold_tile, _load_k1v1_tile, _mma_layout,
                           _opaque, _pair_step, _query_program, _release, _ring_wait, _rows_view, _smem_layout)
from .triton_common import base2_scale, new_output


@gluon.jit
def _load_k1v1(k1_desc, v1_desc, k1_dst, v1_dst, bar, row, col_k):
    """K1 and V1 rows row.. into k1_dst / v1_dst, both under barrier `bar` (the packed forward's resident window)."""
    mbarrier.expect(bar, k1_desc.block_type.nbytes + v1_desc.block_type.nbytes)
    tma.async_copy_global_to_shared(k1_desc, [row, col_k], bar, k1_dst)
    tma.async_copy_global_to_shared(v1_desc, [row, col_k], bar, v1_dst)


# --------------------------------------------------------------------------------------------------------------------
# the packed forward: each 64-row tile holds QUERIES queries x OFFSETS offsets (module docstring)
# --------------------------------------------------------------------------------------------------------------------


@gluon.jit
def _packed_windows(i0u, i0, N, W1, W2, QUERIES: gl.constexpr, OFFSETS: gl.constexpr, BLOCK_N: gl.constexpr,
                    TAIL: gl.constexpr, SPAN: gl.constexpr):
    """The k1 columns of queries i0u..i0u+SPAN-1 (the union of their windows: a program's query groups that share
    one window) as n_wide tiles of BLOCK_N from lo and, where at most TAIL columns are left beside a wide tile, one
    narrow tail tile (tail 0 or 1) at column lo + n_wide * BLOCK_N; for the query group i0..i0+QUERIES-1 among them,
    [full_lo, full_hi), the columns inside every query's window, and n_groups, the offset groups of OFFSETS that
    reach a k2 row >= 0."""
    lo = gl.maximum(i0u - W1 + 1, 0)
    hi = gl.minimum(i0u + SPAN, N)
    n_wide = (hi - lo) // BLOCK_N
    rest = hi - lo - n_wide * BLOCK_N
    tail = ((rest > 0) & (rest <= TAIL) & (n_wide > 0)).to(gl.int32)
    n_wide = gl.where((rest > 0) & (tail == 0), n_wide + 1, n_wide)
    full_lo = gl.maximum(i0 + QUERIES - W1, lo)
    full_hi = gl.minimum(i0 + 1, hi)
    n_groups = gl.minimum(gl.cdiv(W2, OFFSETS), (i0 + QUERIES - 1) // OFFSETS + 1)
    return lo, n_wide, tail, full_lo, full_hi, n_groups


@gluon.jit
def _load_packed_rows(desc, diag_desc, smem, bar, base, col, QUERIES: gl.constexpr):
    """An offset group's K2 (or V2) rows into its [QUERIES * OFFSETS, D] buffer: row q * OFFSETS + s is row
    base + q + s (row i0 + q - t of query i0 + q at offset t = t0 + OFFSETS - 1 - s). One TMA load through diag_desc,
    a view of the rows whose first two dims both step one row (eight loads of 8 rows each: 1.11-1.15x slower at
    (128, 128), D=64); where base < 0 (the first rows of the tensor, which that load would zero by the whole block of a
    query) one load of OFFSETS rows per query."""
    mbarrier.expect(bar, diag_desc.block_type.nbytes)
    if base >= 0:
        tma.async_copy_global_to_shared(diag_desc, [base, 0, col], bar,
                                        smem._reinterpret(smem.dtype, diag_desc.block_type.shape, diag_desc.layout))
    else:
        OFFSETS: gl.constexpr = desc.block_type.shape[0]
        for q in gl.static_range(QUERIES):
            tma.async_copy_global_to_shared(desc, [base + q, col], bar, smem.slice(q * OFFSETS, OFFSETS))


@gluon.jit
def _load_packed_group(desc, diag_desc, smem, ready, empty, phase, base, col, QUERIES: gl.constexpr):
    """Once the consumer freed its buffer (`empty` completed the phase before `phase`), an offset group's K2 or V2
    rows into it (_load_packed_rows)."""
    mbarrier.wait(empty, phase ^ 1)
    _load_packed_rows(desc, diag_desc, smem, ready, base, col, QUERIES)


@gluon.jit
def _load_window_tiles(k1_desc, v1_desc, k1_s, v1_s, kv_ready, kv_empty, step, row0, lo, n_wide, tail, col_k,
                       BLOCK_N: gl.constexpr, NUM_BUF: gl.constexpr):
    """An offset group's K1 / V1 tiles through the ring from step `step`: the tail first (j = 0 where there is one,
    a whole tile of which the consumer reads TAIL rows), then the n_wide wide tiles from column lo (row0 + lo).
    Returns the ring step after them."""
    for j in range(0, n_wide + tail):
        col = gl.where(j < tail, n_wide, j - tail)
        _load_k1v1_tile(k1_desc, v1_desc, k1_s, v1_s, kv_ready, kv_empty, step, row0 + lo + col * BLOCK_N, col_k,
                        NUM_BUF)
        step += 1
    return step


@gluon.jit
def _packed_producer(q_desc, k1_desc, v1_desc, k2_desc, v2_desc, k2_diag, v2_diag, k1t_desc, v1t_desc, q_s, k1_s,
                     v1_s, k2_s, v2_s, k1t_s, v1t_s, q_ready, q_empty, kv_ready, kv_empty, k2_ready, k2_empty,
                     v2_ready, v2_empty, tail_ready, row0, col_q, col_k, program_m, N, W1, W2, BLOCK_M: gl.constexpr,
                     QUERIES: gl.constexpr, BLOCK_N: gl.constexpr, TAIL: gl.constexpr, NUM_BUF: gl.constexpr,
                     RESIDENT: gl.constexpr, OPAQUE_SLOTS: gl.constexpr, CONSUMERS: gl.constexpr):
    """Every TMA load of a packed program in the consumers' order: per query group its QUERIES Q rows; per offset
    group the K2 rows, the K1 / V1 tiles (the tail first, as a whole tile of which the consumer reads TAIL rows), then
    the V2 rows. RESIDENT: the query groups' K1 / V1 window once instead, into the NUM_BUF slots it needs and the
    tail buffers (each under its own barrier, and every barrier completes once per window), once the consumers have
    handed the previous window back (kv_empty[0]). With CONSUMERS=2 two query groups share each window (resident
    or streamed once per offset group for both), one per consumer, each with its own Q, K2 and V2 buffers: their
    offset groups' K2 (and V2) loads alternate."""
    OFFSETS: gl.constexpr = BLOCK_M // QUERIES
    SPAN: gl.constexpr = QUERIES * CONSUMERS
    step = 0
    grp0 = 0  # offset groups loaded so far for consumer 0 (and 1): their K2 / V2 buffers' phases
    grp1 = 0
    g = 0
    for i0 in range(program_m, gl.minimum(program_m + BLOCK_M, N), SPAN):
        lo, n_wide, tail, _, _, ng0 = _packed_windows(i0, i0, N, W1, W2, QUERIES, OFFSETS, BLOCK_N, TAIL, SPAN)
        for c in gl.static_range(CONSUMERS):
            if i0 + c * QUERIES < N:
                mbarrier.wait(q_empty.index(c), (g & 1) ^ 1)
                mbarrier.expect(q_ready.index(c), q_desc.block_type.nbytes)
                tma.async_copy_global_to_shared(q_desc, [row0 + i0 + c * QUERIES, col_q], q_ready.index(c),
                                                q_s.index(c))
        if RESIDENT:
            mbarrier.wait(kv_empty.index(0), (g & 1) ^ 1)
            for j in gl.static_range(NUM_BUF):
                if j < n_wide:
                    _load_k1v1(k1_desc, v1_desc, k1_s.index(j), v1_s.index(j), kv_ready.index(j),
                               row0 + lo + j * BLOCK_N, col_k)
                else:  # a slot this window does not need: its barrier completes without a load
                    mbarrier.arrive(kv_ready.index(j), count=1)
            if OPAQUE_SLOTS:
                _load_k1v1(k1t_desc, v1t_desc, k1t_s.index(0), v1t_s.index(0), tail_ready,
                           row0 + lo + n_wide * BLOCK_N, col_k)
            else:
                _load_k1v1(k1t_desc, v1t_desc, k1t_s, v1t_s, tail_ready, row0 + lo + n_wide * BLOCK_N, col_k)
        n_groups = ng0
        if CONSUMERS == 2:
            _, _, _, _, _, ng1 = _packed_windows(i0, i0 + QUERIES, N, W1, W2, QUERIES, OFFSETS, BLOCK_N, TAIL, SPAN)
            ng1 = gl.where(i0 + QUERIES < N, ng1, 0)
            n_groups = gl.maximum(ng0, ng1)
        for u in range(0, n_groups):
            base = row0 + i0 - u * OFFSETS - (OFFSETS - 1)
            if CONSUMERS == 2:
                if u < ng0:
                    _load_packed_group(k2_desc, k2_diag, k2_s.index(0), k2_ready.index(0), k2_empty.index(0),
                                       (grp0 + u) & 1, base, col_k, QUERIES)
                if u < ng1:
                    _load_packed_group(k2_desc, k2_diag, k2_s.index(1), k2_ready.index(1), k2_empty.index(1),
                                       (grp1 + u) & 1, base + QUERIES, col_k, QUERIES)
                if not RESIDENT:  # one pass of the shared window for both consumers (each signs every tile off)
                    step = _load_window_tiles(k1_desc, v1_desc, k1_s, v1_s, kv_ready, kv_empty, step, row0, lo, n_wide,
                                              tail, col_k, BLOCK_N, NUM_BUF)
                if u < ng0:
                    _load_packed_group(v2_desc, v2_diag, v2_s.index(0), v2_ready.index(0), v2_empty.index(0),
                                       (grp0 + u) & 1, base, col_k, QUERIES)
                if u < ng1:
                    _load_packed_group(v2_desc, v2_diag, v2_s.index(1), v2_ready.index(1), v2_empty.index(1),
                                       (grp1 + u) & 1, base + QUERIES, col_k, QUERIES)
            else:
                _load_packed_group(k2_desc, k2_diag, k2_s.index(0), k2_ready.index(0), k2_empty.index(0),
                                   (grp0 + u) & 1, base, col_k, QUERIES)
                if not RESIDENT:
                    step = _load_window_tiles(k1_desc, v1_desc, k1_s, v1_s, kv_ready, kv_empty, step, row0, lo, n_wide,
                                              tail, col_k, BLOCK_N, NUM_BUF)
                # one V2 buffer: the previous group's fold is done
                _load_packed_group(v2_desc, v2_diag, v2_s.index(0), v2_ready.index(0), v2_empty.index(0),
                                   (grp0 + u) & 1, base, col_k, QUERIES)
        grp0 += ng0
        if CONSUMERS == 2:
            grp1 += ng1
        g += 1


@gluon.jit
def _packed_operand(q_s, k2_s, a_layout: gl.constexpr, QUERIES: gl.constexpr, OFFSETS: gl.constexpr,
                    HEAD_DIM: gl.constexpr):
    """The S GEMM's A operand of an offset group, row q * OFFSETS + s = q_{i0+q} * k2 row (a packed 16-bit multiply:
    the exact product rounded once). Q is read as its QUERIES rows, in the layout of K2 viewed as [QUERIES, OFFSETS,
    D] less the OFFSETS axis: a wgmma A operand's row r sits in lanes by r % 8, so every lane of a query's rows reads
    the same Q row (a shared-memory broadcast) and the product needs no data movement."""
    k2 = gl.reshape(k2_s.load(a_layout), [QUERIES, OFFSETS, HEAD_DIM])
    q = q_s.load(gl.SliceLayout(1, k2.type.layout))
    return gl.convert_layout(gl.reshape(gl.expand_dims(q, 1) * k2, [QUERIES * OFFSETS, HEAD_DIM]), a_layout,
                             assert_trivial=True)


@gluon.jit
def _packed_store(acc, m_i, l_i, Out, Lse, out_base, lse_base, stride_on, i0, N, QUERIES: gl.constexpr,
                  OFFSETS: gl.constexpr, row_o: gl.constexpr):
    """Merge each query's OFFSETS rows (m, l, acc), one online softmax each, into its output row and base-2 LSE.
    A query's rows sit in one warp (wgmma rows 16w + 8h + lane // 4), so the merge is a reduction across lanes."""
    m = gl.reshape(gl.convert_layout(m_i, row_o), [QUERIES, OFFSETS])
    m_q = gl.max(m, 1)
    m_q = gl.where(m_q == float("-inf"), 0.0, m_q)
    w = gl.exp2(m - gl.expand_dims(m_q, 1))  # each row's weight in its query's sums
    l_q = gl.sum(gl.reshape(gl.convert_layout(l_i, row_o), [QUERIES, OFFSETS]) * w, 1)
    l_q = gl.where(l_q > 0.0, l_q, 1.0)
    w = gl.convert_layout(gl.reshape(w, [QUERIES * OFFSETS]), row_o)
    out = gl.sum(gl.reshape(acc * gl.expand_dims(w, 1), [QUERIES, OFFSETS, acc.shape[1]]), 1)
    layout: gl.constexpr = out.type.layout
    out = out / gl.expand_dims(gl.convert_layout(l_q, gl.SliceLayout(1, layout)), 1)
    offs_q = i0 + gl.arange(0, QUERIES, layout=gl.SliceLayout(1, layout))
    offs_d = gl.arange(0, acc.shape[1], layout=gl.SliceLayout(0, layout))
    ptrs = Out + out_base + gl.expand_dims(offs_q.to(gl.int64) * stride_on, 1) + gl.expand_dims(offs_d, 0)
    gl.store(ptrs, out.to(Out.dtype.element_ty), mask=gl.expand_dims(offs_q < N, 1))
    lse_q = i0 + gl.arange(0, QUERIES, layout=l_q.type.layout)
    gl.store(Lse + lse_base + lse_q, m_q + gl.log2(l_q), mask=lse_q < N)


@gluon.jit
def _window_slot(kv_ready, step, j, NUM_BUF: gl.constexpr, RESIDENT: gl.constexpr):
    """Wide tile j's K1 / V1 slot: resident, slot j; streamed, ring step `step`'s slot once its load landed."""
    if RESIDENT:
        return j
    else:
        return _ring_wait(kv_ready, step, NUM_BUF)


@gluon.jit
def _window_release(kv_empty, sa, sb, RESIDENT: gl.constexpr):
    """Hand streamed slots sa (and sb, unless None) back after their step; a resident window goes back whole, after
    the query group's last offset group."""
    if not RESIDENT:
        if sb is None:
            _release(kv_empty.index(sa))
        else:
            _release(kv_empty.index(sa), kv_empty.index(sb))


@gluon.jit
def _packed_group(qk2, k1_s, v1_s, k1t_s, v1t_s, kv_ready, kv_empty, ring, s_zero, m_i, l_i, acc_t, scale_t, offs_m,
                  offs_n, m_ok, rows_cut, lo, n_wide, tail, full_lo, full_hi, t, W1, qk_scale, BLOCK_N: gl.constexpr,
                  TAIL: gl.constexpr, NUM_BUF: gl.constexpr, PAIRED: gl.constexpr, RESIDENT: gl.constexpr,
                  OPAQUE_SLOTS: gl.constexpr, p_layout: gl.constexpr, row_o: gl.constexpr):
    """An offset group's steps over its K1 / V1 tiles: the tail (TAIL columns) with the first step, then the wide
    tiles two per step with PAIRED (an odd one alone), else one. Streamed, from ring step `ring`: the tail first, as a
    whole slot of which the step reads TAIL rows, then wide tile j at ring step ring + tail + j, each slot handed back
    after its step. RESIDENT: wide tile j in slot j, the tail in k1t_s / v1t_s. OPAQUE_SLOTS (resident): the first
    slots and the tail are indexed through an opaque zero, so that the compiler computes their shared-memory
    descriptors where they are used; as constants it hoists them out of every loop and spills them (compile_report:
    8 slots at D=128, w1 <= 128, 0 opaque; 30 -> 0 with PAIRED at D=64; the resident defaults at D=128 and at D=64
    with PAIRED since v14). Returns (m_i, l_i, acc_t, scale_t, the next offset group's ring step)."""
    first = 0
    if TAIL > 0:
        if tail == 1:
            if RESIDENT:
                if OPAQUE_SLOTS:
                    sa = _opaque(0)
                    k1_c = k1t_s.index(sa)
                    v1_c = v1t_s.index(sa)
                else:
                    sa = 0
                    k1_c = k1t_s
                    v1_c = v1t_s
            else:
                c = _ring_wait(kv_ready, ring, NUM_BUF)
                k1_c = k1_s.index(c).slice(0, TAIL)
                v1_c = v1_s.index(c).slice(0, TAIL)
                sa = _ring_wait(kv_ready, ring + 1, NUM_BUF)
            if PAIRED and n_wide >= 2:
                sb = _window_slot(kv_ready, ring + 2, sa + 1, NUM_BUF, RESIDENT)
                m_i, l_i, acc_t, scale_t = _pair_step(qk2, k1_s.index(sa), v1_s.index(sa), k1_s.index(sb),
                                                      v1_s.index(sb), s_zero, m_i, l_i, acc_t, scale_t, offs_m, offs_n,
                                                      m_ok, rows_cut, lo, full_lo, full_hi, t, 0, W1, qk_scale,
                                                      BLOCK_N, p_layout, row_o, k1_c, v1_c, lo + n_wide * BLOCK_N,
                                                      FRESH=True)
                _window_release(kv_empty, sa, sb, RESIDENT)
                first = 2
            else:  # one wide tile (a tail is only ever beside one)
                m_i, l_i, acc_t, scale_t = _pair_step(qk2, k1_s.index(sa), v1_s.index(sa), None, None, s_zero, m_i,
                                                      l_i, acc_t, scale_t, offs_m, offs_n, m_ok, rows_cut, lo, full_lo,
                                                      full_hi, t, 0, W1, qk_scale, BLOCK_N, p_layout, row_o, k1_c,
                                                      v1_c, lo + n_wide * BLOCK_N, FRESH=True)
                _window_release(kv_empty, sa, None, RESIDENT)
                first = 1
            if not RESIDENT:
                _release(kv_empty.index(c))
    if not RESIDENT:
        ring += tail
    if PAIRED:
        for j in range(first, n_wide - 1, 2):
            sa = _window_slot(kv_ready, ring + j, j, NUM_BUF, RESIDENT)
            sb = _window_slot(kv_ready, ring + j + 1, j + 1, NUM_BUF, RESIDENT)
            m_i, l_i, acc_t, scale_t = _pair_step(qk2, k1_s.index(sa), v1_s.index(sa), k1_s.index(sb), v1_s.index(sb),
                                                  s_zero, m_i, l_i, acc_t, scale_t, offs_m, offs_n, m_ok, rows_cut,
                                                  lo + j * BLOCK_N, full_lo, full_hi, t, j, W1, qk_scale, BLOCK_N,
                                                  p_layout, row_o, FRESH=True)
            _window_release(kv_empty, sa, sb, RESIDENT)
        first = gl.where((n_wide - first) % 2 == 1, n_wide - 1, n_wide)  # the odd tile left, if any
    for j in range(first, n_wide):
        s = _window_slot(kv_ready, ring + j, j, NUM_BUF, RESIDENT)
        m_i, l_i, acc_t, scale_t = _pair_step(qk2, k1_s.index(s), v1_s.index(s), None, None, s_zero, m_i, l_i, acc_t,
                                              scale_t, offs_m, offs_n, m_ok, rows_cut, lo + j * BLOCK_N, full_lo,
                                              full_hi, t, j, W1, qk_scale, BLOCK_N, p_layout, row_o, FRESH=True)
        _window_release(kv_empty, s, None, RESIDENT)
    if not RESIDENT:
        ring += n_wide
    return m_i, l_i, acc_t, scale_t, ring


@gluon.jit
def _skip_shared_groups(kv_ready, kv_empty, ring, i0u, n_done, N, W1, W2, QUERIES: gl.constexpr, OFFSETS: gl.constexpr,
                        BLOCK_N: gl.constexpr, TAIL: gl.constexpr, SPAN: gl.constexpr, NUM_BUF: gl.constexpr):
    """A streamed window shared by two consumers: the producer streams it once per offset group of the query group
    with the most (the later one, where it starts before N), and each consumer signs off every ring step. After its
    own n_done offset groups, a consumer signs off the rest unread (each once its load landed, so that its arrival
    counts for that step's phase). Returns the ring step after the window."""
    last = gl.where(i0u + SPAN - QUERIES < N, i0u + SPAN - QUERIES, i0u)
    _, n_wide, tail, _, _, n_all = _packed_windows(i0u, last, N, W1, W2, QUERIES, OFFSETS, BLOCK_N, TAIL, SPAN)
    for k in range(0, (n_all - n_done) * (n_wide + tail)):
        s = _ring_wait(kv_ready, ring + k, NUM_BUF)
        _release(kv_empty.index(s))
    return ring + (n_all - n_done) * (n_wide + tail)


@gluon.jit
def _packed_offset_group(u, n_groups, qk_scale, window, tile_indices, offs_m, row_offset, q_s, k2_s, k2_ready, k2_empty,
                         q_empty, k1_s, v1_s, k1t_s, v1t_s, kv_ready, kv_empty, ring, grp, m_i, l_i, acc_t, scale_t, N,
                         W1, W2, i0, BLOCK_M: gl.constexpr, QUERIES: gl.constexpr, BLOCK_N: gl.constexpr,
                         TAIL: gl.constexpr, NUM_BUF: gl.constexpr, PAIRED: gl.constexpr, RESIDENT: gl.constexpr,
                         OPAQUE_SLOTS: gl.constexpr, a_layout: gl.constexpr, p_layout: gl.constexpr,
                         row_o: gl.constexpr):
    """Offset group u of a packed query group (row q * OFFSETS + s at offset u * OFFSETS + OFFSETS - 1 - s): its A
    operand Q * K2 (K2's buffer, and Q's after the last of n_groups, go back at once), then its steps over the window's
    K1 / V1 tiles (_packed_group). Returns (m_i, l_i, acc_t, scale_t, ring)."""
    OFFSETS: gl.constexpr = BLOCK_M // QUERIES
    HEAD_DIM: gl.constexpr = k2_s.shape[1]
    lo, n_wide, tail, full_lo, full_hi = window
    rows, offs_n, s_zero = tile_indices
    t = u * OFFSETS + row_offset
    m_ok = (offs_m < N) & (t < W2)
    rows_cut = (u * OFFSETS + OFFSETS > W2) | (u * OFFSETS + OFFSETS - 1 > i0)
    mbarrier.wait(k2_ready, grp & 1)
    qk2 = _packed_operand(q_s, k2_s, a_layout, QUERIES, OFFSETS, HEAD_DIM)
    if u == n_groups - 1:
        _release(k2_empty, q_empty)
    else:
        _release(k2_empty)
    return _packed_group(qk2, k1_s, v1_s, k1t_s, v1t_s, kv_ready, kv_empty, ring, s_zero, m_i, l_i, acc_t, scale_t,
                         offs_m, offs_n, m_ok, rows_cut, lo, n_wide, tail, full_lo, full_hi, t, W1, qk_scale, BLOCK_N,
                         TAIL, NUM_BUF, PAIRED, RESIDENT, OPAQUE_SLOTS, p_layout, row_o)


@gluon.jit
def _packed_query_group(tile_indices, k1_s, v1_s, k1t_s, v1t_s, q_s, k2_s, v2_s, q_ready, q_empty, kv_ready, kv_empty,
                        k2_ready, k2_empty, v2_ready, v2_empty, tail_ready, Out, Lse, stride_on, out_base, lse_base,
                        N, W1, W2, qk_scale, i0u, i0, ring, grp, g, HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr,
                        QUERIES: gl.constexpr, BLOCK_N: gl.constexpr, TAIL: gl.constexpr, NUM_BUF: gl.constexpr,
                        PAIRED: gl.constexpr, RESIDENT: gl.constexpr, OPAQUE_SLOTS: gl.constexpr, SPAN: gl.constexpr,
                        num_warps: gl.constexpr):
    """One query group (queries i0.., in the window of the SPAN queries from i0u) of a packed consumer. Per offset
    group: the A operand Q * K2 (row q * OFFSETS + s: q_{i0+q} * k2_{i0+q-t}); the steps over its K1 / V1 tiles,
    streamed through the ring or, with RESIDENT, from the window loaded once; the fold with the group's V2 rows.
    Then the merge and store. tile_indices: (rows, offs_n, s_zero), a tile's row and column indices and a zero S
    accumulator. Returns (ring, grp): the ring step and offset-group count after it."""
    OFFSETS: gl.constexpr = BLOCK_M // QUERIES
    s_layout: gl.constexpr = _mma_layout(num_warps, BLOCK_N)
    o_layout: gl.constexpr = _mma_layout(num_warps, HEAD_DIM)
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=s_layout, k_width=2)
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    row_s: gl.constexpr = gl.SliceLayout(1, s_layout)
    row_o: gl.constexpr = gl.SliceLayout(1, o_layout)
    rows, offs_n, s_zero = tile_indices
    row_offset = OFFSETS - 1 - rows % OFFSETS  # a row's offset within its group

    lo, n_wide, tail, full_lo, full_hi, n_groups = _packed_windows(i0u, i0, N, W1, W2, QUERIES, OFFSETS, BLOCK_N, TAIL,
                                                                   SPAN)
    offs_m = i0 + rows // OFFSETS
    mbarrier.wait(q_ready, g & 1)
    if RESIDENT:
        for slot in gl.static_range(NUM_BUF):
            mbarrier.wait(kv_ready.index(slot), g & 1)
        mbarrier.wait(tail_ready, g & 1)
    m_i = gl.full([BLOCK_M], float("-inf"), gl.float32, layout=row_s)
    l_i = gl.zeros([BLOCK_M], gl.float32, layout=row_s)
    scale_t = gl.full([BLOCK_M], 1.0, gl.float32, layout=row_s)
    acc = gl.zeros([BLOCK_M, HEAD_DIM], gl.float32, layout=o_layout)
    acc_t = gl.zeros([BLOCK_M, HEAD_DIM], gl.float32, layout=o_layout)
    window = (lo, n_wide, tail, full_lo, full_hi)
    for u in range(0, n_groups):
        m_i, l_i, acc_t, scale_t, ring = _packed_offset_group(
            u, n_groups, qk_scale, window, (rows, offs_n, s_zero), offs_m, row_offset, q_s, k2_s,
            k2_ready, k2_empty, q_empty, k1_s, v1_s, k1t_s, v1t_s, kv_ready, kv_empty, ring, grp, m_i, l_i, acc_t,
            scale_t, N, W1, W2, i0, BLOCK_M, QUERIES, BLOCK_N, TAIL, NUM_BUF, PAIRED, RESIDENT, OPAQUE_SLOTS,
            a_layout, p_layout, row_o)
        acc = _fold_tile(acc, acc_t, scale_t, v2_s, v2_ready, v2_empty, grp & 1, o_layout, row_o)
        grp += 1
    if RESIDENT:
        _release(kv_empty.index(0))  # the window
    elif SPAN > QUERIES:  # a streamed window shared with the other consumer's group
        ring = _skip_shared_groups(kv_ready, kv_empty, ring, i0u, n_groups, N, W1, W2, QUERIES, OFFSETS, BLOCK_N, TAIL,
                                   SPAN, NUM_BUF)
    _packed_store(acc, m_i, l_i, Out, Lse, out_base, lse_base, stride_on, i0, N, QUERIES, OFFSETS, row_o)
    return ring, grp


@gluon.jit
def _packed_consumer(q_s, k1_s, v1_s, k2_s, v2_s, k1t_s, v1t_s, q_ready, q_empty, kv_ready, kv_empty, k2_ready,
                     k2_empty, v2_ready, v2_empty, tail_ready, Out, Lse, stride_on, out_base, lse_base, N, W1, W2,
                     qk_scale, program_m, HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, QUERIES: gl.constexpr,
                     BLOCK_N: gl.constexpr, TAIL: gl.constexpr, NUM_BUF: gl.constexpr, PAIRED: gl.constexpr,
                     RESIDENT: gl.constexpr, OPAQUE_SLOTS: gl.constexpr, C: gl.constexpr,
                     CONSUMERS: gl.constexpr, num_warps: gl.constexpr):
    """Consumer C of a packed program: its query groups one after the other (_packed_query_group), with
    CONSUMERS=2 every other one, sharing each window with the other consumer's group beside it."""
    SPAN: gl.constexpr = QUERIES * CONSUMERS
    s_layout: gl.constexpr = _mma_layout(num_warps, BLOCK_N)
    rows = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, s_layout))
    offs_n = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
    s_zero = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, layout=s_layout)
    q_s = q_s.index(C)
    k2_s = k2_s.index(C)
    v2_s = v2_s.index(C)
    q_ready = q_ready.index(C)
    q_empty = q_empty.index(C)
    k2_ready = k2_ready.index(C)
    k2_empty = k2_empty.index(C)
    v2_ready = v2_ready.index(C)
    v2_empty = v2_empty.index(C)
    ring = 0  # ring step of the group's first K1 tile
    grp = 0  # offset groups so far: the K2 / V2 buffers' phase
    g = 0  # query groups so far: the Q buffer's phase
    for i0u in range(program_m, gl.minimum(program_m + BLOCK_M, N), SPAN):
        # A group past the sequence's end is the program's last: no window follows, so with RESIDENT this consumer
        # neither waits for it nor hands it back (an early hand-back would count for the window the other consumer
        # still reads, and the producer overwrote it: wrong rows that differed between launches at w2 = 8). A
        # streamed window it signs off tile by tile, each once loaded, as the ring's barriers count both consumers.
        # Consumer 0's group always starts before the end (the loop's bound).
        if C == 0:
            active: gl.constexpr = True
        else:
            active = i0u + C * QUERIES < N
        if not active:
            if not RESIDENT:  # still sign off the streamed window's tiles, which the producer loads for consumer 0
                ring = _skip_shared_groups(kv_ready, kv_empty, ring, i0u, 0, N, W1, W2, QUERIES, BLOCK_M // QUERIES,
                                           BLOCK_N, TAIL, SPAN, NUM_BUF)
        else:
            ring, grp = _packed_query_group((rows, offs_n, s_zero), k1_s, v1_s, k1t_s, v1t_s, q_s, k2_s, v2_s, q_ready,
                                            q_empty, kv_ready, kv_empty, k2_ready, k2_empty, v2_ready, v2_empty,
                                            tail_ready, Out, Lse, stride_on, out_base, lse_base, N, W1, W2, qk_scale,
                                            i0u, i0u + C * QUERIES, ring, grp, g, HEAD_DIM, BLOCK_M, QUERIES, BLOCK_N,
                                            TAIL, NUM_BUF, PAIRED, RESIDENT, OPAQUE_SLOTS, SPAN, num_warps)
        g += 1


@gluon.jit(do_not_specialize=["N", "W1", "W2", "H", "GROUP"])
def _simplicial_fwd_packed_gluon(q_desc, k1_desc, v1_desc, k2_desc, v2_desc, k2_diag, v2_diag, k1t_desc, v1t_desc,
                                 Out, Lse, stride_on, stride_ob, N, W1, W2, qk_scale, H, GROUP, HEAD_DIM: gl.constexpr,
                                 BLOCK_M: gl.constexpr, QUERIES: gl.constexpr, BLOCK_N: gl.constexpr,
                                 TAIL: gl.constexpr, NUM_BUF: gl.constexpr, PAIRED: gl.constexpr,
                                 RESIDENT: gl.constexpr, OPAQUE_SLOTS: gl.constexpr,
                                 CONSUMERS: gl.constexpr, CONSUMER_REGS: gl.constexpr, num_warps: gl.constexpr):
    # Paired steps with two consumers spill at D=128 and faulted (an illegal memory access) with opaque slots; no
    # default takes them, so the kernel refuses them (plan.py).
    gl.static_assert(not (PAIRED and CONSUMERS == 2), "PAIRED takes one consumer")
    pid_bh, b, h, program_m = _query_program(N, H, BLOCK_M)
    dtype: gl.constexpr = k1_desc.dtype
    q_s = gl.allocate_shared_memory(dtype, [CONSUMERS] + q_desc.block_type.shape, q_desc.layout)
    k2_s = gl.allocate_shared_memory(dtype, [CONSUMERS, BLOCK_M, HEAD_DIM], k2_desc.layout)
    v2_s = gl.allocate_shared_memory(dtype, [CONSUMERS, BLOCK_M, HEAD_DIM], v2_desc.layout)
    k1_s = gl.allocate_shared_memory(dtype, [NUM_BUF] + k1_desc.block_type.shape, k1_desc.layout)
    v1_s = gl.allocate_shared_memory(dtype, [NUM_BUF] + v1_desc.block_type.shape, v1_desc.layout)
    q_ready = _barriers(CONSUMERS)
    if RESIDENT:  # the window's tail: TAIL rows of its own
        if OPAQUE_SLOTS:  # an array of one, indexed through an opaque zero
            k1t_s = gl.allocate_shared_memory(dtype, [1] + k1t_desc.block_type.shape, k1t_desc.layout)
            v1t_s = gl.allocate_shared_memory(dtype, [1] + v1t_desc.block_type.shape, v1t_desc.layout)
        else:
            k1t_s = gl.allocate_shared_memory(dtype, k1t_desc.block_type.shape, k1t_desc.layout)
            v1t_s = gl.allocate_shared_memory(dtype, v1t_desc.block_type.shape, v1t_desc.layout)
        tail_ready = _barriers(1).index(0)
    else:  # unused
        k1t_s = q_s
        v1t_s = q_s
        tail_ready = q_ready.index(0)
    q_empty = _barriers(CONSUMERS)
    k2_ready = _barriers(CONSUMERS)
    k2_empty = _barriers(CONSUMERS)
    v2_ready = _barriers(CONSUMERS)
    v2_empty = _barriers(CONSUMERS)
    kv_ready = _barriers(NUM_BUF)
    kv_empty = _barriers(NUM_BUF, CONSUMERS)  # with RESIDENT each consumer hands the window back (kv_empty[0])
    out_base = b.to(gl.int64) * stride_ob + h * HEAD_DIM
    lse_base = pid_bh.to(gl.int64) * N
    # The argument lists are written out per call: held in a tuple variable, Gluon 3.6 passes the constexprs
    # (HEAD_DIM, BLOCK_M, ...) as runtime values, and the consumer's layouts then fail to build.
    if CONSUMERS == 1:
        gl.warp_specialize([
            (_packed_consumer, (q_s, k1_s, v1_s, k2_s, v2_s, k1t_s, v1t_s, q_ready, q_empty, kv_ready, kv_empty,
                                k2_ready, k2_empty, v2_ready, v2_empty, tail_ready, Out, Lse, stride_on, out_base,
                                lse_base, N, W1, W2, qk_scale, program_m, HEAD_DIM, BLOCK_M, QUERIES, BLOCK_N, TAIL,
                                NUM_BUF, PAIRED, RESIDENT, OPAQUE_SLOTS, 0, CONSUMERS, num_warps)),
            (_packed_producer, (q_desc, k1_desc, v1_desc, k2_desc, v2_desc, k2_diag, v2_diag, k1t_desc, v1t_desc, q_s,
                                k1_s, v1_s, k2_s, v2_s, k1t_s, v1t_s, q_ready, q_empty, kv_ready, kv_empty, k2_ready,
                                k2_empty, v2_ready, v2_empty, tail_ready, b * N, h * HEAD_DIM, (h // GROUP) * HEAD_DIM,
                                program_m, N, W1, W2, BLOCK_M, QUERIES, BLOCK_N, TAIL, NUM_BUF, RESIDENT, OPAQUE_SLOTS,
                                CONSUMERS)),
        ], [PRODUCER_WARPS], [24])
    else:
        gl.static_assert(CONSUMERS == 2, "CONSUMERS: 1 or 2")
        gl.warp_specialize([
            (_packed_consumer, (q_s, k1_s, v1_s, k2_s, v2_s, k1t_s, v1t_s, q_ready, q_empty, kv_ready, kv_empty,
                                k2_ready, k2_empty, v2_ready, v2_empty, tail_ready, Out, Lse, stride_on, out_base,
                                lse_base, N, W1, W2, qk_scale, program_m, HEAD_DIM, BLOCK_M, QUERIES, BLOCK_N, TAIL,
                                NUM_BUF, PAIRED, RESIDENT, OPAQUE_SLOTS, 0, CONSUMERS, num_warps)),
            (_packed_consumer, (q_s, k1_s, v1_s, k2_s, v2_s, k1t_s, v1t_s, q_ready, q_empty, kv_ready, kv_empty,
                                k2_ready, k2_empty, v2_ready, v2_empty, tail_ready, Out, Lse, stride_on, out_base,
                                lse_base, N, W1, W2, qk_scale, program_m, HEAD_DIM, BLOCK_M, QUERIES, BLOCK_N, TAIL,
                                NUM_BUF, PAIRED, RESIDENT, OPAQUE_SLOTS, 1, CONSUMERS, num_warps)),
            (_packed_producer, (q_desc, k1_desc, v1_desc, k2_desc, v2_desc, k2_diag, v2_diag, k1t_desc, v1t_desc, q_s,
                                k1_s, v1_s, k2_s, v2_s, k1t_s, v1t_s, q_ready, q_empty, kv_ready, kv_empty, k2_ready,
                                k2_empty, v2_ready, v2_empty, tail_ready, b * N, h * HEAD_DIM, (h // GROUP) * HEAD_DIM,
                                program_m, N, W1, W2, BLOCK_M, QUERIES, BLOCK_N, TAIL, NUM_BUF, RESIDENT, OPAQUE_SLOTS,
                                CONSUMERS)),
        ], [num_warps, PRODUCER_WARPS], [CONSUMER_REGS, 24])


def _diagonal_descriptor(x: torch.Tensor, queries: int, offsets: int) -> TensorDescriptor:
    """x's rows as a 3-D view [rows - offsets + 1, offsets, H*D] whose element [r, s] is row r + s, blocks of
    [queries, offsets, D]: one TMA load gives a packed tile's K2 / V2 rows (row q * offsets + s: row base + q + s).
    The view ends offsets - 1 rows early, so no block reads past the tensor."""
    (rows, width), (row_stride, _) = _rows_view(x)
    block = [queries, offsets, x.shape[3]]
    return TensorDescriptor(x, [max(rows - offsets + 1, 1), offsets, width], [row_stride, row_stride, 1], block,
                            _smem_layout(x, block))


def check_config(w1: int, cfg) -> None:
    """ValueError unless cfg's resident window fits: with RESIDENT the k1 window of the query groups that share it
    (w1 + QUERIES * CONSUMERS - 1 columns, as _packed_windows tiles it) must fit the NUM_BUF slots and the tail
    buffer. plan.py's thresholds are where these windows stop fitting; tests/test_compile_report.py checks both."""
    consumers = cfg.get("CONSUMERS", 1)
    span = w1 + cfg["QUERIES"] * consumers - 1  # the widest k1 window union of the query groups that share it
    if cfg.get("RESIDENT", False) and span // cfg["BLOCK_N"] + (span % cfg["BLOCK_N"] > cfg["TAIL"]) > cfg["NUM_BUF"]:
        raise ValueError(f"RESIDENT: the k1 window of {consumers} query group(s) ({span} columns at w1={w1}) does "
                         f"not fit NUM_BUF={cfg['NUM_BUF']} tiles of {cfg['BLOCK_N']} and a tail of {cfg['TAIL']}")


def forward(q, k1, k2, v1, v2, w1, w2, sm_scale, cfg, poison=False):
    """(out, lse, compiled kernels): out [B, N, Hq, D] and the base-2 lse [B, Hq, N] from the packed forward
    (windows already clipped to N, sm_scale > 0). cfg: BLOCK_M (rows per tile), QUERIES (queries per tile),
    BLOCK_N, TAIL (the narrow last tile's columns), NUM_BUF, PAIRED, RESIDENT (the query group's whole k1 window in
    the NUM_BUF slots: it must fit them, `check_config`), OPAQUE_SLOTS (see _packed_group), CONSUMERS (2: two query
    groups share each window, resident or streamed once for both, one consumer warpgroup each, of CONSUMER_REGS
    registers), num_warps, maxnreg."""
    b, n, hq, d = q.shape
    check_config(w1, cfg)
    out = new_output((b, n, hq, d), q, q.dtype, poison)
    lse = new_output((b, hq, n), q, torch.float32, poison)
    queries = cfg["QUERIES"]
    offsets = cfg["BLOCK_M"] // queries
    grid = (triton.cdiv(n, cfg["BLOCK_M"]) * b * hq,)
    kernel = _simplicial_fwd_packed_gluon[grid](
        _descriptor(q, queries), _descriptor(k1, cfg["BLOCK_N"]), _descriptor(v1, cfg["BLOCK_N"]),
        _descriptor(k2, offsets), _descriptor(v2, offsets), _diagonal_descriptor(k2, queries, offsets),
        _diagonal_descriptor(v2, queries, offsets), _descriptor(k1, cfg["TAIL"]), _descriptor(v1, cfg["TAIL"]), out,
        lse, out.stride(1), out.stride(0), n, w1, w2, base2_scale(sm_scale), hq, hq // k1.shape[2], HEAD_DIM=d,
        BLOCK_M=cfg["BLOCK_M"], QUERIES=queries, BLOCK_N=cfg["BLOCK_N"], TAIL=cfg["TAIL"], NUM_BUF=cfg["NUM_BUF"],
        PAIRED=cfg.get("PAIRED", False), RESIDENT=cfg.get("RESIDENT", False),
        OPAQUE_SLOTS=cfg.get("OPAQUE_SLOTS", False), CONSUMERS=cfg.get("CONSUMERS", 1),
        CONSUMER_REGS=cfg.get("CONSUMER_REGS", 240), num_warps=cfg["num_warps"], maxnreg=cfg["maxnreg"],
    )
    return out, lse, (kernel,)
