"""The kernels as one differentiable op: forward and backward by plan, the autograd function, the torch.library op.

    out = simplicial_attention(q, k1, k2, v1, v2, w1, w2)                     # the default plan (plan.py)
    out = simplicial_attention(..., plan=make_plan(...).replace("fwd", config={...}), record=launched)

`two_simplicial_attention_triton` (what `triton_kernels.two_simplicial_attention` calls for backend "triton") runs
the registered op `torch.ops.triton_kernels.two_simplicial_attention` (forward: out and the base-2 log-sum-exp) and
its backward `torch.ops.triton_kernels.two_simplicial_attention_backward` (the five gradients), with fake
implementations, so that torch.compile traces a model through these kernels without a graph break. The op always
runs the default plan; `simplicial_attention` (the autograd function) takes a plan and records which compiled
kernels ran, for tests and benchmarks. Both run the same `forward` / `backward` below.

Backward: delta = rowsum(O * dO) first (triton_common.backward_delta), then the dQ/dK2/dV2 kernel and the dK1/dV1
kernel, which are independent, side by side on two CUDA streams (KernelPlan.backward_streams).
"""

from __future__ import annotations

import importlib
import math

import torch

from .plan import KernelPlan, make_plan, plan_backward
from .triton_common import backward_delta

__all__ = ["simplicial_attention", "two_simplicial_attention_triton", "forward", "backward", "launcher"]

# kernel name (plan.KERNELS) -> (module, launcher). Modules are imported at first use, so that a machine without
# Gluon's Hopper module never loads the Gluon ones.
LAUNCHERS = {
    "gluon_fwd": ("gluon_fwd", "forward"),
    "triton_fwd": ("triton_fwd", "forward"),
    "triton_fwd_per_query": ("triton_fwd", "forward_per_query"),
    "gluon_bwd_dq": ("gluon_bwd_dqdk2dv2", "backward_dq_dk2dv2"),
    "gluon_bwd_dq_roles": ("gluon_bwd_dqdk2dv2", "backward_dq_dk2dv2_roles"),
    "triton_bwd_dq": ("triton_bwd_dqdk2dv2", "backward_dq_dk2dv2"),
    "gluon_bwd_dk1": ("gluon_bwd_dk1dv1", "backward_dk1dv1"),
    "gluon_bwd_dk1_roles": ("gluon_bwd_dk1dv1", "backward_dk1dv1_roles"),
    "triton_bwd_dk1": ("triton_bwd_dk1dv1", "backward_dk1dv1"),
}


def launcher(kernel: str):
    """The host launcher of a kernel named in plan.KERNELS: (inputs..., w1, w2, sm_scale, config, poison=False) ->
    (outputs..., compiled kernels)."""
    module, name = LAUNCHERS[kernel]
    return getattr(importlib.import_module(f".{module}", __package__), name)


def forward(q, k1, k2, v1, v2, w1, w2, sm_scale, plan: KernelPlan, record: dict | None = None):
    """(out [B, N, Hq, D], lse [B, Hq, N] base 2) by plan.fwd; windows clipped to N, sm_scale > 0, inputs with a
    contiguous head dim. record, if given, gets record["fwd"] = the compiled kernels that ran (None under the CPU
    interpreter) and record["plan"] = the plan."""
    launch = plan.fwd
    out, lse, kernels = launcher(launch.kernel)(q, k1, k2, v1, v2, w1, w2, sm_scale, launch.config,
                                                 plan.poison_outputs)
    if record is not None:
        record["fwd"], record["plan"] = kernels, plan
    return out, lse


_SIDE_STREAMS: dict[torch.device, torch.cuda.Stream] = {}  # one per device, for _on_two_streams


def _on_two_streams(first, second):
    """(first(), second()) with first on a side stream and second on the current one, joined before returning."""
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
        if isinstance(t, torch.Tensor):
            t.record_stream(main)  # allocated on the side stream, used and freed on the caller's
    return a, b


def backward(do, q, k1, k2, v1, v2, out, lse, w1, w2, sm_scale, plan: KernelPlan, record: dict | None = None):
    """(dq, dk1, dk2, dv1, dv2) in q's dtype by plan.bwd_dq and plan.bwd_dk1 (re-planned to the tl kernels where
    do's layout keeps a Gluon one from reading it). record gets "bwd_dq", "bwd_dk1" and the plan that ran."""
    do = _last_dim_contiguous(do)
    plan = plan_backward(plan, do, q, k1, k2, v1, v2, w1, w2)
    delta = backward_delta(do, out, plan.poison_outputs)
    args = (do, q, k1, k2, v1, v2, lse, delta, w1, w2, sm_scale)

    def dq_dk2dv2():
        return launcher(plan.bwd_dq.kernel)(*args, plan.bwd_dq.config, plan.poison_outputs)

    def dk1dv1():
        return launcher(plan.bwd_dk1.kernel)(*args, plan.bwd_dk1.config, plan.poison_outputs)

    if q.is_cuda and plan.backward_streams:
        (dq, dk2, dv2, dq_kernels), (dk1, dv1, dk1_kernels) = _on_two_streams(dq_dk2dv2, dk1dv1)
    else:  # the interpreter (CPU tensors), or one stream by request
        (dq, dk2, dv2, dq_kernels), (dk1, dv1, dk1_kernels) = dq_dk2dv2(), dk1dv1()
    if record is not None:
        record["bwd_dq"], record["bwd_dk1"], record["plan"] = dq_kernels, dk1_kernels, plan
    return dq, dk1, dk2, dv1, dv2


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _prepare(q, k1, k2, v1, v2, w1, w2, sm_scale):
    """Inputs with a contiguous head dim, windows clipped to N (a window longer than the sequence acts as the
    sequence) and a positive scale: the kernels apply the scale to the unscaled product's fp32 logits after their row
    max, so a negative scale's sign (or a zero scale) moves into q: scale * q.k1.k2 = |scale| * (sign * q).k1.k2."""
    n, d = q.shape[1], q.shape[3]
    scale = 1.0 / math.sqrt(d) if sm_scale is None else float(sm_scale)
    if scale <= 0.0:
        q, scale = q * (-1.0 if scale < 0.0 else 0.0), (-scale if scale < 0.0 else 1.0)
    q, k1, k2, v1, v2 = (_last_dim_contiguous(t) for t in (q, k1, k2, v1, v2))
    return q, k1, k2, v1, v2, min(int(w1), n), min(int(w2), n), scale


# --------------------------------------------------------------------------------------------------------------------
# the autograd function: a plan of the caller's, and a record of the kernels that ran
# --------------------------------------------------------------------------------------------------------------------


class _TwoSimplicialAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k1, k2, v1, v2, w1, w2, sm_scale, plan, record):
        out, lse = forward(q, k1, k2, v1, v2, w1, w2, sm_scale, plan, record)
        ctx.save_for_backward(q, k1, k2, v1, v2, out, lse)
        ctx.w1, ctx.w2, ctx.sm_scale, ctx.plan, ctx.record = w1, w2, sm_scale, plan, record
        return out

    @staticmethod
    def backward(ctx, do):
        q, k1, k2, v1, v2, out, lse = ctx.saved_tensors
        grads = backward(do, q, k1, k2, v1, v2, out, lse, ctx.w1, ctx.w2, ctx.sm_scale, ctx.plan, ctx.record)
        return (*grads, None, None, None, None, None)


def simplicial_attention(q, k1, k2, v1, v2, w1, w2, sm_scale=None, *, plan: KernelPlan | None = None,
                         record: dict | None = None):
    """The kernels with a plan of the caller's (None: make_plan's default) and, with record (a dict), the compiled
    kernels of each pass that ran ({"fwd": (kernel,), "bwd_dq": ..., "bwd_dk1": ...}). Inputs as
    `triton_kernels.two_simplicial_attention`'s, already validated."""
    q, k1, k2, v1, v2, w1, w2, scale = _prepare(q, k1, k2, v1, v2, w1, w2, sm_scale)
    if plan is None:
        plan = make_plan(q, k1, k2, v1, v2, w1, w2)
    elif not isinstance(plan, KernelPlan):
        raise TypeError(f"simplicial_attention: plan must be a KernelPlan, got {type(plan).__name__}")
    return _TwoSimplicialAttention.apply(q, k1, k2, v1, v2, w1, w2, scale, plan, record)


# --------------------------------------------------------------------------------------------------------------------
# the torch.library op: the default plan, traceable by torch.compile
# --------------------------------------------------------------------------------------------------------------------


@torch.library.custom_op("triton_kernels::two_simplicial_attention", mutates_args=())
def _op_forward(q: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor, w1: int,
                w2: int, sm_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    return forward(q, k1, k2, v1, v2, w1, w2, sm_scale, make_plan(q, k1, k2, v1, v2, w1, w2))


@_op_forward.register_fake
def _(q, k1, k2, v1, v2, w1, w2, sm_scale):
    b, n, hq, _ = q.shape
    return q.new_empty(q.shape), q.new_empty((b, hq, n), dtype=torch.float32)


@torch.library.custom_op("triton_kernels::two_simplicial_attention_backward", mutates_args=())
def _op_backward(do: torch.Tensor, q: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, v1: torch.Tensor,
                 v2: torch.Tensor, out: torch.Tensor, lse: torch.Tensor, w1: int, w2: int,
                 sm_scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    plan = make_plan(q, k1, k2, v1, v2, w1, w2, do=do)
    return backward(do, q, k1, k2, v1, v2, out, lse, w1, w2, sm_scale, plan)


@_op_backward.register_fake
def _(do, q, k1, k2, v1, v2, out, lse, w1, w2, sm_scale):
    return (q.new_empty(q.shape), *(k1.new_empty(k1.shape) for _ in range(4)))


def _setup_context(ctx, inputs, output):
    q, k1, k2, v1, v2, w1, w2, sm_scale = inputs
    out, lse = output
    ctx.save_for_backward(q, k1, k2, v1, v2, out, lse)
    ctx.w1, ctx.w2, ctx.sm_scale = w1, w2, sm_scale
    ctx.mark_non_differentiable(lse)


def _op_grad(ctx, do, _dlse):
    q, k1, k2, v1, v2, out, lse = ctx.saved_tensors
    grads = torch.ops.triton_kernels.two_simplicial_attention_backward(do, q, k1, k2, v1, v2, out, lse, ctx.w1, ctx.w2,
                                                                       ctx.sm_scale)
    return (*grads, None, None, None)


_op_forward.register_autograd(_op_grad, setup_context=_setup_context)


def two_simplicial_attention_triton(q, k1, k2, v1, v2, w1, w2, sm_scale=None):
    """Triton path of `triton_kernels.two_simplicial_attention` (inputs already validated there): the registered
    op with the default plan."""
    q, k1, k2, v1, v2, w1, w2, scale = _prepare(q, k1, k2, v1, v2, w1, w2, sm_scale)
    out, _ = torch.ops.triton_kernels.two_simplicial_attention(q, k1, k2, v1, v2, w1, w2, scale)
    return out

