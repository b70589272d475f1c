"""Gluon backward for dQ, dK2 and dV2 on Hopper (sm_90), 16-bit, D = 64 and 128: the query frame of
triton_bwd_dqdk2dv2.py.

A program owns 64 query rows of one head and walks the forward's flat (offset t, K1 tile j) loop; per offset it sums
U_t = sum_j dS @ K1_j and W_t = sum_j P @ V1_j and at the offset's last tile adds dQ += U_t * K2_t in registers and
sends U_t * Q to dK2 and W_t * dO to dV2 at rows i - t by relaxed fp32 atomic adds (a row of dK2 / dV2 gets
contributions from w2 offsets and every query head of its group).

Roles: a producer warpgroup loads Q and dO once, K2_t and V2_t per offset, and the K1 / V1 tiles through a ring of
NUM_BUF slots.
  * `_simplicial_bwd_dq_dk2dv2_gluon` (D=64): one consumer (two programs per SM at 128 registers): 5.7 ms against
    7.0 ms for the tl kernel (H100, target shape).
  * `_simplicial_bwd_dq_dk2dv2_roles_gluon` (D=128): a probs consumer forms S and P (and W_t) and hands P over in 16
    bits through shared memory to a grads consumer, which forms dP and dS (and U_t, dQ). Each step costs 4 wgmmas
    and each consumer holds one fp32 accumulator of the offset, so D=128 fits one launch with a ring of four K1/V1
    tiles: 10.90 ms against 15.44-16.25 ms for the two-launch split that recomputed S.
"""

from __future__ import annotations

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma, warpgroup_mma, warpgroup_mma_wait

from .gluon_common import (PRODUCER_WARPS, _barriers, _descriptor, _load_k1v1_tile, _masked, _mma_layout,
                           _next_tile, _query_program, _query_tile_windows, _release, _ring_wait)
from .triton_common import base2_scale, new_output


@gluon.jit
def _dq_buffers(q_desc, do_desc, k1_desc, v1_desc, k2_desc, v2_desc, NUM_BUF: gl.constexpr):
    """A dQ program's shared memory: Q and dO (its query tile), K2_t and V2_t (the offset's rows), the K1/V1 ring."""
    dtype: gl.constexpr = k1_desc.dtype
    return (gl.allocate_shared_memory(dtype, q_desc.block_type.shape, q_desc.layout),
            gl.allocate_shared_memory(dtype, do_desc.block_type.shape, do_desc.layout),
            gl.allocate_shared_memory(dtype, k2_desc.block_type.shape, k2_desc.layout),
            gl.allocate_shared_memory(dtype, v2_desc.block_type.shape, v2_desc.layout),
            gl.allocate_shared_memory(dtype, [NUM_BUF] + k1_desc.block_type.shape, k1_desc.layout),
            gl.allocate_shared_memory(dtype, [NUM_BUF] + v1_desc.block_type.shape, v1_desc.layout))


@gluon.jit
def _dq_barriers(NUM_BUF: gl.constexpr, KV_SIGNERS: gl.constexpr):
    """A dQ program's barriers: Q/dO ready; K2_t and V2_t ready and empty; the K1/V1 ring's ready and empty (each
    slot signed off by KV_SIGNERS consumers)."""
    return (_barriers(1).index(0), _barriers(1).index(0), _barriers(1).index(0), _barriers(1).index(0),
            _barriers(1).index(0), _barriers(NUM_BUF), _barriers(NUM_BUF, KV_SIGNERS))


@gluon.jit
def _dq_producer(q_desc, do_desc, k1_desc, v1_desc, k2_desc, v2_desc, q_s, do_s, k1_s, v1_s, k2_s, v2_s,
                 q_ready, kv_ready, kv_empty, k2_ready, k2_empty, v2_ready, v2_empty,
                 row0, col_q, col_k, start_m, lo, n_tiles, W2,
                 BLOCK_N: gl.constexpr, NUM_BUF: gl.constexpr):
    """Q and dO once; per offset K2_t (held to the offset's end) and V2_t (freed once dO * V2_t is formed); per
    step the K1_j / V1_j tiles into a NUM_BUF ring."""
    mbarrier.expect(q_ready, q_desc.block_type.nbytes + do_desc.block_type.nbytes)
    tma.async_copy_global_to_shared(q_desc, [row0 + start_m, col_q], q_ready, q_s)
    tma.async_copy_global_to_shared(do_desc, [row0 + start_m, col_q], q_ready, do_s)
    t = 0
    j = -1
    for step in range(0, W2 * n_tiles):
        t, j = _next_tile(t, j, n_tiles)
        if j == 0:
            mbarrier.wait(k2_empty, (t & 1) ^ 1)
            mbarrier.expect(k2_ready, k2_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(k2_desc, [row0 + start_m - t, col_k], k2_ready, k2_s)
            mbarrier.wait(v2_empty, (t & 1) ^ 1)
            mbarrier.expect(v2_ready, v2_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(v2_desc, [row0 + start_m - t, col_k], v2_ready, v2_s)
        _load_k1v1_tile(k1_desc, v1_desc, k1_s, v1_s, kv_ready, kv_empty, step, row0 + lo + j * BLOCK_N, col_k,
                        NUM_BUF)


@gluon.jit
def _shifted_rows(rows_o, cols_o, t, N, g_base, stride_gn):
    """Offsets and mask of the dK2 / dV2 rows i - t that query rows i send their offset-t sums to."""
    k_rows = rows_o - t
    k_ok = gl.expand_dims((k_rows >= 0) & (rows_o < N), 1)
    return g_base + gl.expand_dims(k_rows, 1) * stride_gn + gl.expand_dims(cols_o, 0), k_ok


@gluon.jit
def _dq_consumer(q_s, do_s, k1_s, v1_s, k2_s, v2_s, q_ready, kv_ready, kv_empty, k2_ready, k2_empty, v2_ready,
                 v2_empty, Lse, Delta, DQ, DK2, DV2, stats_base, dq_base, g_base, stride_qn, stride_gn, N, W1, W2,
                 qk_scale, sm_scale, start_m, lo, full_lo, full_hi, n_tiles,
                 HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, NUM_BUF: gl.constexpr,
                 num_warps: gl.constexpr):
    """Per step S = (Q*K2_t) @ K1_j^T, P = exp2(S - lse) (masked on edge tiles), dP = (dO*V2_t) @ V1_j^T,
    U_t += P*(dP - delta) @ K1_j and W_t += P @ V1_j. At an offset's last tile: dQ += U_t * K2_t (registers), and one
    relaxed atomic add each of U_t * Q to dK2 and W_t * dO to dV2 at rows i - t."""
    s_layout: gl.constexpr = _mma_layout(num_warps, BLOCK_N)
    o_layout: gl.constexpr = _mma_layout(num_warps, HEAD_DIM)
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=s_layout, k_width=2)
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    row_s: gl.constexpr = gl.SliceLayout(1, s_layout)
    row_o: gl.constexpr = gl.SliceLayout(1, o_layout)
    dtype: gl.constexpr = k1_s.dtype

    offs_m = start_m + gl.arange(0, BLOCK_M, layout=row_s)
    offs_n = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
    m_ok = offs_m < N
    lse = gl.load(Lse + stats_base + offs_m, mask=m_ok, other=0.0)
    delta = gl.load(Delta + stats_base + offs_m, mask=m_ok, other=0.0)
    rows_o = start_m + gl.arange(0, BLOCK_M, layout=row_o)
    cols_o = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, o_layout))
    s_zero = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, layout=s_layout)
    u = gl.zeros([BLOCK_M, HEAD_DIM], gl.float32, layout=o_layout)
    w = gl.zeros([BLOCK_M, HEAD_DIM], gl.float32, layout=o_layout)
    dq = gl.zeros([BLOCK_M, HEAD_DIM], gl.float32, layout=o_layout)
    qk2 = gl.zeros([BLOCK_M, HEAD_DIM], dtype, layout=a_layout)
    dov2 = gl.zeros([BLOCK_M, HEAD_DIM], dtype, layout=a_layout)
    mbarrier.wait(q_ready, 0)
    t = 0
    j = -1
    for step in range(0, W2 * n_tiles):
        t, j = _next_tile(t, j, n_tiles)
        if j == 0:
            mbarrier.wait(k2_ready, t & 1)
            qk2 = q_s.load(a_layout) * k2_s.load(a_layout)  # packed: the exact product rounded once
            mbarrier.wait(v2_ready, t & 1)
            dov2 = do_s.load(a_layout) * v2_s.load(a_layout)  # packed: the same bits as through fp32
            _release(v2_empty)
        s = _ring_wait(kv_ready, step, NUM_BUF)
        sc = warpgroup_mma(qk2, k1_s.index(s).permute((1, 0)), s_zero, use_acc=False, is_async=True)
        dp = warpgroup_mma(dov2, v1_s.index(s).permute((1, 0)), s_zero, use_acc=False, is_async=True)
        sc, dp = warpgroup_mma_wait(num_outstanding=0, deps=(sc, dp))
        p = _masked(gl.exp2(sc * qk_scale - gl.expand_dims(lse, 1)), offs_m, offs_n, m_ok, t > start_m,
                    lo + j * BLOCK_N, full_lo, full_hi, t, W1, BLOCK_N, 0.0)
        ds = p * (dp - gl.expand_dims(delta, 1))
        u = warpgroup_mma(gl.convert_layout(ds.to(dtype), p_layout), k1_s.index(s), u, use_acc=j > 0,
                          is_async=True)
        w = warpgroup_mma(gl.convert_layout(p.to(dtype), p_layout), v1_s.index(s), w, use_acc=j > 0,
                          is_async=True)
        u, w = warpgroup_mma_wait(num_outstanding=0, deps=(u, w))
        _release(kv_empty.index(s))
        if j == n_tiles - 1:  # the offset's last tile
            g_ptrs, k_ok = _shifted_rows(rows_o, cols_o, t, N, g_base, stride_gn)
            k2 = k2_s.load(o_layout).to(gl.float32)
            dq += u * k2
            gl.atomic_add(DK2 + g_ptrs, u * q_s.load(o_layout).to(gl.float32) * sm_scale, mask=k_ok,
                          sem="relaxed")
            gl.atomic_add(DV2 + g_ptrs, w * do_s.load(o_layout).to(gl.float32), mask=k_ok, sem="relaxed")
            _release(k2_empty)
    q_ptrs = dq_base + gl.expand_dims(rows_o, 1) * stride_qn + gl.expand_dims(cols_o, 0)
    gl.store(DQ + q_ptrs, (dq * sm_scale).to(DQ.dtype.element_ty), mask=gl.expand_dims(rows_o < N, 1))


@gluon.jit(do_not_specialize=["N", "W1", "W2", "H", "GROUP"])
def _simplicial_bwd_dq_dk2dv2_gluon(q_desc, do_desc, k1_desc, v1_desc, k2_desc, v2_desc, Lse, Delta, DQ, DK2, DV2,
                                    stride_qb, stride_qn, stride_gb, stride_gn, N, W1, W2, qk_scale, sm_scale, H,
                                    GROUP, HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                                    NUM_BUF: gl.constexpr, num_warps: gl.constexpr):
    pid_bh, b, h, start_m = _query_program(N, H, BLOCK_M)
    hk = h // GROUP
    lo, full_lo, full_hi, n_tiles = _query_tile_windows(start_m, N, W1, BLOCK_M, BLOCK_N)
    q_s, do_s, k2_s, v2_s, k1_s, v1_s = _dq_buffers(q_desc, do_desc, k1_desc, v1_desc, k2_desc, v2_desc, NUM_BUF)
    q_ready, k2_ready, k2_empty, v2_ready, v2_empty, kv_ready, kv_empty = _dq_barriers(NUM_BUF, 1)

    gl.warp_specialize([
        (_dq_consumer, (q_s, do_s, k1_s, v1_s, k2_s, v2_s, q_ready, kv_ready, kv_empty, k2_ready, k2_empty, v2_ready,
                        v2_empty, Lse, Delta, DQ, DK2, DV2, pid_bh.to(gl.int64) * N,
                        b.to(gl.int64) * stride_qb + h * HEAD_DIM, b.to(gl.int64) * stride_gb + hk * HEAD_DIM,
                        stride_qn, stride_gn, N, W1, W2, qk_scale, sm_scale, start_m, lo, full_lo, full_hi, n_tiles,
                        HEAD_DIM, BLOCK_M, BLOCK_N, NUM_BUF, num_warps)),
        (_dq_producer, (q_desc, do_desc, k1_desc, v1_desc, k2_desc, v2_desc, q_s, do_s, k1_s, v1_s, k2_s, v2_s,
                        q_ready, kv_ready, kv_empty, k2_ready, k2_empty, v2_ready, v2_empty,
                        b * N, h * HEAD_DIM, hk * HEAD_DIM, start_m, lo, n_tiles, W2, BLOCK_N, NUM_BUF)),
    ], [PRODUCER_WARPS], [24])


# With ROLES=2 one program per SM runs two consumer warpgroups of different roles on the same steps: the probs
# consumer forms S and P (and sums W_t += P @ V1_j for dV2), the grads consumer forms dP and, with P handed over
# through shared memory in the input dtype (half the bytes of fp32, which leaves room for a deeper K1/V1 ring), dS
# (and sums U_t += dS @ K1_j for dQ and dK2). Each step costs 4 wgmmas where a two-launch split would recompute S
# in both launches (5), and each consumer holds one fp32 [64, D] accumulator of the offset (the grads one also dQ),
# so D=128 fits in one launch.


@gluon.jit
def _dq_probs_consumer(q_s, do_s, k1_s, v1_s, k2_s, p_s, q_ready, kv_ready, kv_empty, k2_ready, p_ready, p_empty,
                       Lse, DV2, stats_base, g_base, stride_gn, N, W1, W2, qk_scale, start_m, lo, full_lo, full_hi,
                       n_tiles, HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                       NUM_BUF: gl.constexpr, NUM_P: gl.constexpr, num_warps: gl.constexpr):
    """Per step S = (Q*K2_t) @ K1_j^T, P = exp2(S * qk_scale - lse) (masked on edge tiles), rounded to the input
    dtype as the P @ V1_j wgmma takes it, into the P ring for the grads consumer, and W_t += P @ V1_j; at an
    offset's last tile one relaxed atomic add of W_t * dO to dV2 at rows i - t. The grads consumer frees K2_t (it
    reads it last)."""
    s_layout: gl.constexpr = _mma_layout(num_warps, BLOCK_N)
    o_layout: gl.constexpr = _mma_layout(num_warps, HEAD_DIM)
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=s_layout, k_width=2)
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    row_s: gl.constexpr = gl.SliceLayout(1, s_layout)
    dtype: gl.constexpr = k1_s.dtype

    offs_m = start_m + gl.arange(0, BLOCK_M, layout=row_s)
    offs_n = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
    m_ok = offs_m < N
    lse = gl.load(Lse + stats_base + offs_m, mask=m_ok, other=0.0)
    rows_o = start_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, o_layout))
    cols_o = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, o_layout))
    s_zero = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, layout=s_layout)
    w = gl.zeros([BLOCK_M, HEAD_DIM], gl.float32, layout=o_layout)
    qk2 = gl.zeros([BLOCK_M, HEAD_DIM], dtype, layout=a_layout)
    mbarrier.wait(q_ready, 0)
    t = 0
    j = -1
    for step in range(0, W2 * n_tiles):
        t, j = _next_tile(t, j, n_tiles)
        if j == 0:
            mbarrier.wait(k2_ready, t & 1)
            qk2 = q_s.load(a_layout) * k2_s.load(a_layout)  # packed: the exact product rounded once
        s = _ring_wait(kv_ready, step, NUM_BUF)
        sc = warpgroup_mma(qk2, k1_s.index(s).permute((1, 0)), s_zero, use_acc=False, is_async=True)
        sc = warpgroup_mma_wait(num_outstanding=0, deps=(sc, ))
        p = _masked(gl.exp2(sc * qk_scale - gl.expand_dims(lse, 1)), offs_m, offs_n, m_ok, t > start_m,
                    lo + j * BLOCK_N, full_lo, full_hi, t, W1, BLOCK_N, 0.0)
        p = p.to(dtype)
        w = warpgroup_mma(gl.convert_layout(p, p_layout), v1_s.index(s), w, use_acc=j > 0, is_async=True)
        f = _ring_wait(p_empty, step, NUM_P, FREE=True)
        p_s.index(f).store(p)
        _release(p_ready.index(f))  # every warp's stores before the arrive
        w = warpgroup_mma_wait(num_outstanding=0, deps=(w, ))
        _release(kv_empty.index(s))
        if j == n_tiles - 1:  # the offset's last tile
            g_ptrs, k_ok = _shifted_rows(rows_o, cols_o, t, N, g_base, stride_gn)
            gl.atomic_add(DV2 + g_ptrs, w * do_s.load(o_layout).to(gl.float32), mask=k_ok, sem="relaxed")


@gluon.jit
def _dq_grads_consumer(q_s, do_s, k1_s, v1_s, k2_s, v2_s, p_s, q_ready, kv_ready, kv_empty, k2_ready, k2_empty,
                       v2_ready, v2_empty, p_ready, p_empty, Delta, DQ, DK2, stats_base, dq_base, g_base, stride_qn,
                       stride_gn, N, W2, sm_scale, start_m, n_tiles, HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr,
                       BLOCK_N: gl.constexpr, NUM_BUF: gl.constexpr, NUM_P: gl.constexpr, num_warps: gl.constexpr):
    """Per step dP = (dO*V2_t) @ V1_j^T, then with the probs consumer's 16-bit P: dS = P * (dP - delta) (the
    one-consumer kernel multiplies the fp32 P) and U_t += dS @ K1_j; at an offset's last tile dQ += U_t * K2_t
    (registers) and one relaxed atomic add of U_t * Q to dK2 at rows i - t."""
    s_layout: gl.constexpr = _mma_layout(num_warps, BLOCK_N)
    o_layout: gl.constexpr = _mma_layout(num_warps, HEAD_DIM)
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=s_layout, k_width=2)
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    dtype: gl.constexpr = k1_s.dtype

    offs_m = start_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, s_layout))
    delta = gl.load(Delta + stats_base + offs_m, mask=offs_m < N, other=0.0)
    rows_o = start_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, o_layout))
    cols_o = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, o_layout))
    q_ptrs = dq_base + gl.expand_dims(rows_o, 1) * stride_qn + gl.expand_dims(cols_o, 0)
    s_zero = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, layout=s_layout)
    u = gl.zeros([BLOCK_M, HEAD_DIM], gl.float32, layout=o_layout)
    dq = gl.zeros([BLOCK_M, HEAD_DIM], gl.float32, layout=o_layout)
    dov2 = gl.zeros([BLOCK_M, HEAD_DIM], dtype, layout=a_layout)
    mbarrier.wait(q_ready, 0)
    t = 0
    j = -1
    for step in range(0, W2 * n_tiles):
        t, j = _next_tile(t, j, n_tiles)
        if j == 0:
            mbarrier.wait(v2_ready, t & 1)
            dov2 = do_s.load(a_layout) * v2_s.load(a_layout)  # packed: the same bits as through fp32
            _release(v2_empty)
        s = _ring_wait(kv_ready, step, NUM_BUF)
        dp = warpgroup_mma(dov2, v1_s.index(s).permute((1, 0)), s_zero, use_acc=False, is_async=True)
        dp = warpgroup_mma_wait(num_outstanding=0, deps=(dp, ))
        f = _ring_wait(p_ready, step, NUM_P)
        ds = p_s.index(f).load(s_layout).to(gl.float32) * (dp - gl.expand_dims(delta, 1))
        _release(p_empty.index(f))
        u = warpgroup_mma(gl.convert_layout(ds.to(dtype), p_layout), k1_s.index(s), u, use_acc=j > 0,
                          is_async=True)
        u = warpgroup_mma_wait(num_outstanding=0, deps=(u, ))
        _release(kv_empty.index(s))
        if j == n_tiles - 1:  # the offset's last tile
            mbarrier.wait(k2_ready, t & 1)
            k2 = k2_s.load(o_layout).to(gl.float32)
            dq += u * k2
            g_ptrs, k_ok = _shifted_rows(rows_o, cols_o, t, N, g_base, stride_gn)
            gl.atomic_add(DK2 + g_ptrs, u * q_s.load(o_layout).to(gl.float32) * sm_scale, mask=k_ok, sem="relaxed")
            _release(k2_empty)
    gl.store(DQ + q_ptrs, (dq * sm_scale).to(DQ.dtype.element_ty), mask=gl.expand_dims(rows_o < N, 1))


@gluon.jit(do_not_specialize=["N", "W1", "W2", "H", "GROUP"])
def _simplicial_bwd_dq_dk2dv2_roles_gluon(q_desc, do_desc, k1_desc, v1_desc, k2_desc, v2_desc, Lse, Delta, DQ, DK2,
                                          DV2, stride_qb, stride_qn, stride_gb, stride_gn, N, W1, W2, qk_scale,
                                          sm_scale, H, GROUP, HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr,
                                          BLOCK_N: gl.constexpr, NUM_BUF: gl.constexpr, NUM_P: gl.constexpr,
                                          CONSUMER_REGS: gl.constexpr, PRODUCER_REGS: gl.constexpr,
                                          num_warps: gl.constexpr):
    pid_bh, b, h, start_m = _query_program(N, H, BLOCK_M)
    hk = h // GROUP
    lo, full_lo, full_hi, n_tiles = _query_tile_windows(start_m, N, W1, BLOCK_M, BLOCK_N)
    q_s, do_s, k2_s, v2_s, k1_s, v1_s = _dq_buffers(q_desc, do_desc, k1_desc, v1_desc, k2_desc, v2_desc, NUM_BUF)
    dtype: gl.constexpr = k1_desc.dtype
    p_s = gl.allocate_shared_memory(dtype, [NUM_P, BLOCK_M, BLOCK_N],
                                    gl.NVMMASharedLayout.get_default_for([BLOCK_M, BLOCK_N], dtype))
    q_ready, k2_ready, k2_empty, v2_ready, v2_empty, kv_ready, kv_empty = _dq_barriers(NUM_BUF, 2)
    p_ready = _barriers(NUM_P)
    p_empty = _barriers(NUM_P)

    stats_base = pid_bh.to(gl.int64) * N
    g_base = b.to(gl.int64) * stride_gb + hk * HEAD_DIM
    gl.warp_specialize([
        (_dq_grads_consumer, (q_s, do_s, k1_s, v1_s, k2_s, v2_s, p_s, q_ready, kv_ready, kv_empty, k2_ready, k2_empty,
                              v2_ready, v2_empty, p_ready, p_empty, Delta, DQ, DK2, stats_base,
                              b.to(gl.int64) * stride_qb + h * HEAD_DIM, g_base, stride_qn, stride_gn, N, W2,
                              sm_scale, start_m, n_tiles, HEAD_DIM, BLOCK_M, BLOCK_N, NUM_BUF, NUM_P, num_warps)),
        (_dq_probs_consumer, (q_s, do_s, k1_s, v1_s, k2_s, p_s, q_ready, kv_ready, kv_empty, k2_ready, p_ready,
                              p_empty, Lse, DV2, stats_base, g_base, stride_gn, N, W1, W2, qk_scale, start_m, lo,
                              full_lo, full_hi, n_tiles, HEAD_DIM, BLOCK_M, BLOCK_N, NUM_BUF, NUM_P, num_warps)),
        (_dq_producer, (q_desc, do_desc, k1_desc, v1_desc, k2_desc, v2_desc, q_s, do_s, k1_s, v1_s, k2_s, v2_s,
                        q_ready, kv_ready, kv_empty, k2_ready, k2_empty, v2_ready, v2_empty,
                        b * N, h * HEAD_DIM, hk * HEAD_DIM, start_m, lo, n_tiles, W2, BLOCK_N, NUM_BUF)),
    ], [num_warps, PRODUCER_WARPS], [CONSUMER_REGS, PRODUCER_REGS])


def _outputs(q, k1, poison):
    """dq (q's dtype) and the fp32 zeros dk2, dv2 [B, N, Hkv, D] that the kernels' atomics add into."""
    b, n, hq, d = q.shape
    dk2 = torch.zeros((b, n, k1.shape[2], d), device=q.device, dtype=torch.float32)
    return new_output(q.shape, q, q.dtype, poison), dk2, torch.zeros_like(dk2)


def _descriptors(do, q, k1, k2, v1, v2, cfg):
    return (_descriptor(q, cfg["BLOCK_M"]), _descriptor(do, cfg["BLOCK_M"]), _descriptor(k1, cfg["BLOCK_N"]),
            _descriptor(v1, cfg["BLOCK_N"]), _descriptor(k2, cfg["BLOCK_M"]), _descriptor(v2, cfg["BLOCK_M"]))


def backward_dq_dk2dv2(do, q, k1, k2, v1, v2, lse, delta, w1, w2, sm_scale, cfg, poison=False):
    """(dq, dk2, dv2, compiled kernels) in q's dtype from the one-consumer kernel (windows clipped to N, lse base 2,
    delta = rowsum(O * dO)). cfg: BLOCK_M, BLOCK_N, NUM_BUF (the K1/V1 ring), num_warps, maxnreg."""
    b, n, hq, d = q.shape
    dq, dk2, dv2 = _outputs(q, k1, poison)
    kernel = _simplicial_bwd_dq_dk2dv2_gluon[(triton.cdiv(n, cfg["BLOCK_M"]) * b * hq,)](
        *_descriptors(do, q, k1, k2, v1, v2, cfg), lse, delta, dq, dk2, dv2, dq.stride(0), dq.stride(1),
        dk2.stride(0), dk2.stride(1), n, w1, w2, base2_scale(sm_scale), sm_scale, hq, hq // k1.shape[2],
        HEAD_DIM=d, BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], NUM_BUF=cfg["NUM_BUF"], num_warps=cfg["num_warps"],
        maxnreg=cfg["maxnreg"])
    return dq, dk2.to(q.dtype), dv2.to(q.dtype), (kernel,)


def backward_dq_dk2dv2_roles(do, q, k1, k2, v1, v2, lse, delta, w1, w2, sm_scale, cfg, poison=False):
    """As `backward_dq_dk2dv2`, from the two-role kernel. cfg: BLOCK_M, BLOCK_N, NUM_BUF, NUM_P (the P ring),
    CONSUMER_REGS and PRODUCER_REGS (setmaxnreg of the partitions), num_warps, maxnreg."""
    b, n, hq, d = q.shape
    dq, dk2, dv2 = _outputs(q, k1, poison)
    kernel = _simplicial_bwd_dq_dk2dv2_roles_gluon[(triton.cdiv(n, cfg["BLOCK_M"]) * b * hq,)](
        *_descriptors(do, q, k1, k2, v1, v2, cfg), lse, delta, dq, dk2, dv2, dq.stride(0), dq.stride(1),
        dk2.stride(0), dk2.stride(1), n, w1, w2, base2_scale(sm_scale), sm_scale, hq, hq // k1.shape[2],
        HEAD_DIM=d, BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], NUM_BUF=cfg["NUM_BUF"], NUM_P=cfg["NUM_P"],
        CONSUMER_REGS=cfg["CONSUMER_REGS"], PRODUCER_REGS=cfg["PRODUCER_REGS"], num_warps=cfg["num_warps"],
        maxnreg=cfg["maxnreg"])
    return dq, dk2.to(q.dtype), dv2.to(q.dtype), (kernel,)
