"""Shared pieces of the Triton (`tl`) kernels: constants, tile arithmetic, row loads, window masks, host helpers.

Conventions every kernel in this package follows (the Gluon ones too, gluon_common.py):
  * Softmax runs in base 2. A kernel forms the unscaled per-offset product Q * K2_t (rounded once to the input
    dtype, `_unscaled_product`), takes the fp32 GEMM result s and uses s * qk_scale with qk_scale = sm_scale * LOG2E
    as its base-2 logit (fused into the exp2's FFMA). Forward and backward therefore round their logits at the same
    point, whichever kernel runs. The saved log-sum-exp is base 2 as well. Host launchers take `sm_scale` (> 0; the
    autograd layer moves a sign into q) and form qk_scale themselves.
  * Windows: query i sees k1 rows (i - W1, i] and k2 rows (i - W2, i]; row i - t of K2 / V2 is "offset t".
    A window mask is one unsigned compare per element (`_in_windows`), applied only on tiles that cross an edge.
  * Strides are passed per tensor as (batch, sequence, head); the head dim is contiguous (the launchers make it so).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

try:  # host-side TMA descriptors (triton >= 3.4)
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # pragma: no cover
    TensorDescriptor = None

LOG2E = tl.constexpr(1.4426950408889634)  # qk_scale = sm_scale * LOG2E: logits in base 2
LN2 = tl.constexpr(0.6931471805599453)  # sm_scale = qk_scale * LN2


def interpreting() -> bool:
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


if interpreting():
    _patch_interpreter_index()


# --------------------------------------------------------------------------------------------------------------------
# tile arithmetic, loads and masks (every tl kernel)
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
    logits at the same point, whichever kernel runs."""
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
    counted instead of divided (a division per step cost ~25 instructions). Start from (0, -1). gluon_common.py has
    its twin: Gluon kernels call Gluon functions only."""
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




# --------------------------------------------------------------------------------------------------------------------
# the backward's preprocess: delta = rowsum(O * dO), read by both backward kernels (tl and Gluon)
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

# --------------------------------------------------------------------------------------------------------------------
# host helpers
# --------------------------------------------------------------------------------------------------------------------


def base2_scale(sm_scale: float) -> float:
    """qk_scale, the factor that turns a kernel's unscaled fp32 logit into its base-2 logit."""
    return sm_scale * LOG2E.value


def new_output(shape, like: torch.Tensor, dtype: torch.dtype, poison: bool) -> torch.Tensor:
    """An output buffer; with poison (KernelPlan.poison_outputs, the tests) filled with NaN, so that an element a
    kernel fails to write shows."""
    if poison:
        return torch.full(shape, float("nan"), device=like.device, dtype=dtype)
    return torch.empty(shape, device=like.device, dtype=dtype)


def launch_options(cfg) -> dict:
    """Compiler options of a launch: warps, pipeline stages and, where cfg sets it, a register cap per thread
    (maxnreg: fewer registers let more programs share an SM, at the price of spills)."""
    opts = dict(num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    if cfg.get("maxnreg"):
        opts["maxnreg"] = cfg["maxnreg"]
    return opts


def dot_precision(dtype: torch.dtype) -> str:
    # fp32 inputs: full-precision products (TF32 would miss the 1e-4 tolerance); ignored for fp16/bf16
    return "ieee" if dtype == torch.float32 else "tf32"


def strides3(t: torch.Tensor):
    """(batch, sequence, head) strides of a [B, N, H, D] tensor."""
    return t.stride(0), t.stride(1), t.stride(2)


def tma_descriptors(cfg, k1, k2, v1, v2):
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


def backward_delta(do, out, poison: bool):
    """delta_i = <o_i, do_i> (fp32, [B, Hq, N]), the softmax backward's row term."""
    b, n, hq, d = out.shape
    delta = new_output((b, hq, n), out, torch.float32, poison)
    pre_m = 16 if interpreting() else 64
    _simplicial_bwd_preprocess[(triton.cdiv(n, pre_m) * b * hq,)](
        out, do, delta, *strides3(out), *strides3(do), n, H=hq, HEAD_DIM=d, BLOCK_M=pre_m,
    )
    return delta
