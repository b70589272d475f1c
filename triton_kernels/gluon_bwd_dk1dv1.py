"""Gluon backward for dK1 and dV1 on Hopper (sm_90), 16-bit, D = 64 and 128: the k1 frame of triton_bwd_dk1dv1.py.

A program owns K1 / V1 rows and loops over every (query tile, offset t) that sees them, summing
dK1 += dS^T @ (Q * K2_t) and dV1 += P^T @ (dO * V2_t) in registers, one store at the end (no atomics).

Roles: two producer warpgroups form the per-step operands, one product each: X * Y with X = Q or dO (per query
tile) and Y = K2_t or V2_t (per offset, two buffers so the next offset's rows load while this one's are used), into a
ring of NUM_F formed-operand slots that the consumers read with wgmma (the product rounded once, as every kernel of
the package forms it). The consumers never touch global memory but for the statistics and the final store.

  * `_simplicial_bwd_dk1dv1_gluon` (D=64): a program owns two adjacent K1 tiles of 64 rows, one consumer warpgroup
    each (232 registers); every query tile that sees one sees the other too but for one tile at each end, so each
    formed operand pair serves both. 4.89 ms against 5.02-5.33 ms for one consumer per program at two programs per
    SM, and 6.4-6.7 ms for the tl kernel (H100, target shape).
  * `_simplicial_bwd_dk1dv1_roles_gluon` (D=128): one K1 tile per program and two consumers of different roles: the
    probs consumer forms S^T, P^T and sums dV1, and hands P^T over in 16 bits through shared memory to the grads
    consumer, which forms dP^T, dS^T and sums dK1. Each holds one fp32 [64, 128] accumulator, so query tiles of 64
    rows fit (the two-tile kernel's consumers, holding both, take 32): 10.37 vs 11.20 ms.
"""

from __future__ import annotations

import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma, warpgroup_mma, warpgroup_mma_wait

from .gluon_common import LN2, PRODUCER_WARPS, _barriers, _descriptor, _mma_layout, _release, _ring_wait
from .triton_common import base2_scale, new_output


@gluon.jit
def _dk1_probs_and_grads(k1_s, v1_s, qk2_t, dov2_t, zero_s, lse, delta, offs_m, offs_n, m_ok, masked, t, W1,
                         qk_scale):
    """One (query tile, t) step of the k1 frame up to dS: S^T = K1 @ (Q*K2)^T and dP^T = V1 @ (dO*V2)^T (wgmma),
    P^T = exp2(S^T * qk_scale - lse) (masked where the tile crosses a window edge) and dS^T = P^T * (dP^T - delta)."""
    st = warpgroup_mma(k1_s, qk2_t.permute((1, 0)), zero_s, use_acc=False, is_async=True)
    dpt = warpgroup_mma(v1_s, dov2_t.permute((1, 0)), zero_s, use_acc=False, is_async=True)
    st, dpt = warpgroup_mma_wait(num_outstanding=0, deps=(st, dpt))
    pt = gl.exp2(st * qk_scale - gl.expand_dims(lse, 0))
    if masked:
        pt = gl.where(_k1_frame_mask(offs_m, offs_n, m_ok, t, W1), pt, 0.0)
    return pt, pt * (dpt - gl.expand_dims(delta, 0))


@gluon.jit
def _k1_frame_mask(offs_m, offs_n, m_ok, t, W1):
    """[k1 rows, query rows] mask of the k1 frame: 0 <= i - j < W1 and i - t >= 0 (rows past hi get bound 0), one
    unsigned compare."""
    lim = gl.where(((offs_m - t) >= 0) & m_ok, W1, 0).to(gl.uint32)
    diff = gl.expand_dims(offs_m, 0) - gl.expand_dims(offs_n, 1)
    return diff.to(gl.uint32, bitcast=True) < gl.expand_dims(lim, 0)


@gluon.jit
def _store_k1_rows(x, X, g_base, stride_gn, start_n, N, BLOCK_N: gl.constexpr, HEAD_DIM: gl.constexpr,
                   g_layout: gl.constexpr):
    """Rows start_n.. of one gradient of K1 or V1 ([BLOCK_N, D], fp32 in the accumulator layout), in X's dtype. The
    dK1 sums are of dS^T @ (Q*K2), unscaled: their callers multiply by sm_scale = qk_scale * LN2 first."""
    rows = start_n + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, g_layout))
    offs_d = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, g_layout))
    ptrs = g_base + gl.expand_dims(rows, 1) * stride_gn + gl.expand_dims(offs_d, 0)
    gl.store(X + ptrs, x.to(X.dtype.element_ty), mask=gl.expand_dims(rows < N, 1))


@gluon.jit
def _k1_tile_windows(start_n, N, W1, BLOCK_N: gl.constexpr):
    """The query rows that see a row of the K1 tile start_n..: [start_n, hi) with hi = start_n + BLOCK_N - 1 + W1 - 1
    (clipped to N), of which [full_lo, full_hi) see every row of it (triton_bwd_dk1dv1._simplicial_bwd_dk1dv1).
    Returns (hi, full_lo, full_hi)."""
    hi = gl.minimum(start_n + BLOCK_N + W1 - 1, N)
    return hi, gl.minimum(start_n + BLOCK_N - 1, hi), gl.minimum(start_n + W1, N)


@gluon.jit
def _k1_program(N, W1, HKV, BLOCK_N: gl.constexpr):
    """A dK1/dV1 program's K1 tile: (batch, kv head, first k1 row start_n) and its _k1_tile_windows
    (lo = start_n)."""
    num_n = gl.cdiv(N, BLOCK_N)
    pid = gl.program_id(0)
    pid_bh = pid // num_n
    start_n = (pid % num_n) * BLOCK_N
    hi, full_lo, full_hi = _k1_tile_windows(start_n, N, W1, BLOCK_N)
    return pid_bh // HKV, pid_bh % HKV, start_n, start_n, hi, full_lo, full_hi


@gluon.jit
def _dk1_query_tile(Lse, Delta, stats_base, lo, mi, hi, full_lo, full_hi, W2, BLOCK_M: gl.constexpr,
                    col_s: gl.constexpr):
    """Query tile mi of a dK1/dV1 program: its rows, which of them exist, their lse and delta, and whether it
    needs the window mask (every (k1 row, query row, t) triple is valid for query rows past the K1 tile's last row,
    before its first row + W1, and with every k2 row i - t >= 0)."""
    start_m = lo + mi * BLOCK_M
    offs_m = start_m + gl.arange(0, BLOCK_M, layout=col_s)
    m_ok = offs_m < hi
    lse = gl.load(Lse + stats_base + offs_m, mask=m_ok, other=0.0)
    delta = gl.load(Delta + stats_base + offs_m, mask=m_ok, other=0.0)
    masked = (start_m < full_lo) | (start_m + BLOCK_M > full_hi) | (start_m < W2 - 1)
    return offs_m, m_ok, lse, delta, masked


# A program owns two adjacent K1 tiles, one consumer warpgroup each. Every query tile that sees one of them sees the
# other too, but for one tile at each end, so both consumers read every formed operand pair Q * K2_t, dO * V2_t:
# each (query tile, t) is formed once for both, by two producer warpgroups of one product each.


@gluon.jit
def _dk1_one_product_producer(x_desc, y_desc, k1_desc, v1_desc, x_s, y_s, xy_s, k1_s, v1_s, x_ready, y_ready,
                              kv1_ready, xy_ready, xy_empty, row0, start_n, col_k, hk, GROUP, lo, n_m, W2,
                              HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                              NUM_F: gl.constexpr, KV1_TILES: gl.constexpr, num_warps: gl.constexpr):
    """One product for every (query tile, t) of the program: per query tile X (Q or dO) once, per offset the Y rows
    i - t (K2 or V2, in two buffers: the next offset's rows load while this one's are used), and X * Y into the
    NUM_F ring xy_s that both consumers read. It first loads the program's KV1_TILES K1/V1 tiles (none: 0). The
    product is a packed 16-bit multiply, the exact product rounded once, as in every other kernel
    (triton_common._unscaled_product); the logit scale goes onto the fp32 S^T."""
    form_layout: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [num_warps, 1], [1, 0])
    if KV1_TILES > 0:
        mbarrier.expect(kv1_ready, KV1_TILES * (k1_desc.block_type.nbytes + v1_desc.block_type.nbytes))
        for c in gl.static_range(KV1_TILES):
            tma.async_copy_global_to_shared(k1_desc, [row0 + start_n + c * BLOCK_N, col_k], kv1_ready, k1_s.index(c))
            tma.async_copy_global_to_shared(v1_desc, [row0 + start_n + c * BLOCK_N, col_k], kv1_ready, v1_s.index(c))
    it = 0
    for g in range(0, GROUP):
        col_q = (hk * GROUP + g) * HEAD_DIM
        for mi in range(0, n_m):
            tile = g * n_m + mi
            start_m = lo + mi * BLOCK_M
            mbarrier.expect(x_ready, x_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(x_desc, [row0 + start_m, col_q], x_ready, x_s)
            e0 = it % 2
            mbarrier.expect(y_ready.index(e0), y_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(y_desc, [row0 + start_m, col_k], y_ready.index(e0), y_s.index(e0))
            mbarrier.wait(x_ready, tile & 1)
            for t in range(0, W2):
                e = it % 2
                if t + 1 < W2:  # the next offset's rows into the other buffer, formed from one step ago
                    mbarrier.expect(y_ready.index(1 - e), y_desc.block_type.nbytes)
                    tma.async_copy_global_to_shared(y_desc, [row0 + start_m - t - 1, col_k],
                                                    y_ready.index(1 - e), y_s.index(1 - e))
                mbarrier.wait(y_ready.index(e), (it // 2) & 1)
                f = _ring_wait(xy_empty, it, NUM_F, FREE=True)
                for r in gl.static_range(4):  # in row slices: fewer live registers
                    x = x_s.slice(r * (BLOCK_M // 4), BLOCK_M // 4).load(form_layout)
                    y = y_s.index(e).slice(r * (BLOCK_M // 4), BLOCK_M // 4).load(form_layout)
                    xy_s.index(f).slice(r * (BLOCK_M // 4), BLOCK_M // 4).store(x * y)
                _release(xy_ready.index(f))  # stores ordered before the consumers' wgmmas, reads before the next TMA
                it += 1


@gluon.jit
def _dk1_sign_off(qk_ready, dv_ready, f_empty, it, count, NUM_F: gl.constexpr):
    """Hand back `count` formed operand pairs from ring step `it` on, unread (outside this consumer's window);
    returns the next step."""
    for _ in range(0, count):
        f = _ring_wait(qk_ready, it, NUM_F)
        _ring_wait(dv_ready, it, NUM_F)
        _release(f_empty.index(f))
        it += 1
    return it


@gluon.jit
def _dk1_consumer(k1_s, v1_s, qk2_s, dov2_s, kv1_ready, qk_ready, dv_ready, f_empty, DK1, DV1, Lse, Delta,
                         stride_gn, g_base, bh0, N, W1, W2, qk_scale, program_n, n_m, GROUP,
                         HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, NUM_F: gl.constexpr,
                         C: gl.constexpr, num_warps: gl.constexpr):
    """Consumer C of a two-tile dK1/dV1 program: K1 rows program_n + C * BLOCK_N.. . Its query tiles are the
    program's tiles [first, last), first = C * BLOCK_N / BLOCK_M; on each of their (tile, t) operand pairs it runs
    _dk1_probs_and_grads and the dV1 / dK1 wgmmas, and signs off the others unread."""
    s_layout: gl.constexpr = _mma_layout(num_warps, BLOCK_M)
    g_layout: gl.constexpr = _mma_layout(num_warps, HEAD_DIM)
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=g_layout, k_width=2)
    col_s: gl.constexpr = gl.SliceLayout(0, s_layout)
    dtype: gl.constexpr = k1_s.dtype
    gl.static_assert(BLOCK_N % BLOCK_M == 0, "a consumer's query tiles start at a tile of the program")
    first: gl.constexpr = C * (BLOCK_N // BLOCK_M)

    start_n = program_n + C * BLOCK_N
    hi, full_lo, full_hi = _k1_tile_windows(start_n, N, W1, BLOCK_N)
    last = first + gl.maximum(gl.cdiv(hi - start_n, BLOCK_M), 0)
    k1 = k1_s.index(C)
    v1 = v1_s.index(C)
    offs_n = start_n + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, s_layout))
    zero_s = gl.zeros([BLOCK_N, BLOCK_M], gl.float32, layout=s_layout)
    dk1 = gl.zeros([BLOCK_N, HEAD_DIM], gl.float32, layout=g_layout)
    dv1 = gl.zeros([BLOCK_N, HEAD_DIM], gl.float32, layout=g_layout)
    mbarrier.wait(kv1_ready, 0)
    it = 0
    for g in range(0, GROUP):
        stats_base = (bh0 + g).to(gl.int64) * N
        # first can be past the program's n_m tiles (query rows that end before this K1 tile, N < 128): then the
        # consumer signs off all n_m and its own tiles [first, last) are none
        it = _dk1_sign_off(qk_ready, dv_ready, f_empty, it, gl.minimum(first, n_m) * W2, NUM_F)
        for mi in range(first, last):
            offs_m, m_ok, lse, delta, masked = _dk1_query_tile(Lse, Delta, stats_base, program_n, mi, hi, full_lo,
                                                               full_hi, W2, BLOCK_M, col_s)
            for t in range(0, W2):
                f = _ring_wait(qk_ready, it, NUM_F)
                _ring_wait(dv_ready, it, NUM_F)
                qk2_t = qk2_s.index(f)
                dov2_t = dov2_s.index(f)
                pt, dst = _dk1_probs_and_grads(k1, v1, qk2_t, dov2_t, zero_s, lse, delta, offs_m, offs_n, m_ok,
                                               masked, t, W1, qk_scale)
                dv1 = warpgroup_mma(gl.convert_layout(pt.to(dtype), p_layout), dov2_t, dv1, is_async=True)
                dk1 = warpgroup_mma(gl.convert_layout(dst.to(dtype), p_layout), qk2_t, dk1, is_async=True)
                dv1, dk1 = warpgroup_mma_wait(num_outstanding=0, deps=(dv1, dk1))
                _release(f_empty.index(f))
                it += 1
        it = _dk1_sign_off(qk_ready, dv_ready, f_empty, it, (n_m - last) * W2, NUM_F)
    _store_k1_rows(dk1 * (qk_scale * LN2), DK1, g_base, stride_gn, start_n, N, BLOCK_N, HEAD_DIM, g_layout)
    _store_k1_rows(dv1, DV1, g_base, stride_gn, start_n, N, BLOCK_N, HEAD_DIM, g_layout)


@gluon.jit(do_not_specialize=["N", "W1", "W2", "HKV", "GROUP"])
def _simplicial_bwd_dk1dv1_gluon(q_desc, do_desc, k1_desc, v1_desc, k2_desc, v2_desc, DK1, DV1, Lse, Delta,
                                        stride_gb, stride_gn, N, W1, W2, qk_scale, HKV, GROUP,
                                        HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                                        NUM_F: gl.constexpr, CONSUMER_REGS: gl.constexpr,
                                        PRODUCER_REGS: gl.constexpr, num_warps: gl.constexpr):
    b, hk, program_n, lo, hi, _, _ = _k1_program(N, W1, HKV, 2 * BLOCK_N)
    n_m = gl.cdiv(hi - lo, BLOCK_M)

    dtype: gl.constexpr = k1_desc.dtype
    k1_s = gl.allocate_shared_memory(dtype, [2] + k1_desc.block_type.shape, k1_desc.layout)
    v1_s = gl.allocate_shared_memory(dtype, [2] + v1_desc.block_type.shape, v1_desc.layout)
    q_s = gl.allocate_shared_memory(dtype, q_desc.block_type.shape, q_desc.layout)
    do_s = gl.allocate_shared_memory(dtype, do_desc.block_type.shape, do_desc.layout)
    k2_s = gl.allocate_shared_memory(dtype, [2] + k2_desc.block_type.shape, k2_desc.layout)
    v2_s = gl.allocate_shared_memory(dtype, [2] + v2_desc.block_type.shape, v2_desc.layout)
    qk2_s = gl.allocate_shared_memory(dtype, [NUM_F] + q_desc.block_type.shape, q_desc.layout)
    dov2_s = gl.allocate_shared_memory(dtype, [NUM_F] + q_desc.block_type.shape, q_desc.layout)
    kv1_ready = _barriers(1).index(0)
    q_ready = _barriers(1).index(0)
    do_ready = _barriers(1).index(0)
    k2_ready = _barriers(2)
    v2_ready = _barriers(2)
    qk_ready = _barriers(NUM_F)
    dv_ready = _barriers(NUM_F)
    f_empty = _barriers(NUM_F, 2)  # both consumers sign off each pair

    g_base = b.to(gl.int64) * stride_gb + hk * HEAD_DIM
    bh0 = b * (HKV * GROUP) + hk * GROUP
    # argument lists written out per partition (see _simplicial_fwd_gluon)
    gl.warp_specialize([
        (_dk1_consumer, (k1_s, v1_s, qk2_s, dov2_s, kv1_ready, qk_ready, dv_ready, f_empty, DK1, DV1, Lse,
                                Delta, stride_gn, g_base, bh0, N, W1, W2, qk_scale, program_n, n_m, GROUP, HEAD_DIM,
                                BLOCK_M, BLOCK_N, NUM_F, 0, num_warps)),
        (_dk1_consumer, (k1_s, v1_s, qk2_s, dov2_s, kv1_ready, qk_ready, dv_ready, f_empty, DK1, DV1, Lse,
                                Delta, stride_gn, g_base, bh0, N, W1, W2, qk_scale, program_n, n_m, GROUP, HEAD_DIM,
                                BLOCK_M, BLOCK_N, NUM_F, 1, num_warps)),
        (_dk1_one_product_producer, (q_desc, k2_desc, k1_desc, v1_desc, q_s, k2_s, qk2_s, k1_s, v1_s, q_ready,
                                     k2_ready, kv1_ready, qk_ready, f_empty, b * N, program_n, hk * HEAD_DIM, hk,
                                     GROUP, lo, n_m, W2, HEAD_DIM, BLOCK_M, BLOCK_N, NUM_F, 2, PRODUCER_WARPS)),
        (_dk1_one_product_producer, (do_desc, v2_desc, k1_desc, v1_desc, do_s, v2_s, dov2_s, k1_s, v1_s, do_ready,
                                     v2_ready, kv1_ready, dv_ready, f_empty, b * N, program_n, hk * HEAD_DIM, hk,
                                     GROUP, lo, n_m, W2, HEAD_DIM, BLOCK_M, BLOCK_N, NUM_F, 0, PRODUCER_WARPS)),
    ], [num_warps, PRODUCER_WARPS, PRODUCER_WARPS], [CONSUMER_REGS, PRODUCER_REGS, PRODUCER_REGS])

# With ROLES=2 a program owns one K1 tile and its two consumers split each step by role, as the two-role dQ kernel:
# the probs consumer forms S^T, P^T and sums dV1 += P^T @ (dO*V2_t), the grads consumer forms dP^T and, with P^T
# handed over in the input dtype through shared memory, dS^T, and sums dK1 += dS^T @ (Q*K2_t). Each holds one fp32
# [BLOCK_N, D] accumulator, so at D=128 a step takes query tiles of 64 rows where the two-tile kernel's consumers,
# holding both, take 32. The same two producers form the operand pairs, read by both consumers.


@gluon.jit
def _dk1_probs_consumer(k1_s, v1_s, qk2_s, dov2_s, p_s, kv1_ready, qk_ready, dv_ready, f_empty, p_ready, p_empty,
                        DV1, Lse, Delta, stride_gn, g_base, bh0, N, W1, W2, qk_scale, start_n, n_m, GROUP,
                        HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, NUM_F: gl.constexpr,
                        NUM_P: gl.constexpr, num_warps: gl.constexpr):
    """Per (query tile, t): S^T = K1 @ (Q*K2_t)^T, P^T = exp2(S^T * qk_scale - lse) (masked where the tile crosses a
    window edge), rounded to the input dtype into the P ring and dV1 += P^T @ (dO*V2_t); one store of dV1."""
    s_layout: gl.constexpr = _mma_layout(num_warps, BLOCK_M)
    g_layout: gl.constexpr = _mma_layout(num_warps, HEAD_DIM)
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=g_layout, k_width=2)
    col_s: gl.constexpr = gl.SliceLayout(0, s_layout)
    dtype: gl.constexpr = k1_s.dtype
    hi, full_lo, full_hi = _k1_tile_windows(start_n, N, W1, BLOCK_N)
    k1 = k1_s.index(0)
    offs_n = start_n + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, s_layout))
    zero_s = gl.zeros([BLOCK_N, BLOCK_M], gl.float32, layout=s_layout)
    dv1 = gl.zeros([BLOCK_N, HEAD_DIM], gl.float32, layout=g_layout)
    mbarrier.wait(kv1_ready, 0)
    it = 0
    for g in range(0, GROUP):
        stats_base = (bh0 + g).to(gl.int64) * N
        for mi in range(0, n_m):
            offs_m, m_ok, lse, _, masked = _dk1_query_tile(Lse, Delta, stats_base, start_n, mi, hi, full_lo,
                                                           full_hi, W2, BLOCK_M, col_s)
            for t in range(0, W2):
                f = _ring_wait(qk_ready, it, NUM_F)
                _ring_wait(dv_ready, it, NUM_F)
                st = warpgroup_mma(k1, qk2_s.index(f).permute((1, 0)), zero_s, use_acc=False, is_async=True)
                st = warpgroup_mma_wait(num_outstanding=0, deps=(st, ))
                pt = gl.exp2(st * qk_scale - gl.expand_dims(lse, 0))
                if masked:
                    pt = gl.where(_k1_frame_mask(offs_m, offs_n, m_ok, t, W1), pt, 0.0)
                pt = pt.to(dtype)
                dv1 = warpgroup_mma(gl.convert_layout(pt, p_layout), dov2_s.index(f), dv1, is_async=True)
                e = _ring_wait(p_empty, it, NUM_P, FREE=True)
                p_s.index(e).store(pt)
                _release(p_ready.index(e))  # every warp's stores before the arrive
                dv1 = warpgroup_mma_wait(num_outstanding=0, deps=(dv1, ))
                _release(f_empty.index(f))
                it += 1
    _store_k1_rows(dv1, DV1, g_base, stride_gn, start_n, N, BLOCK_N, HEAD_DIM, g_layout)


@gluon.jit
def _dk1_grads_consumer(v1_s, qk2_s, dov2_s, p_s, kv1_ready, qk_ready, dv_ready, f_empty, p_ready, p_empty, DK1,
                        Lse, Delta, stride_gn, g_base, bh0, N, W1, W2, qk_scale, start_n, n_m, GROUP,
                        HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, NUM_F: gl.constexpr,
                        NUM_P: gl.constexpr, num_warps: gl.constexpr):
    """Per (query tile, t): dP^T = V1 @ (dO*V2_t)^T, with the probs consumer's P^T dS^T = P^T * (dP^T - delta) and
    dK1 += dS^T @ (Q*K2_t); one store of dK1 (times sm_scale)."""
    s_layout: gl.constexpr = _mma_layout(num_warps, BLOCK_M)
    g_layout: gl.constexpr = _mma_layout(num_warps, HEAD_DIM)
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=g_layout, k_width=2)
    col_s: gl.constexpr = gl.SliceLayout(0, s_layout)
    dtype: gl.constexpr = v1_s.dtype
    hi, full_lo, full_hi = _k1_tile_windows(start_n, N, W1, BLOCK_N)
    v1 = v1_s.index(0)
    zero_s = gl.zeros([BLOCK_N, BLOCK_M], gl.float32, layout=s_layout)
    dk1 = gl.zeros([BLOCK_N, HEAD_DIM], gl.float32, layout=g_layout)
    mbarrier.wait(kv1_ready, 0)
    it = 0
    for g in range(0, GROUP):
        stats_base = (bh0 + g).to(gl.int64) * N
        for mi in range(0, n_m):
            _, _, _, delta, _ = _dk1_query_tile(Lse, Delta, stats_base, start_n, mi, hi, full_lo, full_hi, W2,
                                                BLOCK_M, col_s)
            for t in range(0, W2):
                f = _ring_wait(qk_ready, it, NUM_F)
                _ring_wait(dv_ready, it, NUM_F)
                dpt = warpgroup_mma(v1, dov2_s.index(f).permute((1, 0)), zero_s, use_acc=False, is_async=True)
                dpt = warpgroup_mma_wait(num_outstanding=0, deps=(dpt, ))
                e = _ring_wait(p_ready, it, NUM_P)
                dst = p_s.index(e).load(s_layout).to(gl.float32) * (dpt - gl.expand_dims(delta, 0))
                _release(p_empty.index(e))
                dk1 = warpgroup_mma(gl.convert_layout(dst.to(dtype), p_layout), qk2_s.index(f), dk1, is_async=True)
                dk1 = warpgroup_mma_wait(num_outstanding=0, deps=(dk1, ))
                _release(f_empty.index(f))
                it += 1
    _store_k1_rows(dk1 * (qk_scale * LN2), DK1, g_base, stride_gn, start_n, N, BLOCK_N, HEAD_DIM, g_layout)


@gluon.jit(do_not_specialize=["N", "W1", "W2", "HKV", "GROUP"])
def _simplicial_bwd_dk1dv1_roles_gluon(q_desc, do_desc, k1_desc, v1_desc, k2_desc, v2_desc, DK1, DV1, Lse, Delta,
                                       stride_gb, stride_gn, N, W1, W2, qk_scale, HKV, GROUP,
                                       HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                                       NUM_F: gl.constexpr, NUM_P: gl.constexpr, CONSUMER_REGS: gl.constexpr,
                                       PRODUCER_REGS: gl.constexpr, num_warps: gl.constexpr):
    b, hk, start_n, lo, hi, _, _ = _k1_program(N, W1, HKV, BLOCK_N)
    n_m = gl.cdiv(hi - lo, BLOCK_M)

    dtype: gl.constexpr = k1_desc.dtype
    k1_s = gl.allocate_shared_memory(dtype, [1] + k1_desc.block_type.shape, k1_desc.layout)
    v1_s = gl.allocate_shared_memory(dtype, [1] + v1_desc.block_type.shape, v1_desc.layout)
    q_s = gl.allocate_shared_memory(dtype, q_desc.block_type.shape, q_desc.layout)
    do_s = gl.allocate_shared_memory(dtype, do_desc.block_type.shape, do_desc.layout)
    k2_s = gl.allocate_shared_memory(dtype, [2] + k2_desc.block_type.shape, k2_desc.layout)
    v2_s = gl.allocate_shared_memory(dtype, [2] + v2_desc.block_type.shape, v2_desc.layout)
    qk2_s = gl.allocate_shared_memory(dtype, [NUM_F] + q_desc.block_type.shape, q_desc.layout)
    dov2_s = gl.allocate_shared_memory(dtype, [NUM_F] + q_desc.block_type.shape, q_desc.layout)
    p_s = gl.allocate_shared_memory(dtype, [NUM_P, BLOCK_N, BLOCK_M],
                                    gl.NVMMASharedLayout.get_default_for([BLOCK_N, BLOCK_M], dtype))
    kv1_ready = _barriers(1).index(0)
    q_ready = _barriers(1).index(0)
    do_ready = _barriers(1).index(0)
    k2_ready = _barriers(2)
    v2_ready = _barriers(2)
    qk_ready = _barriers(NUM_F)
    dv_ready = _barriers(NUM_F)
    f_empty = _barriers(NUM_F, 2)  # both consumers sign off each pair
    p_ready = _barriers(NUM_P)
    p_empty = _barriers(NUM_P)

    g_base = b.to(gl.int64) * stride_gb + hk * HEAD_DIM
    bh0 = b * (HKV * GROUP) + hk * GROUP
    gl.warp_specialize([
        (_dk1_grads_consumer, (v1_s, qk2_s, dov2_s, p_s, kv1_ready, qk_ready, dv_ready, f_empty, p_ready, p_empty,
                               DK1, Lse, Delta, stride_gn, g_base, bh0, N, W1, W2, qk_scale, start_n, n_m, GROUP,
                               HEAD_DIM, BLOCK_M, BLOCK_N, NUM_F, NUM_P, num_warps)),
        (_dk1_probs_consumer, (k1_s, v1_s, qk2_s, dov2_s, p_s, kv1_ready, qk_ready, dv_ready, f_empty, p_ready,
                               p_empty, DV1, Lse, Delta, stride_gn, g_base, bh0, N, W1, W2, qk_scale, start_n, n_m,
                               GROUP, HEAD_DIM, BLOCK_M, BLOCK_N, NUM_F, NUM_P, num_warps)),
        (_dk1_one_product_producer, (q_desc, k2_desc, k1_desc, v1_desc, q_s, k2_s, qk2_s, k1_s, v1_s, q_ready,
                                     k2_ready, kv1_ready, qk_ready, f_empty, b * N, start_n, hk * HEAD_DIM, hk,
                                     GROUP, lo, n_m, W2, HEAD_DIM, BLOCK_M, BLOCK_N, NUM_F, 1, PRODUCER_WARPS)),
        (_dk1_one_product_producer, (do_desc, v2_desc, k1_desc, v1_desc, do_s, v2_s, dov2_s, k1_s, v1_s, do_ready,
                                     v2_ready, kv1_ready, dv_ready, f_empty, b * N, start_n, hk * HEAD_DIM, hk,
                                     GROUP, lo, n_m, W2, HEAD_DIM, BLOCK_M, BLOCK_N, NUM_F, 0, PRODUCER_WARPS)),
    ], [num_warps, PRODUCER_WARPS, PRODUCER_WARPS], [CONSUMER_REGS, PRODUCER_REGS, PRODUCER_REGS])


def _launch(kernel, grid, do, q, k1, k2, v1, v2, lse, delta, w1, w2, sm_scale, cfg, poison, **extra):
    b, n, hq, d = q.shape
    hkv = k1.shape[2]
    dk1 = new_output((b, n, hkv, d), q, q.dtype, poison)
    dv1 = new_output((b, n, hkv, d), q, q.dtype, poison)
    compiled = kernel[grid](
        _descriptor(q, cfg["BLOCK_M"]), _descriptor(do, cfg["BLOCK_M"]), _descriptor(k1, cfg["BLOCK_N"]),
        _descriptor(v1, cfg["BLOCK_N"]), _descriptor(k2, cfg["BLOCK_M"]), _descriptor(v2, cfg["BLOCK_M"]),
        dk1, dv1, lse, delta, dk1.stride(0), dk1.stride(1), n, w1, w2, base2_scale(sm_scale), hkv, hq // hkv,
        HEAD_DIM=d, BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], NUM_F=cfg["NUM_F"], **extra,
        CONSUMER_REGS=cfg["CONSUMER_REGS"], PRODUCER_REGS=cfg["PRODUCER_REGS"], num_warps=cfg["num_warps"],
        maxnreg=cfg["maxnreg"],
    )
    return dk1, dv1, (compiled,)


def backward_dk1dv1(do, q, k1, k2, v1, v2, lse, delta, w1, w2, sm_scale, cfg, poison=False):
    """(dk1, dv1, compiled kernels) in q's dtype from the two-tile kernel (windows clipped to N, lse base 2,
    delta = rowsum(O * dO)). cfg: BLOCK_N (k1 rows per consumer, two consumers per program), BLOCK_M (query rows per
    step), NUM_F (formed operand buffers), CONSUMER_REGS and PRODUCER_REGS (setmaxnreg of the partitions),
    num_warps, maxnreg."""
    b, n, hkv = q.shape[0], q.shape[1], k1.shape[2]
    grid = (triton.cdiv(n, 2 * cfg["BLOCK_N"]) * b * hkv,)
    return _launch(_simplicial_bwd_dk1dv1_gluon, grid, do, q, k1, k2, v1, v2, lse, delta, w1, w2, sm_scale, cfg,
                   poison)


def backward_dk1dv1_roles(do, q, k1, k2, v1, v2, lse, delta, w1, w2, sm_scale, cfg, poison=False):
    """As `backward_dk1dv1`, from the two-role kernel (one K1 tile of BLOCK_N rows per program; NUM_P: the P ring)."""
    b, n, hkv = q.shape[0], q.shape[1], k1.shape[2]
    grid = (triton.cdiv(n, cfg["BLOCK_N"]) * b * hkv,)
    return _launch(_simplicial_bwd_dk1dv1_roles_gluon, grid, do, q, k1, k2, v1, v2, lse, delta, w1, w2, sm_scale,
                   cfg, poison, NUM_P=cfg["NUM_P"])
