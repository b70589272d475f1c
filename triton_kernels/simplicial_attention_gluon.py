"""2-simplicial attention kernels in Gluon (Triton's explicit-layout dialect), warp-specialised for Hopper (sm_90).

The forward has the same math and outputs as `_simplicial_fwd` in simplicial_attention.py (out and the base-2
log-sum-exp the backward reads) and the same structure: a program owns BLOCK_M queries of one head and walks the
(offset t, K1 tile j) steps in one flat loop. What Gluon adds is the division of labour that Triton's `tl` leaves
to the compiler:
  * a producer warpgroup issues every TMA load into shared memory, guarded by mbarriers: Q once; per offset the K2
    rows i - t (one buffer, freed once Q * K2_t is formed) and the V2 rows (V2_BUF buffers, freed after the fold);
    per step the K1_j / V1_j tiles into a NUM_BUF ring. It runs on 24 registers per thread (setmaxnreg);
  * the consumer warpgroup gets the rest (232 per thread with maxnreg=128 at launch, two programs per SM) for the
    two fp32 accumulators, reading Q, K2 and V2 from shared memory only when an offset starts or ends;
  * each buffer hands back through `_release` (thread barrier, async-proxy fence, arrive): without the fence a TMA
    load could overwrite K2 / V2 / Q before the consumer's ld.shared reads of them were ordered (a race seen in 3 of
    40 fp16 launches).
At D=128 this runs at 1.22-1.50x our `tl` forward (benchmarks/results/gluon-2026-11-27.md); at D=64, launched at
maxnreg=80 so that three programs shared an SM, v8 ran 1.03-1.14x over every tl kernel
(benchmarks/results/attention-2026-11-27-v8.md), and the paired steps below a further 1.02-1.07x (-v10.md).
With CONSUMERS=2 a program owns two adjacent query tiles, one consumer warpgroup each: their k1 windows overlap in all
but one tile, so the producer loads the union once into one ring and each consumer signs off every tile (the ring's
empty barriers count both), computing only those inside its own window. That halves the K1/V1 traffic; it was the
D=128 default at w1 >= 512 until v15 (simplicial_attention.gluon_fwd_config). With PAIRED (the D=64 default) the one
consumer takes two K1 tiles per softmax step: both S wgmmas issued together, then one row max and one rescale of the
offset accumulator for 128 columns, the per-step work of a tile twice as wide without its column waste. The
backward kernels below (dK1/dV1 in the k1 frame, dQ/dK2/dV2 in the query frame) follow the same scheme and run at
D=64 and 128. The D=64 dK1/dV1 kernel has two consumers too, one per K1 tile of a program, and two producers that
form the per-step operands Q * K2_t and dO * V2_t, once for both consumers. At D=128 both backward kernels split each
step between two consumers of different roles instead (ROLES=2): one forms S and P and the sum P multiplies, and
hands P over in bf16 to the other, which forms dP and dS and the sum dS multiplies; each holds one fp32 accumulator.
The package's forward tiles are packed at every window (_simplicial_fwd_packed_gluon, below; at D=128 since v15): a
tile's 64 rows are 8 queries x 8 offsets rather than 64 queries at one offset, so their k1 windows span w1 + 7
columns instead of w1 + 63. Where that window fits shared memory (RESIDENT: w1 <= 265 at D=64, w1 <= 257 at D=128)
it is loaded once per query group for all its offsets instead of once per offset; at D=128 and w1 > 128 two query
groups share it (CONSUMERS=2), and beyond w1 = 257 two query groups share one streamed ring instead. With ONE_GROUP
(not a default) a tile holds every offset of its queries, so each row keeps one offset for the whole window and the
offset accumulator is the output's: no second fp32 accumulator.

Tensors are read through 2-D [B*N, H*D] TMA views. Rows before a batch's start or past its end belong to the
neighbouring batch (or read as zero at the ends of the tensor); the window masks drop every such (i, j, k) triple,
as in the `tl` kernel, and rows >= N are never stored.
"""

from __future__ import annotations

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma, warpgroup_mma,
                                                            warpgroup_mma_wait)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

# The producer is a whole warpgroup: setmaxnreg, which hands its registers to the consumer, acts per warpgroup. A
# one-warp producer gave wrong outputs on one shape of five with two programs per SM.
PRODUCER_WARPS = gl.constexpr(4)
_LOG2E = 1.4426950408889634
_LN2 = gl.constexpr(0.6931471805599453)  # sm_scale = qk_scale * ln 2


@gluon.constexpr_function
def _mma_layout(num_warps, n):
    """The wgmma accumulator layout of an [M, n] result: warps stacked along M, instruction [16, n, 16]."""
    return gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, n, 16])


@gluon.jit
def _barriers(n: gl.constexpr, count: gl.constexpr = 1):
    """n mbarriers (index them), each completing on `count` arrivals (one per partition that must sign) plus the
    bytes its TMA loads expect."""
    bars = gl.allocate_shared_memory(gl.int64, [n, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(n):
        mbarrier.init(bars.index(i), count=count)
    return bars


@gluon.jit
def _ring_wait(bars, step, NUM: gl.constexpr, FREE: gl.constexpr = False):
    """Ring slot step % NUM, once its barrier completed for ring step `step`: filled (the consumer's wait) or, with
    FREE, handed back from step - NUM (the producer's wait, which passes at once the first time round)."""
    slot = step % NUM
    phase = (step // NUM) & 1
    if FREE:
        phase = phase ^ 1
    mbarrier.wait(bars.index(slot), phase)
    return slot


@gluon.jit
def _next_tile(t, j, n_tiles):
    """The (offset t, tile j) after (t, j) in a flat loop over n_tiles tiles per offset: divmod(step, n_tiles)
    counted instead of divided (a division per step cost ~25 instructions, benchmarks/kernel_notes.md, v7). Start
    from (0, -1). The twin of simplicial_attention._next_tile, for Gluon kernels."""
    j += 1
    t = gl.where(j == n_tiles, t + 1, t)
    j = gl.where(j == n_tiles, 0, j)
    return t, j


@gluon.jit
def _query_tile_windows(start_m, N, W1, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr):
    """The k1 positions a query tile sees, as simplicial_attention._window_tiles: (lo, full_lo, full_hi, n_tiles)."""
    lo = gl.maximum(start_m - W1 + 1, 0)
    hi = gl.minimum(start_m + BLOCK_M, N)
    full_lo = gl.maximum(start_m + BLOCK_M - W1, lo)
    full_hi = gl.minimum(start_m + 1, hi)
    return lo, full_lo, full_hi, gl.cdiv(hi - lo, BLOCK_N)


@gluon.jit
def _query_program(N, H, ROWS: gl.constexpr):
    """A query-frame program's (batch * head, batch, head, first query row): ROWS query rows of one head."""
    num_m = gl.cdiv(N, ROWS)
    pid = gl.program_id(0)
    pid_bh = pid // num_m
    return pid_bh, pid_bh // H, pid_bh % H, (pid % num_m) * ROWS


@gluon.jit
def _in_windows(offs_m, cols, t, m_ok, W1):
    """[rows, cols] mask of the (query i, k1 column j) pairs inside the windows at offset t, as
    simplicial_attention._in_windows: 0 <= i - j < W1 as one unsigned compare; rows without a k2 row i - t (or past
    the sequence) get the bound 0."""
    lim = gl.where(((offs_m - t) >= 0) & m_ok, W1, 0).to(gl.uint32)
    diff = gl.expand_dims(offs_m, 1) - gl.expand_dims(cols, 0)
    return diff.to(gl.uint32, bitcast=True) < gl.expand_dims(lim, 1)


@gluon.jit
def _opaque(x):
    """x through a register move the compiler cannot see through: what is computed from it stays where it is."""
    return gl.inline_asm_elementwise("mov.b32 $0, $1;", "=r,r", [x], dtype=gl.int32, is_pure=True, pack=1)


@gluon.jit
def _load_k1v1(k1_desc, v1_desc, k1_dst, v1_dst, bar, row, col_k):
    """K1 and V1 rows row.. into k1_dst / v1_dst, both under barrier `bar` (the packed forward's resident window)."""
    mbarrier.expect(bar, k1_desc.block_type.nbytes + v1_desc.block_type.nbytes)
    tma.async_copy_global_to_shared(k1_desc, [row, col_k], bar, k1_dst)
    tma.async_copy_global_to_shared(v1_desc, [row, col_k], bar, v1_dst)


@gluon.jit
def _load_k1v1_tile(k1_desc, v1_desc, k1_s, v1_s, kv_ready, kv_empty, step, row, col_k, NUM_BUF: gl.constexpr):
    """Step `step`'s K1 / V1 tiles (rows row..) into ring slot step % NUM_BUF, once the consumer freed it. Written
    out rather than through _load_k1v1: indexing the slot before the expect costs the compiled kernel an address
    instruction per load (PTX of the D=64 dQ kernel)."""
    s = _ring_wait(kv_empty, step, NUM_BUF, FREE=True)
    mbarrier.expect(kv_ready.index(s), k1_desc.block_type.nbytes + v1_desc.block_type.nbytes)
    tma.async_copy_global_to_shared(k1_desc, [row, col_k], kv_ready.index(s), k1_s.index(s))
    tma.async_copy_global_to_shared(v1_desc, [row, col_k], kv_ready.index(s), v1_s.index(s))


@gluon.jit
def _producer(q_desc, k1_desc, v1_desc, k2_desc, v2_desc, q_s, k1_s, v1_s, k2_s, v2_s,
              q_ready, kv_ready, kv_empty, k2_ready, k2_empty, v2_ready, v2_empty,
              row0, col_q, col_k, start_m, lo, n_tiles, W2,
              BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, NUM_BUF: gl.constexpr, V2_BUF: gl.constexpr,
              CONSUMERS: gl.constexpr):
    """Every TMA load of the program, in the order the consumers use them. Q, K2_t and V2_t come as one
    [BLOCK_M, D] block per consumer under one barrier; the K1 / V1 tiles are the consumers' union, each loaded once."""
    mbarrier.expect(q_ready, CONSUMERS * q_desc.block_type.nbytes)
    for c in gl.static_range(CONSUMERS):
        tma.async_copy_global_to_shared(q_desc, [row0 + start_m + c * BLOCK_M, col_q], q_ready, q_s.index(c))
    t = 0
    j = -1
    for step in range(0, W2 * n_tiles):
        t, j = _next_tile(t, j, n_tiles)
        if j == 0:  # K2_t: one buffer, free once the consumer formed Q * K2_{t-1}
            mbarrier.wait(k2_empty, (t & 1) ^ 1)
            mbarrier.expect(k2_ready, CONSUMERS * k2_desc.block_type.nbytes)
            for c in gl.static_range(CONSUMERS):
                tma.async_copy_global_to_shared(k2_desc, [row0 + start_m + c * BLOCK_M - t, col_k], k2_ready,
                                                k2_s.index(c))
        _load_k1v1_tile(k1_desc, v1_desc, k1_s, v1_s, kv_ready, kv_empty, step, row0 + lo + j * BLOCK_N, col_k,
                        NUM_BUF)
        # V2_t. Two buffers: loaded with the offset's first tile, into the one offset t-2 freed. One buffer: loaded
        # with its last tile (the fold is at the end of the offset), once offset t-1 was folded. Always after the K1
        # tile, so that waiting for a fold never holds back the tile the consumer needs next.
        if j == (0 if V2_BUF == 2 else n_tiles - 1):
            e = t % V2_BUF
            mbarrier.wait(v2_empty.index(e), ((t // V2_BUF) & 1) ^ 1)
            mbarrier.expect(v2_ready.index(e), CONSUMERS * v2_desc.block_type.nbytes)
            for c in gl.static_range(CONSUMERS):
                tma.async_copy_global_to_shared(v2_desc, [row0 + start_m + c * BLOCK_M - t, col_k], v2_ready.index(e),
                                                v2_s.index(e * CONSUMERS + c))


@gluon.jit
def _release(bar, bar2=None):
    """Hand a buffer (or two) back to the producer: every consumer warp is done with it (its loads returned, its
    wgmmas waited), and its generic-proxy reads are ordered before the producer's TMA (async-proxy) overwrite."""
    gl.thread_barrier()
    fence_async_shared()
    mbarrier.arrive(bar, count=1)
    if bar2 is not None:
        mbarrier.arrive(bar2, count=1)


@gluon.jit
def _form_qk2(q_s, k2_s, k2_ready, k2_empty, t, a_layout: gl.constexpr):
    """Q * K2_t as the S GEMM's A operand in registers (a packed 16-bit multiply: the exact product rounded once, as
    simplicial_attention._unscaled_product); frees the K2 buffer."""
    mbarrier.wait(k2_ready, t & 1)
    k2 = k2_s.load(a_layout)
    q = q_s.load(a_layout)
    _release(k2_empty)
    return q * k2


@gluon.jit
def _masked(sc, offs_m, offs_n, m_ok, rows_cut, start_n, full_lo, full_hi, t, W1, BLOCK_N: gl.constexpr,
            fill: gl.constexpr = float("-inf"), FRESH: gl.constexpr = False):
    """A [query rows, K1 columns start_n..] tile (logits, or with fill=0 probabilities) with the pairs outside the
    windows set to fill, tested only where the tile crosses a window edge: its columns cross full_lo or full_hi, or
    rows_cut (some row has no k2 row at its offset t: t > start_m in a query tile). FRESH: the mask is computed from
    the rows relative to start_n, made opaque, so that the compiler cannot hoist each element's row - column out of
    the loop and keep it live (the packed forward spilled 68 slots to that)."""
    if (start_n < full_lo) | (start_n + BLOCK_N > full_hi) | rows_cut:
        if FRESH:
            sc = gl.where(_in_windows(_opaque(offs_m - start_n), offs_n, t - start_n, m_ok, W1), sc, fill)
        else:
            sc = gl.where(_in_windows(offs_m, start_n + offs_n, t, m_ok, W1), sc, fill)
    return sc


@gluon.jit
def _new_max(m_i, row_max, qk_scale):
    """The running row max after logits whose row max is row_max (unscaled): (m_new, m_use, alpha), m_use the max
    to subtract (rows with nothing valid yet stay at zero) and alpha the rescale of what was summed before."""
    m_new = gl.maximum(m_i, row_max * qk_scale)
    m_use = gl.where(m_new == float("-inf"), 0.0, m_new)
    return m_new, m_use, gl.exp2(m_i - m_use)


@gluon.jit
def _softmax_tile(sc, m_i, l_i, offs_m, offs_n, m_ok, rows_cut, start_n, full_lo, full_hi, t, W1, qk_scale,
                  BLOCK_N: gl.constexpr):
    """Window mask (only on tiles that cross a window edge) and one online-softmax step on the base-2 logits
    sc * qk_scale (qk_scale > 0): (p, alpha, m_new, l_new)."""
    sc = _masked(sc, offs_m, offs_n, m_ok, rows_cut, start_n, full_lo, full_hi, t, W1, BLOCK_N)
    m_new, m_use, alpha = _new_max(m_i, gl.max(sc, 1), qk_scale)
    p = gl.exp2(sc * qk_scale - gl.expand_dims(m_use, 1))
    return p, alpha, m_new, l_i * alpha + gl.sum(p, 1)


@gluon.jit
def _accumulate(p, alpha, acc_t, scale_t, v1_tile, j, p_layout: gl.constexpr, row_o: gl.constexpr):
    """Issue acc_t = acc_t * alpha + P @ V1_j (async; an offset's first tile starts from zero through wgmma's
    use-acc flag, the previous offset having been folded); scale_t collects the rescaling owed to acc since the
    offset began. Returns (the wgmma's accumulator token, scale_t)."""
    acc_t = acc_t * gl.expand_dims(gl.convert_layout(alpha, row_o), 1)
    scale_t = gl.where(j == 0, 1.0, scale_t) * alpha
    pv = warpgroup_mma(gl.convert_layout(p.to(v1_tile.dtype), p_layout), v1_tile, acc_t, use_acc=j > 0,
                       is_async=True)
    return pv, scale_t


@gluon.jit
def _step(qk2, k1_tile, v1_tile, s_zero, m_i, l_i, acc_t, scale_t, offs_m, offs_n, m_ok, rows_cut, start_n, full_lo,
          full_hi, t, j, W1, qk_scale, BLOCK_N: gl.constexpr, p_layout: gl.constexpr, row_o: gl.constexpr):
    """One (offset t, K1 tile j) step of a consumer: S wgmma, softmax, P @ V1 wgmma (j counts the consumer's own
    tiles of the offset). Returns (m_i, l_i, acc_t, scale_t)."""
    sc = warpgroup_mma(qk2, k1_tile.permute((1, 0)), s_zero, use_acc=False, is_async=True)
    sc = warpgroup_mma_wait(num_outstanding=0, deps=(sc, ))
    p, alpha, m_i, l_i = _softmax_tile(sc, m_i, l_i, offs_m, offs_n, m_ok, rows_cut, start_n, full_lo, full_hi, t, W1,
                                       qk_scale, BLOCK_N)
    pv, scale_t = _accumulate(p, alpha, acc_t, scale_t, v1_tile, j, p_layout, row_o)
    acc_t = warpgroup_mma_wait(num_outstanding=0, deps=(pv, ))
    return m_i, l_i, acc_t, scale_t


@gluon.jit
def _narrow_mask(sc, offs_m, m_ok, rows_cut, start_c, full_lo, full_hi, t, W1, FRESH: gl.constexpr):
    """_masked for the logits of a narrow tile (columns start_c..): the row vectors move to its layout, the same
    registers (a wgmma accumulator's rows do not depend on its width)."""
    row_c: gl.constexpr = gl.SliceLayout(1, sc.type.layout)
    offs_n = gl.arange(0, sc.shape[1], layout=gl.SliceLayout(0, sc.type.layout))
    return _masked(sc, gl.convert_layout(offs_m, row_c), offs_n, gl.convert_layout(m_ok, row_c), rows_cut, start_c,
                   full_lo, full_hi, gl.convert_layout(t, row_c), W1, sc.shape[1], FRESH=FRESH)


@gluon.jit
def _pair_step(qk2, k1_a, v1_a, k1_b, v1_b, s_zero, m_i, l_i, acc_t, scale_t, offs_m, offs_n, m_ok, rows_cut, start_n,
               full_lo, full_hi, t, j, W1, qk_scale, BLOCK_N: gl.constexpr, p_layout: gl.constexpr,
               row_o: gl.constexpr, k1_c=None, v1_c=None, start_c=0, FRESH: gl.constexpr = False):
    """Two adjacent K1 tiles (columns start_n.. and start_n + BLOCK_N..) as one softmax step: both S wgmmas issued
    together, one row max, one rescale of acc_t for 2 * BLOCK_N columns, both P @ V1 wgmmas chained. The per-step
    work of a tile twice as wide, without its column waste (tiles of 128 ran 8-10% faster per FLOP, v9).
    Without k1_b the step has one wide tile. With k1_c / v1_c a narrow tile (the packed forward's tail: columns
    start_c.., t a row vector) joins the step, so that its few columns cost no step of their own. FRESH: see
    _masked."""
    sa = warpgroup_mma(qk2, k1_a.permute((1, 0)), s_zero, use_acc=False, is_async=True)
    if k1_b is not None:
        sb = warpgroup_mma(qk2, k1_b.permute((1, 0)), s_zero, use_acc=False, is_async=True)
    if k1_c is not None:
        c_layout: gl.constexpr = _mma_layout(gl.num_warps(), k1_c.shape[0])
        qk2_c = gl.convert_layout(qk2, gl.DotOperandLayout(operand_index=0, parent=c_layout, k_width=2))
        c_zero = gl.full([qk2.shape[0], k1_c.shape[0]], 0.0, gl.float32, layout=c_layout)
        k1_ct = k1_c.permute((1, 0))
        sc = warpgroup_mma(qk2_c, k1_ct, c_zero, use_acc=False, is_async=True)
        if k1_b is not None:
            sa, sb, sc = warpgroup_mma_wait(num_outstanding=0, deps=(sa, sb, sc))
        else:
            sa, sc = warpgroup_mma_wait(num_outstanding=0, deps=(sa, sc))
        sc = _narrow_mask(sc, offs_m, m_ok, rows_cut, start_c, full_lo, full_hi, t, W1, FRESH)
    elif k1_b is not None:
        sa, sb = warpgroup_mma_wait(num_outstanding=0, deps=(sa, sb))
    else:
        sa = warpgroup_mma_wait(num_outstanding=0, deps=(sa, ))
    sa = _masked(sa, offs_m, offs_n, m_ok, rows_cut, start_n, full_lo, full_hi, t, W1, BLOCK_N, FRESH=FRESH)
    if k1_b is not None:
        sb = _masked(sb, offs_m, offs_n, m_ok, rows_cut, start_n + BLOCK_N, full_lo, full_hi, t, W1, BLOCK_N,
                     FRESH=FRESH)
        row_max = gl.max(gl.maximum(sa, sb), 1)
    else:
        row_max = gl.max(sa, 1)
    if k1_c is not None:
        row_max = gl.maximum(row_max, gl.convert_layout(gl.max(sc, 1), m_i.type.layout))
    m_new, m_use, alpha = _new_max(m_i, row_max, qk_scale)
    pa = gl.exp2(sa * qk_scale - gl.expand_dims(m_use, 1))
    if k1_b is not None:
        pb = gl.exp2(sb * qk_scale - gl.expand_dims(m_use, 1))
        row_sum = gl.sum(pa + pb, 1)
    else:
        row_sum = gl.sum(pa, 1)
    if k1_c is not None:
        pc = gl.exp2(sc * qk_scale - gl.expand_dims(gl.convert_layout(m_use, gl.SliceLayout(1, c_layout)), 1))
        row_sum += gl.convert_layout(gl.sum(pc, 1), m_i.type.layout)
    l_i = l_i * alpha + row_sum
    pv, scale_t = _accumulate(pa, alpha, acc_t, scale_t, v1_a, j, p_layout, row_o)
    if k1_b is not None:
        pv = warpgroup_mma(gl.convert_layout(pb.to(v1_b.dtype), p_layout), v1_b, pv, is_async=True)
    if k1_c is not None:
        pv = warpgroup_mma(gl.convert_layout(pc.to(v1_c.dtype), p_layout), v1_c, pv, is_async=True)
    acc_t = warpgroup_mma_wait(num_outstanding=0, deps=(pv, ))
    return m_new, l_i, acc_t, scale_t


@gluon.jit
def _fold(acc, acc_t, scale_t, v2_s, v2_ready, v2_empty, t, o_layout: gl.constexpr, row_o: gl.constexpr,
          V2_BUF: gl.constexpr, C: gl.constexpr, CONSUMERS: gl.constexpr):
    """acc = acc * scale_t + acc_t * V2_t at the end of offset t; frees V2_t's buffer."""
    e = t % V2_BUF
    return _fold_tile(acc, acc_t, scale_t, v2_s.index(e * CONSUMERS + C), v2_ready.index(e), v2_empty.index(e),
                      (t // V2_BUF) & 1, o_layout, row_o)


@gluon.jit
def _fold_tile(acc, acc_t, scale_t, v2_tile, ready, empty, phase, o_layout: gl.constexpr, row_o: gl.constexpr):
    """acc = acc * scale_t + acc_t * V2 rows (acc None: acc_t * V2 rows), once `ready` completed its phase; frees
    their buffer."""
    mbarrier.wait(ready, phase)
    v2 = v2_tile.load(o_layout)
    _release(empty)
    if acc is None:
        acc = acc_t * v2.to(gl.float32)
    else:
        acc = acc * gl.expand_dims(gl.convert_layout(scale_t, row_o), 1) + acc_t * v2.to(gl.float32)
    return acc


@gluon.jit
def _flat_loop(q_s, k1_s, v1_s, k2_s, v2_s, kv_ready, kv_empty, k2_ready, k2_empty, v2_ready, v2_empty, qk2, s_zero,
               m_i, l_i, acc, acc_t, scale_t, offs_m, offs_n, m_ok, start_m, lo, first, last, full_lo, full_hi,
               n_tiles, W1, W2, qk_scale, a_layout: gl.constexpr, p_layout: gl.constexpr, o_layout: gl.constexpr,
               row_o: gl.constexpr, BLOCK_N: gl.constexpr, NUM_BUF: gl.constexpr, V2_BUF: gl.constexpr,
               C: gl.constexpr, CONSUMERS: gl.constexpr):
    """The consumer's offsets one tile per step, as one flat loop over the program's (offset, tile) sequence; a
    second consumer signs off the tiles outside its window. Returns (m_i, l_i, acc)."""
    t = 0
    j = -1
    for step in range(0, W2 * n_tiles):
        t, j = _next_tile(t, j, n_tiles)
        if j == 0:
            qk2 = _form_qk2(q_s, k2_s, k2_ready, k2_empty, t, a_layout)
        s = _ring_wait(kv_ready, step, NUM_BUF)
        # one consumer: every tile is its own, no window test (it cost 1-5%, results/attention-2026-11-27-v9.md)
        if CONSUMERS == 1:
            m_i, l_i, acc_t, scale_t = _step(qk2, k1_s.index(s), v1_s.index(s), s_zero, m_i, l_i, acc_t, scale_t,
                                             offs_m, offs_n, m_ok, t > start_m, lo + j * BLOCK_N, full_lo, full_hi, t,
                                             j, W1, qk_scale, BLOCK_N, p_layout, row_o)
        elif (j >= first) & (j < last):
            m_i, l_i, acc_t, scale_t = _step(qk2, k1_s.index(s), v1_s.index(s), s_zero, m_i, l_i, acc_t, scale_t,
                                             offs_m, offs_n, m_ok, t > start_m, lo + j * BLOCK_N, full_lo, full_hi, t,
                                             j - first, W1, qk_scale, BLOCK_N, p_layout, row_o)
        _release(kv_empty.index(s))
        if j == n_tiles - 1:  # the offset's last tile: out += (sum_j P V1_j) * V2_t
            acc = _fold(acc, acc_t, scale_t, v2_s, v2_ready, v2_empty, t, o_layout, row_o, V2_BUF, C, CONSUMERS)
    return m_i, l_i, acc


@gluon.jit
def _paired_loop(q_s, k1_s, v1_s, k2_s, v2_s, kv_ready, kv_empty, k2_ready, k2_empty, v2_ready, v2_empty, s_zero,
                 m_i, l_i, acc, acc_t, scale_t, offs_m, offs_n, m_ok, start_m, lo, full_lo, full_hi, n_tiles, W1, W2,
                 qk_scale, a_layout: gl.constexpr, p_layout: gl.constexpr, o_layout: gl.constexpr,
                 row_o: gl.constexpr, BLOCK_N: gl.constexpr, NUM_BUF: gl.constexpr, V2_BUF: gl.constexpr):
    """One consumer's offsets with the K1 tiles taken two at a time (_pair_step), an odd one last alone.
    Returns (m_i, l_i, acc)."""
    step0 = 0  # ring step of the offset's first tile
    for t in range(0, W2):
        qk2 = _form_qk2(q_s, k2_s, k2_ready, k2_empty, t, a_layout)
        for j in range(0, n_tiles - 1, 2):
            sa = _ring_wait(kv_ready, step0 + j, NUM_BUF)
            sb = _ring_wait(kv_ready, step0 + j + 1, NUM_BUF)
            m_i, l_i, acc_t, scale_t = _pair_step(qk2, k1_s.index(sa), v1_s.index(sa), k1_s.index(sb), v1_s.index(sb),
                                                  s_zero, m_i, l_i, acc_t, scale_t, offs_m, offs_n, m_ok,
                                                  t > start_m, lo + j * BLOCK_N, full_lo, full_hi, t, j, W1, qk_scale,
                                                  BLOCK_N, p_layout, row_o)
            _release(kv_empty.index(sa), kv_empty.index(sb))
        if n_tiles % 2 == 1:
            j = n_tiles - 1
            s = _ring_wait(kv_ready, step0 + j, NUM_BUF)
            m_i, l_i, acc_t, scale_t = _step(qk2, k1_s.index(s), v1_s.index(s), s_zero, m_i, l_i, acc_t, scale_t,
                                             offs_m, offs_n, m_ok, t > start_m, lo + j * BLOCK_N, full_lo, full_hi,
                                             t, j, W1, qk_scale, BLOCK_N, p_layout, row_o)
            _release(kv_empty.index(s))
        acc = _fold(acc, acc_t, scale_t, v2_s, v2_ready, v2_empty, t, o_layout, row_o, V2_BUF, 0, 1)
        step0 += n_tiles
    return m_i, l_i, acc


@gluon.jit
def _consumer(q_s, k1_s, v1_s, k2_s, v2_s, q_ready, kv_ready, kv_empty, k2_ready, k2_empty, v2_ready, v2_empty,
              Out, Lse, stride_on, out_base, lse_base, N, W1, W2, qk_scale, program_m, lo, n_tiles,
              HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, NUM_BUF: gl.constexpr,
              V2_BUF: gl.constexpr, C: gl.constexpr, CONSUMERS: gl.constexpr, PAIRED: gl.constexpr,
              num_warps: gl.constexpr):
    """Consumer C of the program: query rows program_m + C * BLOCK_M.., its slice of Q / K2 / V2. Per step
    S = (Q * K2_t) @ K1_j^T (wgmma, A from registers), softmax, then acc_t = acc_t * alpha + P @ V1_j; at an
    offset's last tile the fold into acc; at the end out and the LSE. It walks the program's whole tile sequence
    (n_tiles per offset, from lo) and signs off the tiles outside its own window without touching them."""
    start_m = program_m + C * BLOCK_M
    my_lo, full_lo, full_hi, _ = _query_tile_windows(start_m, N, W1, BLOCK_M, BLOCK_N)
    first = (my_lo - lo) // BLOCK_N  # this consumer's tiles in the program's sequence: [first, last)
    last = gl.where(start_m < N, gl.cdiv(gl.minimum(start_m + BLOCK_M, N) - lo, BLOCK_N), first)
    q_s = q_s.index(C)
    k2_s = k2_s.index(C)
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
    m_i = gl.full([BLOCK_M], float("-inf"), gl.float32, layout=row_s)
    l_i = gl.zeros([BLOCK_M], gl.float32, layout=row_s)
    scale_t = gl.full([BLOCK_M], 1.0, gl.float32, layout=row_s)  # rescaling owed to acc for this offset's updates
    acc = gl.zeros([BLOCK_M, HEAD_DIM], gl.float32, layout=o_layout)
    acc_t = gl.zeros([BLOCK_M, HEAD_DIM], gl.float32, layout=o_layout)
    s_zero = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, layout=s_layout)
    qk2 = gl.zeros([BLOCK_M, HEAD_DIM], dtype, layout=a_layout)
    mbarrier.wait(q_ready, 0)
    if PAIRED:  # one consumer: at D=128 paired steps spill (36-54 slots; 1.08-1.14x slower at the target shape)
        gl.static_assert(CONSUMERS == 1, "PAIRED: one consumer per program")
        m_i, l_i, acc = _paired_loop(q_s, k1_s, v1_s, k2_s, v2_s, kv_ready, kv_empty, k2_ready, k2_empty, v2_ready,
                                     v2_empty, s_zero, m_i, l_i, acc, acc_t, scale_t, offs_m, offs_n, m_ok, start_m,
                                     lo, full_lo, full_hi, n_tiles, W1, W2, qk_scale, a_layout, p_layout, o_layout,
                                     row_o, BLOCK_N, NUM_BUF, V2_BUF)
    else:
        m_i, l_i, acc = _flat_loop(q_s, k1_s, v1_s, k2_s, v2_s, kv_ready, kv_empty, k2_ready, k2_empty, v2_ready,
                                   v2_empty, qk2, s_zero, m_i, l_i, acc, acc_t, scale_t, offs_m, offs_n, m_ok,
                                   start_m, lo, first, last, full_lo, full_hi, n_tiles, W1, W2, qk_scale, a_layout,
                                   p_layout, o_layout, row_o, BLOCK_N, NUM_BUF, V2_BUF, C, CONSUMERS)
    l_safe = gl.where(l_i > 0.0, l_i, 1.0)
    gl.store(Lse + lse_base + offs_m, m_i + gl.log2(l_safe), mask=m_ok)
    out = acc / gl.expand_dims(gl.convert_layout(l_safe, row_o), 1)
    offs_mo = start_m + gl.arange(0, BLOCK_M, layout=row_o)
    offs_d = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, o_layout))
    ptrs = Out + out_base + gl.expand_dims(offs_mo, 1) * stride_on + gl.expand_dims(offs_d, 0)
    gl.store(ptrs, out.to(Out.dtype.element_ty), mask=gl.expand_dims(offs_mo < N, 1))


@gluon.jit(do_not_specialize=["N", "W1", "W2", "H", "GROUP"])
def _simplicial_fwd_gluon(q_desc, k1_desc, v1_desc, k2_desc, v2_desc, Out, Lse, stride_on, stride_ob,
                          N, W1, W2, qk_scale, H, GROUP,
                          HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                          NUM_BUF: gl.constexpr, V2_BUF: gl.constexpr, CONSUMERS: gl.constexpr,
                          CONSUMER_REGS: gl.constexpr, PAIRED: gl.constexpr, num_warps: gl.constexpr):
    ROWS: gl.constexpr = CONSUMERS * BLOCK_M  # query rows of the program, BLOCK_M per consumer warpgroup
    pid_bh, b, h, program_m = _query_program(N, H, ROWS)
    lo, _, _, n_tiles = _query_tile_windows(program_m, N, W1, ROWS, BLOCK_N)  # the union of the consumers' tiles

    dtype: gl.constexpr = k1_desc.dtype
    q_s = gl.allocate_shared_memory(dtype, [CONSUMERS] + q_desc.block_type.shape, q_desc.layout)
    k2_s = gl.allocate_shared_memory(dtype, [CONSUMERS] + k2_desc.block_type.shape, k2_desc.layout)
    v2_s = gl.allocate_shared_memory(dtype, [V2_BUF * CONSUMERS] + v2_desc.block_type.shape, v2_desc.layout)
    k1_s = gl.allocate_shared_memory(dtype, [NUM_BUF] + k1_desc.block_type.shape, k1_desc.layout)
    v1_s = gl.allocate_shared_memory(dtype, [NUM_BUF] + v1_desc.block_type.shape, v1_desc.layout)
    q_ready = _barriers(1).index(0)
    k2_ready = _barriers(1).index(0)
    k2_empty = _barriers(1, CONSUMERS).index(0)  # every consumer signs off a shared buffer
    v2_ready = _barriers(V2_BUF)
    v2_empty = _barriers(V2_BUF, CONSUMERS)
    kv_ready = _barriers(NUM_BUF)
    kv_empty = _barriers(NUM_BUF, CONSUMERS)

    out_base = b.to(gl.int64) * stride_ob + h * HEAD_DIM
    lse_base = pid_bh.to(gl.int64) * N
    # The argument lists are written out per call: held in a tuple variable, Gluon 3.6 passes the constexprs
    # (HEAD_DIM, BLOCK_M, ...) as runtime values, and the consumer's layouts then fail to build.
    if CONSUMERS == 1:
        gl.warp_specialize([
            (_consumer, (q_s, k1_s, v1_s, k2_s, v2_s, q_ready, kv_ready, kv_empty, k2_ready, k2_empty, v2_ready,
                         v2_empty, Out, Lse, stride_on, out_base, lse_base, N, W1, W2, qk_scale, program_m, lo, n_tiles,
                         HEAD_DIM, BLOCK_M, BLOCK_N, NUM_BUF, V2_BUF, 0, CONSUMERS, PAIRED, num_warps)),
            (_producer, (q_desc, k1_desc, v1_desc, k2_desc, v2_desc, q_s, k1_s, v1_s, k2_s, v2_s, q_ready, kv_ready,
                         kv_empty, k2_ready, k2_empty, v2_ready, v2_empty, b * N, h * HEAD_DIM, (h // GROUP) * HEAD_DIM,
                         program_m, lo, n_tiles, W2, BLOCK_M, BLOCK_N, NUM_BUF, V2_BUF, CONSUMERS)),
        ], [PRODUCER_WARPS], [24])
    else:
        gl.static_assert(CONSUMERS == 2, "CONSUMERS: 1 or 2")
        gl.warp_specialize([
            (_consumer, (q_s, k1_s, v1_s, k2_s, v2_s, q_ready, kv_ready, kv_empty, k2_ready, k2_empty, v2_ready,
                         v2_empty, Out, Lse, stride_on, out_base, lse_base, N, W1, W2, qk_scale, program_m, lo, n_tiles,
                         HEAD_DIM, BLOCK_M, BLOCK_N, NUM_BUF, V2_BUF, 0, CONSUMERS, PAIRED, num_warps)),
            (_consumer, (q_s, k1_s, v1_s, k2_s, v2_s, q_ready, kv_ready, kv_empty, k2_ready, k2_empty, v2_ready,
                         v2_empty, Out, Lse, stride_on, out_base, lse_base, N, W1, W2, qk_scale, program_m, lo, n_tiles,
                         HEAD_DIM, BLOCK_M, BLOCK_N, NUM_BUF, V2_BUF, 1, CONSUMERS, PAIRED, num_warps)),
            (_producer, (q_desc, k1_desc, v1_desc, k2_desc, v2_desc, q_s, k1_s, v1_s, k2_s, v2_s, q_ready, kv_ready,
                         kv_empty, k2_ready, k2_empty, v2_ready, v2_empty, b * N, h * HEAD_DIM, (h // GROUP) * HEAD_DIM,
                         program_m, lo, n_tiles, W2, BLOCK_M, BLOCK_N, NUM_BUF, V2_BUF, CONSUMERS)),
        ], [num_warps, PRODUCER_WARPS], [CONSUMER_REGS, 24])


def _rows_view(x: torch.Tensor):
    """(shape, strides) of x [B, N, H, D] as a 2-D [B*N, H*D] matrix without a copy, or None where its strides do
    not allow one (heads not packed in a row, or batches not evenly spaced)."""
    b, n, h, d = x.shape
    if x.stride(3) != 1 or x.stride(2) != d or (b > 1 and x.stride(0) != n * x.stride(1)):
        return None
    return [b * n, h * d], [x.stride(1), 1]


def applies(q: torch.Tensor, *kv: torch.Tensor) -> bool:
    """Whether this kernel can run these inputs: a Hopper GPU (sm_90, asked of Triton's active target so that
    compile-only runs see the one they compile for), 16-bit inputs, and TMA-able 2-D views (16-byte aligned)."""
    target = triton.runtime.driver.active.get_current_target()
    if target.backend != "cuda" or target.arch != 90 or q.dtype not in (torch.float16, torch.bfloat16):
        return False
    for x in (q, *kv):
        view = _rows_view(x)
        if view is None or x.data_ptr() % 16 or (view[1][0] * x.element_size()) % 16:
            return False
    return True


def _smem_layout(x: torch.Tensor, block: list[int]) -> gl.NVMMASharedLayout:
    """The wgmma-ready shared-memory layout of a block of x's (16-bit) elements."""
    return gl.NVMMASharedLayout.get_default_for(block, gl.bfloat16 if x.dtype == torch.bfloat16 else gl.float16)


def _descriptor(x: torch.Tensor, rows: int) -> TensorDescriptor:
    shape, strides = _rows_view(x)
    block = [rows, x.shape[3]]
    return TensorDescriptor(x, shape, strides, block, _smem_layout(x, block))


def forward(q, k1, k2, v1, v2, w1, w2, qk_scale, out, lse, cfg: dict):
    """Fill out [B, N, Hq, D] and lse [B, Hq, N] (base 2) like simplicial_attention._forward; windows already
    clipped to N, qk_scale = sm_scale * log2(e). cfg: BLOCK_M (query rows per consumer), BLOCK_N, NUM_BUF, V2_BUF,
    num_warps, maxnreg, CONSUMERS (consumer warpgroups per program, 1 or 2) and CONSUMER_REGS (the second one's
    setmaxnreg). Returns the compiled kernel."""
    if cfg.get("PACKED"):
        return _forward_packed(q, k1, k2, v1, v2, w1, w2, qk_scale, out, lse, cfg)
    b, n, hq, d = q.shape
    consumers = cfg.get("CONSUMERS", 1)
    grid = (triton.cdiv(n, consumers * cfg["BLOCK_M"]) * b * hq,)
    return _simplicial_fwd_gluon[grid](
        _descriptor(q, cfg["BLOCK_M"]), _descriptor(k1, cfg["BLOCK_N"]), _descriptor(v1, cfg["BLOCK_N"]),
        _descriptor(k2, cfg["BLOCK_M"]), _descriptor(v2, cfg["BLOCK_M"]),
        out, lse, out.stride(1), out.stride(0), n, w1, w2, qk_scale, hq, hq // k1.shape[2],
        HEAD_DIM=d, BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], NUM_BUF=cfg["NUM_BUF"], V2_BUF=cfg["V2_BUF"],
        CONSUMERS=consumers, CONSUMER_REGS=cfg.get("CONSUMER_REGS", 0), PAIRED=cfg.get("PAIRED", False),
        num_warps=cfg["num_warps"], maxnreg=cfg["maxnreg"],
    )


# --------------------------------------------------------------------------------------------------------------------
# forward with packed rows: each 64-row tile holds QUERIES queries x OFFSETS offsets
# --------------------------------------------------------------------------------------------------------------------
# A query tile's rows are 64 consecutive queries at one offset t: their k1 windows, one column apart, span w1 + 63
# columns, so at w1=512 an eighth of the S / P @ V1 work is masked away (w1=128: a third). Here a tile's row
# q * OFFSETS + s is query i0 + q at offset t0 + OFFSETS - 1 - s: QUERIES=8 queries span only w1 + 7 columns, taken
# as wide tiles plus one narrow TAIL tile. Each row keeps its own online softmax over its offsets (the fold at the end
# of an offset group is the query tile's, with per-row V2 rows); at the end of a query group its rows' (m, l, out)
# merge, within a warp, into the queries' outputs and LSE.


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
                        ONE_GROUP: gl.constexpr, num_warps: gl.constexpr):
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
    if not ONE_GROUP:
        acc = gl.zeros([BLOCK_M, HEAD_DIM], gl.float32, layout=o_layout)
    acc_t = gl.zeros([BLOCK_M, HEAD_DIM], gl.float32, layout=o_layout)
    window = (lo, n_wide, tail, full_lo, full_hi)
    if ONE_GROUP:  # each row keeps its offset for the whole window: acc_t sums the output, folded with V2 once
        m_i, l_i, acc_t, scale_t, ring = _packed_offset_group(
            0, 1, qk_scale, window, (rows, offs_n, s_zero), offs_m, row_offset, q_s, k2_s, k2_ready, k2_empty,
            q_empty, k1_s, v1_s, k1t_s, v1t_s, kv_ready, kv_empty, ring, grp, m_i, l_i, acc_t, scale_t, N, W1, W2, i0,
            BLOCK_M, QUERIES, BLOCK_N, TAIL, NUM_BUF, PAIRED, RESIDENT, OPAQUE_SLOTS, a_layout, p_layout, row_o)
        acc = _fold_tile(None, acc_t, scale_t, v2_s, v2_ready, v2_empty, grp & 1, o_layout, row_o)
        grp += 1
    else:
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
                     RESIDENT: gl.constexpr, OPAQUE_SLOTS: gl.constexpr, ONE_GROUP: gl.constexpr, C: gl.constexpr,
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
                                            TAIL, NUM_BUF, PAIRED, RESIDENT, OPAQUE_SLOTS, SPAN, ONE_GROUP, num_warps)
        g += 1


@gluon.jit(do_not_specialize=["N", "W1", "W2", "H", "GROUP"])
def _simplicial_fwd_packed_gluon(q_desc, k1_desc, v1_desc, k2_desc, v2_desc, k2_diag, v2_diag, k1t_desc, v1t_desc,
                                 Out, Lse, stride_on, stride_ob, N, W1, W2, qk_scale, H, GROUP, HEAD_DIM: gl.constexpr,
                                 BLOCK_M: gl.constexpr, QUERIES: gl.constexpr, BLOCK_N: gl.constexpr,
                                 TAIL: gl.constexpr, NUM_BUF: gl.constexpr, PAIRED: gl.constexpr,
                                 RESIDENT: gl.constexpr, OPAQUE_SLOTS: gl.constexpr, ONE_GROUP: gl.constexpr,
                                 CONSUMERS: gl.constexpr, CONSUMER_REGS: gl.constexpr, num_warps: gl.constexpr):
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
    # The argument lists are written out per call, as in _simplicial_fwd_gluon (Gluon 3.6 drops the constexpr-ness
    # of values held in a tuple).
    if CONSUMERS == 1:
        gl.warp_specialize([
            (_packed_consumer, (q_s, k1_s, v1_s, k2_s, v2_s, k1t_s, v1t_s, q_ready, q_empty, kv_ready, kv_empty,
                                k2_ready, k2_empty, v2_ready, v2_empty, tail_ready, Out, Lse, stride_on, out_base,
                                lse_base, N, W1, W2, qk_scale, program_m, HEAD_DIM, BLOCK_M, QUERIES, BLOCK_N, TAIL,
                                NUM_BUF, PAIRED, RESIDENT, OPAQUE_SLOTS, ONE_GROUP, 0, CONSUMERS, num_warps)),
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
                                NUM_BUF, PAIRED, RESIDENT, OPAQUE_SLOTS, ONE_GROUP, 0, CONSUMERS, num_warps)),
            (_packed_consumer, (q_s, k1_s, v1_s, k2_s, v2_s, k1t_s, v1t_s, q_ready, q_empty, kv_ready, kv_empty,
                                k2_ready, k2_empty, v2_ready, v2_empty, tail_ready, Out, Lse, stride_on, out_base,
                                lse_base, N, W1, W2, qk_scale, program_m, HEAD_DIM, BLOCK_M, QUERIES, BLOCK_N, TAIL,
                                NUM_BUF, PAIRED, RESIDENT, OPAQUE_SLOTS, ONE_GROUP, 1, CONSUMERS, num_warps)),
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


def check_packed_config(w1: int, w2: int, cfg: dict) -> None:
    """ValueError unless the packed forward's cfg applies at windows (w1, w2) (already clipped to N): a resident window
    (the union of the windows of the query groups that share it, as _packed_windows tiles it) must fit the NUM_BUF
    slots and the tail buffer, two consumers do not take PAIRED with OPAQUE_SLOTS (that faults on the GPU), and with
    ONE_GROUP a tile's rows hold every offset of their queries (BLOCK_M // QUERIES >= w2)."""
    consumers = cfg.get("CONSUMERS", 1)
    offsets = cfg["BLOCK_M"] // cfg["QUERIES"]
    if cfg.get("ONE_GROUP", False) and offsets < w2:
        raise ValueError(f"ONE_GROUP: a tile's {offsets} offsets per query (BLOCK_M={cfg['BLOCK_M']} // "
                         f"QUERIES={cfg['QUERIES']}) do not hold w2={w2}")
    if consumers == 2 and cfg.get("PAIRED", False) and cfg.get("OPAQUE_SLOTS", False):
        raise ValueError("CONSUMERS=2 with PAIRED and OPAQUE_SLOTS: an illegal memory access on an H100 at every "
                         "window tried (benchmarks/results/attention-2026-11-28-v14.md, run 2); either key alone runs")
    span = w1 + cfg["QUERIES"] * consumers - 1  # the widest k1 window union of the query groups that share it
    if cfg.get("RESIDENT", False) and span // cfg["BLOCK_N"] + (span % cfg["BLOCK_N"] > cfg["TAIL"]) > cfg["NUM_BUF"]:
        raise ValueError(f"RESIDENT: the k1 window of {consumers} query group(s) ({span} columns at w1={w1}) does "
                         f"not fit NUM_BUF={cfg['NUM_BUF']} tiles of {cfg['BLOCK_N']} and a tail of {cfg['TAIL']}")


def _forward_packed(q, k1, k2, v1, v2, w1, w2, qk_scale, out, lse, cfg: dict):
    """`forward` with PACKED rows (_simplicial_fwd_packed_gluon). cfg: BLOCK_M (rows per tile), QUERIES (queries per
    tile), BLOCK_N, TAIL (the narrow last tile's columns), NUM_BUF, PAIRED, RESIDENT (the query group's whole k1
    window in the NUM_BUF slots: it must fit them), OPAQUE_SLOTS (see _packed_group), ONE_GROUP (a tile holds every
    offset of its queries: BLOCK_M // QUERIES >= w2), CONSUMERS (2: two query groups share each window, resident or
    streamed once for both, one consumer warpgroup each, of CONSUMER_REGS registers), num_warps, maxnreg."""
    b, n, hq, d = q.shape
    check_packed_config(w1, w2, cfg)
    queries = cfg["QUERIES"]
    offsets = cfg["BLOCK_M"] // queries
    resident = cfg.get("RESIDENT", False)
    consumers = cfg.get("CONSUMERS", 1)
    grid = (triton.cdiv(n, cfg["BLOCK_M"]) * b * hq,)
    return _simplicial_fwd_packed_gluon[grid](
        _descriptor(q, queries), _descriptor(k1, cfg["BLOCK_N"]), _descriptor(v1, cfg["BLOCK_N"]),
        _descriptor(k2, offsets), _descriptor(v2, offsets), _diagonal_descriptor(k2, queries, offsets),
        _diagonal_descriptor(v2, queries, offsets), _descriptor(k1, cfg["TAIL"]), _descriptor(v1, cfg["TAIL"]), out,
        lse, out.stride(1), out.stride(0), n, w1, w2, qk_scale, hq, hq // k1.shape[2], HEAD_DIM=d,
        BLOCK_M=cfg["BLOCK_M"], QUERIES=queries, BLOCK_N=cfg["BLOCK_N"], TAIL=cfg["TAIL"], NUM_BUF=cfg["NUM_BUF"],
        PAIRED=cfg.get("PAIRED", False), RESIDENT=resident, OPAQUE_SLOTS=cfg.get("OPAQUE_SLOTS", False),
        ONE_GROUP=cfg.get("ONE_GROUP", False), CONSUMERS=consumers,
        CONSUMER_REGS=cfg.get("CONSUMER_REGS", 240), num_warps=cfg["num_warps"], maxnreg=cfg["maxnreg"],
    )


# --------------------------------------------------------------------------------------------------------------------
# backward: dK1 and dV1 (the k1 frame of simplicial_attention._simplicial_bwd_dk1dv1)
# --------------------------------------------------------------------------------------------------------------------


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
    dK1 sums are of dS^T @ (Q*K2), unscaled: their callers multiply by sm_scale = qk_scale * _LN2 first."""
    rows = start_n + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, g_layout))
    offs_d = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, g_layout))
    ptrs = g_base + gl.expand_dims(rows, 1) * stride_gn + gl.expand_dims(offs_d, 0)
    gl.store(X + ptrs, x.to(X.dtype.element_ty), mask=gl.expand_dims(rows < N, 1))


@gluon.jit
def _k1_tile_windows(start_n, N, W1, BLOCK_N: gl.constexpr):
    """The query rows that see a row of the K1 tile start_n..: [start_n, hi) with hi = start_n + BLOCK_N - 1 + W1 - 1
    (clipped to N), of which [full_lo, full_hi) see every row of it (simplicial_attention._simplicial_bwd_dk1dv1).
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
                              NUM_F: gl.constexpr, KV1_TILES: gl.constexpr, Y_BUF: gl.constexpr,
                              num_warps: gl.constexpr):
    """One product for every (query tile, t) of the program: per query tile X (Q or dO) once, per offset the Y rows
    i - t (K2 or V2; with Y_BUF=2 buffers the next offset's rows load while this one's are used, with one after),
    and X * Y into the NUM_F ring xy_s that both consumers read. It first loads the program's KV1_TILES K1/V1
    tiles (none: 0). The product is a packed 16-bit multiply, the exact product rounded once, as in every other
    kernel (simplicial_attention._unscaled_product); the logit scale goes onto the fp32 S^T."""
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
            e0 = it % Y_BUF
            mbarrier.expect(y_ready.index(e0), y_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(y_desc, [row0 + start_m, col_k], y_ready.index(e0), y_s.index(e0))
            mbarrier.wait(x_ready, tile & 1)
            for t in range(0, W2):
                e = it % Y_BUF
                if Y_BUF == 2:
                    if t + 1 < W2:  # the next offset's rows into the other buffer, formed from one step ago
                        mbarrier.expect(y_ready.index(1 - e), y_desc.block_type.nbytes)
                        tma.async_copy_global_to_shared(y_desc, [row0 + start_m - t - 1, col_k],
                                                        y_ready.index(1 - e), y_s.index(1 - e))
                elif t > 0:  # this offset's rows, once the last product was formed (its _release fenced the reads)
                    mbarrier.expect(y_ready.index(0), y_desc.block_type.nbytes)
                    tma.async_copy_global_to_shared(y_desc, [row0 + start_m - t, col_k], y_ready.index(0),
                                                    y_s.index(0))
                mbarrier.wait(y_ready.index(e), (it // Y_BUF) & 1)
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
    _store_k1_rows(dk1 * (qk_scale * _LN2), DK1, g_base, stride_gn, start_n, N, BLOCK_N, HEAD_DIM, g_layout)
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
                                     GROUP, lo, n_m, W2, HEAD_DIM, BLOCK_M, BLOCK_N, NUM_F, 2, 2, PRODUCER_WARPS)),
        (_dk1_one_product_producer, (do_desc, v2_desc, k1_desc, v1_desc, do_s, v2_s, dov2_s, k1_s, v1_s, do_ready,
                                     v2_ready, kv1_ready, dv_ready, f_empty, b * N, program_n, hk * HEAD_DIM, hk,
                                     GROUP, lo, n_m, W2, HEAD_DIM, BLOCK_M, BLOCK_N, NUM_F, 0, 2, PRODUCER_WARPS)),
    ], [num_warps, PRODUCER_WARPS, PRODUCER_WARPS], [CONSUMER_REGS, PRODUCER_REGS, PRODUCER_REGS])

def backward_dk1dv1(do, q, k1, k2, v1, v2, lse, delta, w1, w2, qk_scale, dk1, dv1, cfg: dict):
    """Fill dk1, dv1 [B, N, Hkv, D] like simplicial_attention._backward_dk1dv1 (windows clipped to N,
    qk_scale = sm_scale * log2(e), lse in base 2, delta = rowsum(O * dO)). cfg: BLOCK_N (k1 rows per consumer, two
    consumers per program), BLOCK_M (query rows per step), NUM_F (formed operand buffers), CONSUMER_REGS and
    PRODUCER_REGS (setmaxnreg of the partitions), num_warps, maxnreg. Returns the compiled kernel."""
    b, n, hq, d = q.shape
    hkv = k1.shape[2]
    if cfg.get("ROLES") == 2:
        return _simplicial_bwd_dk1dv1_roles_gluon[(triton.cdiv(n, cfg["BLOCK_N"]) * b * hkv,)](
            _descriptor(q, cfg["BLOCK_M"]), _descriptor(do, cfg["BLOCK_M"]), _descriptor(k1, cfg["BLOCK_N"]),
            _descriptor(v1, cfg["BLOCK_N"]), _descriptor(k2, cfg["BLOCK_M"]), _descriptor(v2, cfg["BLOCK_M"]),
            dk1, dv1, lse, delta, dk1.stride(0), dk1.stride(1), n, w1, w2, qk_scale, hkv, hq // hkv,
            HEAD_DIM=d, BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], NUM_F=cfg["NUM_F"], NUM_P=cfg["NUM_P"],
            Y_BUF=cfg.get("Y_BUF", 2), CONSUMER_REGS=cfg["CONSUMER_REGS"], PRODUCER_REGS=cfg["PRODUCER_REGS"],
            num_warps=cfg["num_warps"], maxnreg=cfg["maxnreg"],
        )
    return _simplicial_bwd_dk1dv1_gluon[(triton.cdiv(n, 2 * cfg["BLOCK_N"]) * b * hkv,)](
        _descriptor(q, cfg["BLOCK_M"]), _descriptor(do, cfg["BLOCK_M"]), _descriptor(k1, cfg["BLOCK_N"]),
        _descriptor(v1, cfg["BLOCK_N"]), _descriptor(k2, cfg["BLOCK_M"]), _descriptor(v2, cfg["BLOCK_M"]),
        dk1, dv1, lse, delta, dk1.stride(0), dk1.stride(1), n, w1, w2, qk_scale, hkv, hq // hkv,
        HEAD_DIM=d, BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], NUM_F=cfg["NUM_F"],
        CONSUMER_REGS=cfg["CONSUMER_REGS"], PRODUCER_REGS=cfg["PRODUCER_REGS"], num_warps=cfg["num_warps"],
        maxnreg=cfg["maxnreg"],
    )


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
    _store_k1_rows(dk1 * (qk_scale * _LN2), DK1, g_base, stride_gn, start_n, N, BLOCK_N, HEAD_DIM, g_layout)


@gluon.jit(do_not_specialize=["N", "W1", "W2", "HKV", "GROUP"])
def _simplicial_bwd_dk1dv1_roles_gluon(q_desc, do_desc, k1_desc, v1_desc, k2_desc, v2_desc, DK1, DV1, Lse, Delta,
                                       stride_gb, stride_gn, N, W1, W2, qk_scale, HKV, GROUP,
                                       HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                                       NUM_F: gl.constexpr, NUM_P: gl.constexpr, Y_BUF: gl.constexpr,
                                       CONSUMER_REGS: gl.constexpr, PRODUCER_REGS: gl.constexpr,
                                       num_warps: gl.constexpr):
    b, hk, start_n, lo, hi, _, _ = _k1_program(N, W1, HKV, BLOCK_N)
    n_m = gl.cdiv(hi - lo, BLOCK_M)

    dtype: gl.constexpr = k1_desc.dtype
    k1_s = gl.allocate_shared_memory(dtype, [1] + k1_desc.block_type.shape, k1_desc.layout)
    v1_s = gl.allocate_shared_memory(dtype, [1] + v1_desc.block_type.shape, v1_desc.layout)
    q_s = gl.allocate_shared_memory(dtype, q_desc.block_type.shape, q_desc.layout)
    do_s = gl.allocate_shared_memory(dtype, do_desc.block_type.shape, do_desc.layout)
    k2_s = gl.allocate_shared_memory(dtype, [Y_BUF] + k2_desc.block_type.shape, k2_desc.layout)
    v2_s = gl.allocate_shared_memory(dtype, [Y_BUF] + v2_desc.block_type.shape, v2_desc.layout)
    qk2_s = gl.allocate_shared_memory(dtype, [NUM_F] + q_desc.block_type.shape, q_desc.layout)
    dov2_s = gl.allocate_shared_memory(dtype, [NUM_F] + q_desc.block_type.shape, q_desc.layout)
    p_s = gl.allocate_shared_memory(dtype, [NUM_P, BLOCK_N, BLOCK_M],
                                    gl.NVMMASharedLayout.get_default_for([BLOCK_N, BLOCK_M], dtype))
    kv1_ready = _barriers(1).index(0)
    q_ready = _barriers(1).index(0)
    do_ready = _barriers(1).index(0)
    k2_ready = _barriers(Y_BUF)
    v2_ready = _barriers(Y_BUF)
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
                                     GROUP, lo, n_m, W2, HEAD_DIM, BLOCK_M, BLOCK_N, NUM_F, 1, Y_BUF,
                                     PRODUCER_WARPS)),
        (_dk1_one_product_producer, (do_desc, v2_desc, k1_desc, v1_desc, do_s, v2_s, dov2_s, k1_s, v1_s, do_ready,
                                     v2_ready, kv1_ready, dv_ready, f_empty, b * N, start_n, hk * HEAD_DIM, hk,
                                     GROUP, lo, n_m, W2, HEAD_DIM, BLOCK_M, BLOCK_N, NUM_F, 0, Y_BUF,
                                     PRODUCER_WARPS)),
    ], [num_warps, PRODUCER_WARPS, PRODUCER_WARPS], [CONSUMER_REGS, PRODUCER_REGS, PRODUCER_REGS])


# --------------------------------------------------------------------------------------------------------------------
# backward: dQ, dK2 and dV2 (the query frame of simplicial_attention._simplicial_bwd_dq_dk2dv2)
# --------------------------------------------------------------------------------------------------------------------


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
                 BLOCK_N: gl.constexpr, NUM_BUF: gl.constexpr, PART: gl.constexpr):
    """Q and dO once; per offset K2_t (held to the offset's end) and, where dP is formed, V2_t (freed once dO * V2_t
    is formed); per step the K1_j / V1_j tiles into a NUM_BUF ring."""
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
            if PART != 2:
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
                 PART: gl.constexpr, DQ_ATOMIC: gl.constexpr, num_warps: gl.constexpr):
    """Per step S = (Q*K2_t) @ K1_j^T, P = exp2(S - lse) (masked on edge tiles), and for PART != 2
    dP = (dO*V2_t) @ V1_j^T, U_t += P*(dP - delta) @ K1_j; for PART != 1 W_t += P @ V1_j. At an offset's last tile:
    dQ += U_t * K2_t (registers, or an atomic add with DQ_ATOMIC), and one relaxed atomic add each of U_t * Q to dK2
    and W_t * dO to dV2 at rows i - t."""
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
            if PART != 2:
                mbarrier.wait(v2_ready, t & 1)
                dov2 = do_s.load(a_layout) * v2_s.load(a_layout)  # packed: the same bits as through fp32
                _release(v2_empty)
        s = _ring_wait(kv_ready, step, NUM_BUF)
        sc = warpgroup_mma(qk2, k1_s.index(s).permute((1, 0)), s_zero, use_acc=False, is_async=True)
        if PART != 2:
            dp = warpgroup_mma(dov2, v1_s.index(s).permute((1, 0)), s_zero, use_acc=False, is_async=True)
            sc, dp = warpgroup_mma_wait(num_outstanding=0, deps=(sc, dp))
        else:
            sc = warpgroup_mma_wait(num_outstanding=0, deps=(sc, ))
        p = _masked(gl.exp2(sc * qk_scale - gl.expand_dims(lse, 1)), offs_m, offs_n, m_ok, t > start_m,
                    lo + j * BLOCK_N, full_lo, full_hi, t, W1, BLOCK_N, 0.0)
        if PART != 2:
            ds = p * (dp - gl.expand_dims(delta, 1))
            u = warpgroup_mma(gl.convert_layout(ds.to(dtype), p_layout), k1_s.index(s), u, use_acc=j > 0,
                              is_async=True)
        if PART != 1:
            w = warpgroup_mma(gl.convert_layout(p.to(dtype), p_layout), v1_s.index(s), w, use_acc=j > 0,
                              is_async=True)
        if PART == 0:
            u, w = warpgroup_mma_wait(num_outstanding=0, deps=(u, w))
        elif PART == 1:
            u = warpgroup_mma_wait(num_outstanding=0, deps=(u, ))
        else:
            w = warpgroup_mma_wait(num_outstanding=0, deps=(w, ))
        _release(kv_empty.index(s))
        if j == n_tiles - 1:  # the offset's last tile
            g_ptrs, k_ok = _shifted_rows(rows_o, cols_o, t, N, g_base, stride_gn)
            if PART != 2:
                k2 = k2_s.load(o_layout).to(gl.float32)
                if DQ_ATOMIC:
                    q_ptrs = dq_base + gl.expand_dims(rows_o, 1) * stride_qn + gl.expand_dims(cols_o, 0)
                    gl.atomic_add(DQ + q_ptrs, u * k2 * sm_scale, mask=gl.expand_dims(rows_o < N, 1), sem="relaxed")
                else:
                    dq += u * k2
                gl.atomic_add(DK2 + g_ptrs, u * q_s.load(o_layout).to(gl.float32) * sm_scale, mask=k_ok,
                              sem="relaxed")
            if PART != 1:
                gl.atomic_add(DV2 + g_ptrs, w * do_s.load(o_layout).to(gl.float32), mask=k_ok, sem="relaxed")
            _release(k2_empty)
    if PART != 2:
        if not DQ_ATOMIC:
            q_ptrs = dq_base + gl.expand_dims(rows_o, 1) * stride_qn + gl.expand_dims(cols_o, 0)
            gl.store(DQ + q_ptrs, (dq * sm_scale).to(DQ.dtype.element_ty), mask=gl.expand_dims(rows_o < N, 1))


@gluon.jit(do_not_specialize=["N", "W1", "W2", "H", "GROUP"])
def _simplicial_bwd_dq_gluon(q_desc, do_desc, k1_desc, v1_desc, k2_desc, v2_desc, Lse, Delta, DQ, DK2, DV2,
                             stride_qb, stride_qn, stride_gb, stride_gn, N, W1, W2, qk_scale, sm_scale, H, GROUP,
                             HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                             NUM_BUF: gl.constexpr, PART: gl.constexpr, DQ_ATOMIC: gl.constexpr,
                             num_warps: gl.constexpr):
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
                        HEAD_DIM, BLOCK_M, BLOCK_N, NUM_BUF, PART, DQ_ATOMIC, num_warps)),
        (_dq_producer, (q_desc, do_desc, k1_desc, v1_desc, k2_desc, v2_desc, q_s, do_s, k1_s, v1_s, k2_s, v2_s,
                        q_ready, kv_ready, kv_empty, k2_ready, k2_empty, v2_ready, v2_empty,
                        b * N, h * HEAD_DIM, hk * HEAD_DIM, start_m, lo, n_tiles, W2, BLOCK_N, NUM_BUF, PART)),
    ], [PRODUCER_WARPS], [24])


# With ROLES=2 one program per SM runs two consumer warpgroups of different roles on the same steps: the probs
# consumer forms S and P (and sums W_t += P @ V1_j for dV2), the grads consumer forms dP and, with P handed over
# through shared memory in the input dtype (half the bytes of fp32, which leaves room for a deeper K1/V1 ring), dS
# (and sums U_t += dS @ K1_j for dQ and dK2). Each step costs 4 wgmmas where the D=128 two-launch split (SPLIT)
# recomputes S in both launches (5), and each consumer holds one fp32 [64, D] accumulator of the offset (the grads
# one also dQ, unless DQ_ATOMIC), so D=128 fits in one launch.


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
                       BLOCK_N: gl.constexpr, NUM_BUF: gl.constexpr, NUM_P: gl.constexpr, DQ_ATOMIC: gl.constexpr,
                       num_warps: gl.constexpr):
    """Per step dP = (dO*V2_t) @ V1_j^T, then with the probs consumer's 16-bit P: dS = P * (dP - delta) (the
    one-consumer kernel multiplies the fp32 P) and U_t += dS @ K1_j; at an offset's last tile dQ += U_t * K2_t
    (registers, or an atomic add with DQ_ATOMIC) and one relaxed atomic add of U_t * Q to dK2 at rows i - t."""
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
            if DQ_ATOMIC:
                gl.atomic_add(DQ + q_ptrs, u * k2 * sm_scale, mask=gl.expand_dims(rows_o < N, 1), sem="relaxed")
            else:
                dq += u * k2
            g_ptrs, k_ok = _shifted_rows(rows_o, cols_o, t, N, g_base, stride_gn)
            gl.atomic_add(DK2 + g_ptrs, u * q_s.load(o_layout).to(gl.float32) * sm_scale, mask=k_ok, sem="relaxed")
            _release(k2_empty)
    if not DQ_ATOMIC:
        gl.store(DQ + q_ptrs, (dq * sm_scale).to(DQ.dtype.element_ty), mask=gl.expand_dims(rows_o < N, 1))


@gluon.jit(do_not_specialize=["N", "W1", "W2", "H", "GROUP"])
def _simplicial_bwd_dq_roles_gluon(q_desc, do_desc, k1_desc, v1_desc, k2_desc, v2_desc, Lse, Delta, DQ, DK2, DV2,
                                   stride_qb, stride_qn, stride_gb, stride_gn, N, W1, W2, qk_scale, sm_scale, H,
                                   GROUP, HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                                   NUM_BUF: gl.constexpr, NUM_P: gl.constexpr, DQ_ATOMIC: gl.constexpr,
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
                              sm_scale, start_m, n_tiles, HEAD_DIM, BLOCK_M, BLOCK_N, NUM_BUF, NUM_P, DQ_ATOMIC,
                              num_warps)),
        (_dq_probs_consumer, (q_s, do_s, k1_s, v1_s, k2_s, p_s, q_ready, kv_ready, kv_empty, k2_ready, p_ready,
                              p_empty, Lse, DV2, stats_base, g_base, stride_gn, N, W1, W2, qk_scale, start_m, lo,
                              full_lo, full_hi, n_tiles, HEAD_DIM, BLOCK_M, BLOCK_N, NUM_BUF, NUM_P, num_warps)),
        (_dq_producer, (q_desc, do_desc, k1_desc, v1_desc, k2_desc, v2_desc, q_s, do_s, k1_s, v1_s, k2_s, v2_s,
                        q_ready, kv_ready, kv_empty, k2_ready, k2_empty, v2_ready, v2_empty,
                        b * N, h * HEAD_DIM, hk * HEAD_DIM, start_m, lo, n_tiles, W2, BLOCK_N, NUM_BUF, 0)),
    ], [num_warps, PRODUCER_WARPS], [CONSUMER_REGS, PRODUCER_REGS])


def backward_dq_dk2dv2(do, q, k1, k2, v1, v2, lse, delta, w1, w2, sm_scale, dq, dk2, dv2, cfg: dict):
    """Fill dq (q.dtype, or fp32 zeros with DQ_ATOMIC) and add into dk2, dv2 (fp32 zeros, [B, N, Hkv, D]) like
    simplicial_attention._backward_dq_dk2dv2 (windows clipped to N, lse base 2). cfg: BLOCK_M, BLOCK_N, NUM_BUF,
    SPLIT (two launches: dQ/dK2, then dV2), DQ_ATOMIC, num_warps, maxnreg; or ROLES=2 (the two-role kernel) with
    NUM_P, CONSUMER_REGS and PRODUCER_REGS. Returns the compiled kernels, one per launch."""
    b, n, hq, d = q.shape
    grid = (triton.cdiv(n, cfg["BLOCK_M"]) * b * hq,)
    descs = (_descriptor(q, cfg["BLOCK_M"]), _descriptor(do, cfg["BLOCK_M"]), _descriptor(k1, cfg["BLOCK_N"]),
             _descriptor(v1, cfg["BLOCK_N"]), _descriptor(k2, cfg["BLOCK_M"]), _descriptor(v2, cfg["BLOCK_M"]))
    kernels = []
    if cfg.get("ROLES") == 2:
        return [_simplicial_bwd_dq_roles_gluon[grid](
            *descs, lse, delta, dq, dk2, dv2, dq.stride(0), dq.stride(1), dk2.stride(0), dk2.stride(1),
            n, w1, w2, sm_scale * _LOG2E, sm_scale, hq, hq // k1.shape[2],
            HEAD_DIM=d, BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], NUM_BUF=cfg["NUM_BUF"], NUM_P=cfg["NUM_P"],
            DQ_ATOMIC=cfg.get("DQ_ATOMIC", False), CONSUMER_REGS=cfg["CONSUMER_REGS"],
            PRODUCER_REGS=cfg["PRODUCER_REGS"], num_warps=cfg["num_warps"], maxnreg=cfg["maxnreg"])]
    for part in ((1, 2) if cfg.get("SPLIT") else (0,)):
        kernels.append(_simplicial_bwd_dq_gluon[grid](
            *descs, lse, delta, dq, dk2, dv2, dq.stride(0), dq.stride(1), dk2.stride(0), dk2.stride(1),
            n, w1, w2, sm_scale * _LOG2E, sm_scale, hq, hq // k1.shape[2],
            HEAD_DIM=d, BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], NUM_BUF=cfg["NUM_BUF"], PART=part,
            DQ_ATOMIC=cfg.get("DQ_ATOMIC", False), num_warps=cfg["num_warps"], maxnreg=cfg["maxnreg"]))
    return kernels
