"""Shared pieces of the Gluon kernels (Triton's explicit-layout dialect), warp-specialised for Hopper (sm_90).

Every Gluon kernel of the package divides a program into roles that Triton's `tl` leaves to the compiler:
  * a producer warpgroup issues every TMA load into shared memory, guarded by mbarriers, and runs on 24 registers
    per thread (setmaxnreg). It is a whole warpgroup because setmaxnreg acts per warpgroup; a one-warp producer gave
    wrong outputs on one shape of five with two programs per SM;
  * one or two consumer warpgroups get the rest of the register file for their fp32 accumulators and issue the
    wgmmas;
  * buffers pass between them through rings of slots with a `ready` and an `empty` barrier each (`_ring_wait`).
    A consumer hands a slot back through `_release`: thread barrier, async-proxy fence, arrive. Without the fence a
    TMA load could overwrite a buffer before the consumer's ld.shared reads of it were ordered (a race seen in 3 of
    40 fp16 launches).

Tensors are read through 2-D [B*N, H*D] TMA views (`_descriptor`). Rows before a batch's start or past its end
belong to the neighbouring batch (or read as zero at the ends of the tensor); the window masks drop every such
(i, j, k) triple, as in the `tl` kernels, and rows >= N are never stored. `applies` says whether a call can take
these kernels (plan.py asks it). The scale convention is triton_common's: host launchers take sm_scale, kernels use
qk_scale = sm_scale * LOG2E on base-2 logits.
"""

from __future__ import annotations

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma, warpgroup_mma,
                                                            warpgroup_mma_wait)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from .triton_common import LN2, LOG2E  # noqa: F401 - re-exported for the Gluon kernels

PRODUCER_WARPS = gl.constexpr(4)


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
    from (0, -1). The twin of triton_common._next_tile, for Gluon kernels."""
    j += 1
    t = gl.where(j == n_tiles, t + 1, t)
    j = gl.where(j == n_tiles, 0, j)
    return t, j


@gluon.jit
def _query_tile_windows(start_m, N, W1, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr):
    """The k1 positions a query tile sees, as triton_common._window_tiles: (lo, full_lo, full_hi, n_tiles)."""
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
    triton_common._in_windows: 0 <= i - j < W1 as one unsigned compare; rows without a k2 row i - t (or past
    the sequence) get the bound 0."""
    lim = gl.where(((offs_m - t) >= 0) & m_ok, W1, 0).to(gl.uint32)
    diff = gl.expand_dims(offs_m, 1) - gl.expand_dims(cols, 0)
    return diff.to(gl.uint32, bitcast=True) < gl.expand_dims(lim, 1)


@gluon.jit
def _opaque(x):
    """x through a register move the compiler cannot see through: what is computed from it stays where it is."""
    return gl.inline_asm_elementwise("mov.b32 $0, $1;", "=r,r", [x], dtype=gl.int32, is_pure=True, pack=1)


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
def _release(bar, bar2=None):
    """Hand a buffer (or two) back to the producer: every consumer warp is done with it (its loads returned, its
    wgmmas waited), and its generic-proxy reads are ordered before the producer's TMA (async-proxy) overwrite."""
    gl.thread_barrier()
    fence_async_shared()
    mbarrier.arrive(bar, count=1)
    if bar2 is not None:
        mbarrier.arrive(bar2, count=1)


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



# --------------------------------------------------------------------------------------------------------------------
# the online-softmax step of the packed forward (gluon_fwd.py): S wgmmas, mask, row max, exp2, P @ V1 wgmmas
# --------------------------------------------------------------------------------------------------------------------


@gluon.jit
def _new_max(m_i, row_max, qk_scale):
    """The running row max after logits whose row max is row_max (unscaled): (m_new, m_use, alpha), m_use the max
    to subtract (rows with nothing valid yet stay at zero) and alpha the rescale of what was summed before."""
    m_new = gl.maximum(m_i, row_max * qk_scale)
    m_use = gl.where(m_new == float("-inf"), 0.0, m_new)
    return m_new, m_use, gl.exp2(m_i - m_use)


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
def _fold_tile(acc, acc_t, scale_t, v2_tile, ready, empty, phase, o_layout: gl.constexpr, row_o: gl.constexpr):
    """acc = acc * scale_t + acc_t * V2 rows at the end of an offset group, once `ready` completed its phase; frees
    their buffer."""
    mbarrier.wait(ready, phase)
    v2 = v2_tile.load(o_layout)
    _release(empty)
    return acc * gl.expand_dims(gl.convert_layout(scale_t, row_o), 1) + acc_t * v2.to(gl.float32)

# --------------------------------------------------------------------------------------------------------------------
# host side
# --------------------------------------------------------------------------------------------------------------------


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

