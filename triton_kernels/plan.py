"""Which kernel runs each pass of 2-simplicial attention, with which launch config: the package's one dispatch.

    from triton_kernels.plan import make_plan
    plan = make_plan(q, k1, k2, v1, v2, w1, w2)      # a KernelPlan: plan.fwd, plan.bwd_dq, plan.bwd_dk1
    plan.fwd.kernel, dict(plan.fwd.config)           # e.g. "gluon_fwd", {"BLOCK_M": 64, ...}

A call is planned from what decides the winner: the pass, the GPU (Hopper or not), the dtype, the head dim, the
windows (w1, w2) and whether the tensors' strides let the Gluon kernels read them through 2-D TMA views. `_TABLE`
lists every default, the first row that matches wins, and each row says in one line why it is the default, with the
measurement behind it (benchmarks/results/kernels-issue4-2026-11.md, section named in brackets; bf16, B=4, H=8,
N=8192 unless said). Tests and benchmarks pass a plan of their own (`KernelPlan.replace`) to the autograd function
in attention.py instead of patching globals; `record=` there returns which compiled kernels ran.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import torch

from .triton_common import interpreting

PASSES = ("fwd", "bwd_dq", "bwd_dk1")
# Every kernel a plan can name, per pass (attention.py maps each to its launcher).
KERNELS = {
    "fwd": ("gluon_fwd", "triton_fwd", "triton_fwd_per_query"),
    "bwd_dq": ("gluon_bwd_dq", "gluon_bwd_dq_roles", "triton_bwd_dq"),
    "bwd_dk1": ("gluon_bwd_dk1", "gluon_bwd_dk1_roles", "triton_bwd_dk1"),
}


@dataclass(frozen=True)
class Launch:
    """One pass's kernel (a name in KERNELS) and its launch config (block sizes, buffers, warps, register caps)."""

    kernel: str
    config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "config", MappingProxyType(dict(self.config)))

    def __hash__(self):
        return hash((self.kernel, tuple(sorted(self.config.items()))))


@dataclass(frozen=True)
class KernelPlan:
    """The kernels of one call: the forward, the dQ/dK2/dV2 backward and the dK1/dV1 backward.

    backward_streams: run the two backward kernels side by side on two CUDA streams (they are independent; the second
    fills the SMs the first's last wave leaves idle: f+b 0.8-0.9% faster at the target shape [v8 backward]).
    poison_outputs: fill every output buffer with NaN before the kernels run, so a test sees an element a kernel
    failed to write.
    """

    fwd: Launch
    bwd_dq: Launch
    bwd_dk1: Launch
    backward_streams: bool = True
    poison_outputs: bool = False

    def replace(self, pass_: str | None = None, kernel: str | None = None, config: Mapping | None = None,
                **options) -> "KernelPlan":
        """A copy with pass_'s kernel and/or whole config replaced, and/or plan options (backward_streams,
        poison_outputs) changed. ValueError names an unknown pass or kernel."""
        plan = dataclasses.replace(self, **options) if options else self
        if pass_ is None:
            return plan
        if pass_ not in PASSES:
            raise ValueError(f"KernelPlan.replace: pass {pass_!r} is not one of {PASSES}")
        old = getattr(plan, pass_)
        kernel = old.kernel if kernel is None else kernel
        if kernel not in KERNELS[pass_]:
            raise ValueError(f"KernelPlan.replace: kernel {kernel!r} does not run pass {pass_!r} "
                             f"(one of {KERNELS[pass_]})")
        return dataclasses.replace(plan, **{pass_: Launch(kernel, old.config if config is None else config)})


@dataclass(frozen=True)
class _Row:
    """One default: pass, kernel, the calls it applies to, config and why. gluon: True only where the Gluon kernels
    apply, False only where they do not, None either way. dims / dtypes: None for any. A row applies from w1 >= min_w1
    and w2 >= min_w2."""

    pass_: str
    kernel: str
    gluon: bool | None
    dims: tuple | None
    dtypes: tuple | None
    min_w1: int
    min_w2: int
    config: dict
    why: str


_16BIT = (torch.float16, torch.bfloat16)
_FP32 = (torch.float32,)
# The Gluon forward's tiles: 8 queries x 8 offsets in 64 rows, so a tile's k1 windows span w1 + 7 columns (a query
# tile's span w1 + 63), the last 7 in a 16-column tail tile taken with the first step.
_PACKED = dict(QUERIES=8, TAIL=16, BLOCK_M=64, BLOCK_N=64, num_warps=4)
_TWO_GROUPS = dict(_PACKED, NUM_BUF=4, maxnreg=168, CONSUMERS=2, CONSUMER_REGS=240)  # one program per SM
_R = _Row
_TABLE = (
    # -- forward, Hopper, 16-bit: the packed Gluon kernel (gluon_fwd.py) at every window ------------------------------
    _R("fwd", "gluon_fwd", True, (128,), None, 258, 0, _TWO_GROUPS,
       "two query groups (one consumer each) share one streamed ring of four K1/V1 tiles: 1.08-1.11x the query-tile "
       "kernels at (512, 32), 1.01-1.02x at (1024, 16) [v15]"),
    _R("fwd", "gluon_fwd", True, (128,), None, 129, 0, dict(_TWO_GROUPS, RESIDENT=True, OPAQUE_SLOTS=True),
       "the two groups' k1 window (w1 + 15 columns) fits four slots and is loaded once: 1.22x at (256, 64) [v13]; "
       "opaque slot indices keep its descriptors from spilling (18 -> 2 slots, 1.10x) [v14]"),
    _R("fwd", "gluon_fwd", True, (128,), None, 0, 0, dict(_PACKED, RESIDENT=True, NUM_BUF=2, maxnreg=128,
                                                         OPAQUE_SLOTS=True),
       "one group's window in two slots, two programs per SM: 1.36x the query tile at (128, 128) [v12]; opaque "
       "slots 8 -> 0 spills, 1.07x [v14]"),
    _R("fwd", "gluon_fwd", True, (64,), None, 266, 0, dict(_PACKED, NUM_BUF=5, maxnreg=128, PAIRED=True),
       "two K1 tiles per softmax step over a ring of five, two programs per SM: 1.01-1.07x the unpaired steps "
       "[v10, v12]"),
    _R("fwd", "gluon_fwd", True, (64,), None, 129, 0, dict(_PACKED, RESIDENT=True, NUM_BUF=4, maxnreg=128,
                                                        PAIRED=True, OPAQUE_SLOTS=True),
       "the window (w1 + 7 columns) resident in four slots, paired steps: 1.10x the one-tile steps at (256, 64) "
       "[v14]"),
    _R("fwd", "gluon_fwd", True, (64,), None, 0, 0, dict(_PACKED, RESIDENT=True, NUM_BUF=2, maxnreg=80),
       "two slots at three programs per SM (80 registers, 6 spill slots): 1.16x at (128, 128) [v13]"),
    # -- forward, elsewhere: the tl kernels (triton_fwd.py) ----------------------------------------------------------
    _R("fwd", "triton_fwd_per_query", False, (16, 32, 64), _16BIT, 0, 64,
       dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=3, TMA=True, QUERIES=16, maxnreg=168),
       "at w2 >= 64 the per-query form computes nothing outside the windows: 1.03-1.13x the query tile [v7]"),
    _R("fwd", "triton_fwd", False, (16, 32, 64), _16BIT, 1024, 0,
       dict(BLOCK_M=64, BLOCK_N=128, num_warps=4, num_stages=3, TMA=True, RELOAD=True),
       "at w1 >= 1024 K1 tiles of 128 amortise each offset's work over more columns [v5]"),
    _R("fwd", "triton_fwd", False, (16, 32, 64), _16BIT, 0, 0,
       dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=3, TMA=True, RELOAD=True, maxnreg=168),
       "168 registers fit three programs per SM without spills: 278 vs 250 TFLOP/s [v5]"),
    _R("fwd", "triton_fwd", None, (16, 32, 64), _FP32, 0, 0,
       dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=2),
       "fp32 tiles are twice the bytes: two pipeline stages fit shared memory"),
    _R("fwd", "triton_fwd", False, (128,), _16BIT, 0, 0,
       dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=3, TMA=True, RELOAD=True),
       "RELOAD re-reads Q and V2 at an offset's edges: D=128 spills holding them [v4]"),
    _R("fwd", "triton_fwd", None, (128,), _FP32, 0, 0,
       dict(BLOCK_M=32, BLOCK_N=64, num_warps=4, num_stages=2, TMA=True, RELOAD=True),
       "fp32: half the query rows and two stages to stay in registers and shared memory"),
    _R("fwd", "triton_fwd", None, (256,), _16BIT, 0, 0,
       dict(BLOCK_M=32, BLOCK_N=32, num_warps=4, num_stages=2, RELOAD=True),
       "D=256: small tiles that fit registers (correctness-tested, not tuned)"),
    _R("fwd", "triton_fwd", None, (256,), _FP32, 0, 0,
       dict(BLOCK_M=16, BLOCK_N=32, num_warps=4, num_stages=2, RELOAD=True),
       "D=256 in fp32: half the query rows"),
    # -- backward dQ/dK2/dV2 -----------------------------------------------------------------------------------------
    _R("bwd_dq", "gluon_bwd_dq", True, (64,), None, 0, 0,
       dict(BLOCK_M=64, BLOCK_N=64, NUM_BUF=2, num_warps=4, maxnreg=128),
       "one consumer, two programs per SM: 5.7 vs 7.0 ms for the tl kernel; the two-role kernel 0.65-0.84x [v10]"),
    _R("bwd_dq", "gluon_bwd_dq_roles", True, (128,), None, 0, 0,
       dict(BLOCK_M=64, BLOCK_N=64, NUM_BUF=4, NUM_P=2, CONSUMER_REGS=240, PRODUCER_REGS=24, num_warps=4,
            maxnreg=168),
       "a probs and a grads consumer, P handed over in 16 bits, one launch: 10.90 vs 15.44-16.25 ms [v11]"),
    _R("bwd_dq", "triton_bwd_dq", None, (16, 32, 64), _16BIT, 0, 0,
       dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=3, TMA=True, RELOAD=True),
       "three stages with RELOAD keep the K1/V1 prefetch running without spills [v5]"),
    _R("bwd_dq", "triton_bwd_dq", None, (16, 32, 64), _FP32, 0, 0,
       dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=2, TMA=True, RELOAD=True),
       "fp32: two stages fit shared memory"),
    _R("bwd_dq", "triton_bwd_dq", None, (128,), _16BIT, 0, 0,
       dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=2, TMA=True, RELOAD=True, SPLIT=True, DQ_ATOMIC=True),
       "two launches and dQ through atomics: each holds fewer fp32 accumulators and spills less [v5]"),
    _R("bwd_dq", "triton_bwd_dq", None, (128,), _FP32, 0, 0,
       dict(BLOCK_M=32, BLOCK_N=64, num_warps=4, num_stages=2, TMA=True, RELOAD=True, SPLIT=True, DQ_ATOMIC=True),
       "fp32: half the query rows"),
    _R("bwd_dq", "triton_bwd_dq", None, (256,), None, 0, 0,
       dict(BLOCK_M=16, BLOCK_N=32, num_warps=4, num_stages=1, RELOAD=True),
       "D=256: small tiles that fit registers (correctness-tested, not tuned)"),
    # -- backward dK1/dV1 --------------------------------------------------------------------------------------------
    _R("bwd_dk1", "gluon_bwd_dk1", True, (64,), None, 0, 0,
       dict(BLOCK_M=64, BLOCK_N=64, NUM_F=4, CONSUMER_REGS=232, PRODUCER_REGS=24, num_warps=4, maxnreg=128),
       "two K1 tiles per program, their operands formed once by two producers: 4.89 vs 5.02-5.33 ms [v10]"),
    _R("bwd_dk1", "gluon_bwd_dk1_roles", True, (128,), None, 0, 0,
       dict(BLOCK_M=64, BLOCK_N=64, NUM_F=2, NUM_P=2, CONSUMER_REGS=232, PRODUCER_REGS=24, num_warps=4,
            maxnreg=128),
       "probs and grads consumers with one accumulator each fit query tiles of 64: 10.37 vs 11.20 ms [v11]"),
    _R("bwd_dk1", "triton_bwd_dk1", None, (16, 32, 64), None, 0, 0,
       dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=2),
       "64 x 64 tiles, two stages: the v4 sweep's best [v4]"),
    _R("bwd_dk1", "triton_bwd_dk1", None, (128,), _16BIT, 0, 0,
       dict(BLOCK_M=32, BLOCK_N=128, num_warps=8, num_stages=2),
       "K1 tiles of 128 rows over 8 warps amortise each query tile's loads [v5]"),
    _R("bwd_dk1", "triton_bwd_dk1", None, (128,), _FP32, 0, 0,
       dict(BLOCK_M=16, BLOCK_N=128, num_warps=8, num_stages=2),
       "fp32: half the query rows"),
    _R("bwd_dk1", "triton_bwd_dk1", None, (256,), None, 0, 0,
       dict(BLOCK_M=16, BLOCK_N=32, num_warps=4, num_stages=1),
       "D=256: small tiles that fit registers (correctness-tested, not tuned)"),
)
# The CPU interpreter (TRITON_INTERPRET=1) runs the tl kernels at the smallest tiles tl.dot takes, one warp.
_INTERPRETER = dict(BLOCK_M=16, BLOCK_N=16, num_warps=1, num_stages=1, QUERIES=4)
_INTERPRETER_KERNELS = {"fwd": "triton_fwd", "bwd_dq": "triton_bwd_dq", "bwd_dk1": "triton_bwd_dk1"}


def gluon_applies(*tensors: torch.Tensor) -> bool:
    """Whether the Gluon kernels can run these tensors: head dim 64 or 128 (the dims they are built for), Triton's
    active target is Hopper (sm_90; asked of the target so that compile-only runs see the one they compile for), the
    dtype is 16-bit, and every tensor reads as a 16-byte aligned 2-D [B*N, H*D] TMA view (heads packed in rows,
    batches evenly spaced)."""
    if interpreting() or tensors[0].shape[-1] not in (64, 128):
        return False
    try:
        from . import gluon_common
    except ImportError:  # a triton without Gluon's Hopper module
        return False
    return gluon_common.applies(*tensors)


def default_launch(pass_: str, gluon: bool, d: int, dtype: torch.dtype, w1: int, w2: int) -> Launch:
    """The first row of the table for pass_ at these conditions (gluon: whether the Gluon kernels apply)."""
    for row in _TABLE:
        if (row.pass_ == pass_ and (row.gluon is None or row.gluon == gluon) and (row.dims is None or d in row.dims)
                and (row.dtypes is None or dtype in row.dtypes) and w1 >= row.min_w1 and w2 >= row.min_w2):
            return Launch(row.kernel, row.config)
    raise ValueError(f"no kernel for pass {pass_!r} at D={d}, {dtype}, (w1, w2)=({w1}, {w2}), gluon={gluon}")


def make_plan(q, k1, k2, v1, v2, w1: int, w2: int, do: torch.Tensor | None = None,
              gluon: bool | None = None) -> KernelPlan:
    """The default plan for these inputs; windows already clipped to N. do (the upstream gradient) joins the Gluon
    check for the backward when given; without it the backward is planned as if it had q's layout. gluon=False plans
    the tl kernels as where the Gluon ones do not apply (the tests' and benchmarks' baseline); None asks
    `gluon_applies`."""
    if interpreting():
        return KernelPlan(**{p: Launch(_INTERPRETER_KERNELS[p], _INTERPRETER) for p in PASSES})
    d, dtype = q.shape[-1], q.dtype
    fwd_gluon = gluon_applies(q, k1, k2, v1, v2) if gluon is None else gluon
    bwd_gluon = fwd_gluon and (do is None or gluon_applies(do))
    return KernelPlan(fwd=default_launch("fwd", fwd_gluon, d, dtype, w1, w2),
                      bwd_dq=default_launch("bwd_dq", bwd_gluon, d, dtype, w1, w2),
                      bwd_dk1=default_launch("bwd_dk1", bwd_gluon, d, dtype, w1, w2))


def plan_backward(plan: KernelPlan, do: torch.Tensor, q, k1, k2, v1, v2, w1: int, w2: int) -> KernelPlan:
    """plan with its backward re-planned where the upstream gradient's layout keeps a planned Gluon kernel from
    running (do is only known in the backward); every other choice is kept."""
    if plan.bwd_dq.kernel.startswith("gluon") or plan.bwd_dk1.kernel.startswith("gluon"):
        if not gluon_applies(do):
            d, dtype = q.shape[-1], q.dtype
            return dataclasses.replace(plan, bwd_dq=default_launch("bwd_dq", False, d, dtype, w1, w2),
                                       bwd_dk1=default_launch("bwd_dk1", False, d, dtype, w1, w2))
    return plan


def table() -> list[dict]:
    """The defaults as rows (for docs and benchmarks): pass, kernel, applies-when, config, why."""
    return [dict(pass_=r.pass_, kernel=r.kernel, gluon=r.gluon, dims=r.dims,
                 dtypes=None if r.dtypes is None else [str(t)[6:] for t in r.dtypes], min_w1=r.min_w1,
                 min_w2=r.min_w2, config=dict(r.config), why=r.why) for r in _TABLE]
