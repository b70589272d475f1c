"""Triton 2-simplicial attention kernels against the float64 naive reference (CPU: TRITON_INTERPRET=1).

Outputs and all five gradients are compared with ||x - ref|| / ||ref|| (1e-4 in fp32, 2e-3 in fp16) on fresh random
inputs, with every kernel output poisoned (NaN) before the run (KernelPlan.poison_outputs) so an element a kernel fails
to write fails the test. The kernels run through `triton_kernels.attention.simplicial_attention` with a plan; the
public entry and its torch.library op are checked on their own (the op's registration and fake implementation with
torch.library.opcheck, and a torch.compile of a small model with fullgraph=True).
bf16 is checked on the GPU only (tests/test_kernels_gpu.py): tl.dot on bf16 is wrong in the
interpreter (docs/REFERENCE.md section 3).
"""

from __future__ import annotations

import pytest
import torch

# On CPU the kernels run in Triton's interpreter, which tests/conftest.py selects before any test module imports them.
from triton_kernels import two_simplicial_attention
from triton_kernels.attention import simplicial_attention
from triton_kernels.plan import KERNELS, PASSES, make_plan
from triton_kernels.reference import two_simplicial_attention_naive
from triton_kernels.testing import make_inputs, rel_err

# (id, B, N, Hq, Hkv, D, w1, w2, non_contiguous). N is never a multiple of the 16-row interpreter block unless noted.
CASES = [
    ("basic", 2, 21, 2, 2, 16, 6, 3, False),
    ("w1_lt_w2", 1, 19, 2, 2, 16, 3, 11, False),
    ("w1_is_1", 1, 18, 2, 1, 16, 1, 5, False),
    ("w2_is_1", 1, 18, 2, 2, 16, 7, 1, False),
    ("windows_longer_than_N", 1, 11, 2, 1, 32, 40, 25, False),
    ("gqa2", 1, 23, 4, 2, 32, 9, 4, False),
    ("gqa4", 1, 20, 4, 1, 16, 5, 6, False),
    ("N_is_1", 1, 1, 2, 1, 16, 4, 4, False),
    ("N_multiple_of_block", 1, 32, 1, 1, 16, 17, 5, False),
    ("interior_tiles", 1, 53, 2, 1, 16, 33, 3, False),  # whole unmasked k1 tiles and query tiles exist
    ("D64", 1, 17, 1, 1, 64, 8, 4, False),
    ("D128", 1, 13, 1, 1, 128, 6, 3, False),
    ("D256", 1, 9, 1, 1, 256, 5, 3, False),
    ("non_contiguous", 2, 19, 4, 2, 32, 7, 4, True),
]
TOL = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def poisoned_plan(xs, w1, w2, **flags):
    """The default plan for inputs xs (windows clipped to their N), outputs poisoned with NaN; flags: per pass a
    kernel name and/or config keys over the default config, e.g. fwd=dict(TMA=True), fwd_kernel="..."."""
    n = xs[0].shape[1]
    plan = make_plan(*xs, min(w1, n), min(w2, n)).replace(poison_outputs=True)
    for p in PASSES:
        if p in flags or f"{p}_kernel" in flags:
            plan = plan.replace(p, kernel=flags.get(f"{p}_kernel"), config={**getattr(plan, p).config,
                                                                             **flags.get(p, {})})
    return plan


def check_case(case, dtype, device, backend="triton", tol=None, record=None, **flags):
    """Run the case through the kernels with a poisoned default plan (flags: see poisoned_plan; backend="public":
    the public entry, i.e. the torch.library op); return {name: rel error} for out and the five gradients (asserting
    nothing)."""
    _, B, N, Hq, Hkv, D, w1, w2, nc = case
    inputs = make_inputs(B, N, Hq, Hkv, D, dtype, device, nc)
    xs = [x.detach().requires_grad_() if not nc else x for x in inputs]
    if nc:  # keep the slices non-contiguous views of a leaf
        leaf = inputs[0]._base.detach().requires_grad_()
        parts = torch.split(leaf, [Hq * D] + [Hkv * D] * 4, dim=-1)
        xs = [parts[0].unflatten(-1, (Hq, D))] + [p.unflatten(-1, (Hkv, D)) for p in parts[1:]]
        grads_of = [leaf]
    else:
        grads_of = xs
    if backend == "public":
        out = two_simplicial_attention(*xs, w1, w2, backend="triton")
    else:
        out = simplicial_attention(*xs, w1, w2, plan=poisoned_plan(inputs, w1, w2, **flags), record=record)
    g = torch.Generator(device="cpu").manual_seed(1)
    dout = torch.randn(out.shape, generator=g).to(device=device, dtype=dtype)
    grads = torch.autograd.grad(out, grads_of, dout)
    if nc:
        grads = list(torch.split(grads[0], [Hq * D] + [Hkv * D] * 4, dim=-1))
        grads = [grads[0].unflatten(-1, (Hq, D))] + [gg.unflatten(-1, (Hkv, D)) for gg in grads[1:]]

    xd = [x.detach().double().requires_grad_() for x in inputs]
    ref = two_simplicial_attention_naive(*xd, w1, w2)
    ref_grads = torch.autograd.grad(ref, xd, dout.double())
    errs = {"out": rel_err(out, ref)}
    for name, a, r in zip(("dq", "dk1", "dk2", "dv1", "dv2"), grads, ref_grads):
        assert torch.isfinite(a).all(), f"{name} has non-finite elements (unwritten?)"
        # A gradient that is exactly zero in exact arithmetic (one valid (j, k) pair: S = 1, dS = 0) has no relative
        # error; measure it against the upstream gradient's size instead.
        zero = r.norm().item() <= 1e-9 * dout.double().norm().item()
        errs[name] = (a.double().norm() / dout.double().norm()).item() if zero else rel_err(a, r)
    assert torch.isfinite(out).all(), "out has non-finite elements (unwritten?)"
    return errs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_naive_reference(case, dtype):
    errs = check_case(case, dtype, "cpu")
    bad = {k: v for k, v in errs.items() if not v < TOL[dtype]}
    assert not bad, f"{case[0]} {dtype}: rel errors over {TOL[dtype]}: {bad} (all: {errs})"


# The GPU configs' paths (plan.py's tl rows), which the interpreter's default config does not take: K1/V1/K2/V2
# through TMA tensor descriptors (rows outside [0, N) read as zero, so batch and sequence edges matter), RELOAD
# (per-query operands re-read at an offset's first and last tile), SPLIT (the dq kernel as two launches, dQ/dK2 and
# dV2) and DQ_ATOMIC (dQ summed through fp32 atomic adds). Cases: batch 2 with GQA, interior tiles, windows longer
# than N.
PATH_CASES = [c for c in CASES if c[0] in ("basic", "gqa2", "interior_tiles", "windows_longer_than_N")]
PATH_FLAGS = {"tma": dict(TMA=True), "reload": dict(RELOAD=True), "both": dict(TMA=True, RELOAD=True),
              "split": dict(TMA=True, RELOAD=True, SPLIT=True), "dq_atomic": dict(RELOAD=True, DQ_ATOMIC=True),
              "split_dq_atomic": dict(TMA=True, RELOAD=True, SPLIT=True, DQ_ATOMIC=True)}


@pytest.mark.parametrize("flags", PATH_FLAGS.values(), ids=PATH_FLAGS.keys())
@pytest.mark.parametrize("case", PATH_CASES, ids=[c[0] for c in PATH_CASES])
def test_gpu_config_paths_match_reference(case, flags):
    fwd_flags = {k: v for k, v in flags.items() if k not in ("SPLIT", "DQ_ATOMIC")}
    errs = check_case(case, torch.float32, "cpu", fwd=fwd_flags, bwd_dq=flags)
    bad = {k: v for k, v in errs.items() if not v < TOL[torch.float32]}
    assert not bad, f"{case[0]} {flags}: rel errors over 1e-4: {bad}"


# The per-query forward (_simplicial_fwd_per_query), the tl forward's choice at w2 >= 64 and D=64 in 16 bits (where
# the Gluon kernel does not apply): every case of the table (windows longer than N, w1 or w2 of 1, GQA, batch edges),
# with pointer and TMA loads, and programs whose last one has fewer than QUERIES queries (N = 21, 19, ... with
# QUERIES = 4 or 3). The backward is the usual one.
PER_QUERY_FLAGS = {"pointers": dict(), "tma_3_queries": dict(TMA=True, QUERIES=3)}


@pytest.mark.parametrize("flags", PER_QUERY_FLAGS.values(), ids=PER_QUERY_FLAGS.keys())
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_per_query_forward_matches_reference(case, flags):
    flags = {k: v for k, v in flags.items() if k != "PER_QUERY"}
    dtype = torch.float16 if flags.get("TMA") else torch.float32
    record = {}
    errs = check_case(case, dtype, "cpu", record=record, fwd=flags, fwd_kernel="triton_fwd_per_query")
    assert record["plan"].fwd.kernel == "triton_fwd_per_query", "the per-query kernel did not run"
    bad = {k: v for k, v in errs.items() if not v < TOL[dtype]}
    assert not bad, f"{case[0]} {flags}: rel errors over {TOL[dtype]}: {bad}"


def test_single_pair_windows_give_zero_logit_gradients():
    """w1 = w2 = 1: S = 1 for every row, so dq, dk1, dk2 are exactly zero and out = v1 * v2 (a relative error to a
    zero gradient is meaningless, hence its own test)."""
    q, k1, k2, v1, v2 = (x.requires_grad_() for x in make_inputs(1, 19, 2, 1, 16, torch.float32, "cpu"))
    out = two_simplicial_attention(q, k1, k2, v1, v2, 1, 1, backend="triton")
    torch.testing.assert_close(out, (v1 * v2).repeat_interleave(2, dim=2), rtol=1e-5, atol=1e-5)
    dq, dk1, dk2, dv1, dv2 = torch.autograd.grad(out, [q, k1, k2, v1, v2], torch.randn_like(out))
    for g in (dq, dk1, dk2):
        assert g.abs().max().item() < 1e-5
    assert dv1.abs().max().item() > 0 and dv2.abs().max().item() > 0


@pytest.mark.parametrize("sm_scale", [0.9, -0.3, 0.0])
def test_any_sm_scale_matches_reference(sm_scale):
    """The kernels apply the logit scale after the row max of the unscaled product, which needs it positive; a
    negative scale's sign and a zero scale move into q (two_simplicial_attention_triton). Out and all five gradients
    against the float64 reference at the same scale."""
    xs = [x.requires_grad_() for x in make_inputs(2, 21, 4, 2, 16, torch.float32, "cpu", seed=5)]
    out = two_simplicial_attention(*xs, 7, 4, sm_scale=sm_scale, backend="triton")
    dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    grads = torch.autograd.grad(out, xs, dout)
    xd = [x.detach().double().requires_grad_() for x in xs]
    ref = two_simplicial_attention_naive(*xd, 7, 4, sm_scale=sm_scale)
    ref_grads = torch.autograd.grad(ref, xd, dout.double())
    assert rel_err(out, ref) < 1e-4
    for name, a, r in zip(("dq", "dk1", "dk2", "dv1", "dv2"), grads, ref_grads):
        err = (a - r).norm().item() / max(r.norm().item(), dout.norm().item() * 1e-3)  # zero scale: zero dq, dk1, dk2
        assert err < 1e-4, (name, err)


def test_triton_matches_torch_backend():
    xs = make_inputs(1, 25, 4, 2, 16, torch.float32, "cpu", seed=3)
    a = two_simplicial_attention(*xs, 8, 4, backend="triton")
    b = two_simplicial_attention(*xs, 8, 4, backend="torch")
    assert rel_err(a, b) < 1e-5


def test_auto_uses_reference_on_cpu(monkeypatch):
    import triton_kernels

    def boom(*a, **k):
        raise AssertionError("auto must not call the Triton path for CPU tensors")

    monkeypatch.setattr(triton_kernels, "two_simplicial_attention_triton", boom)
    xs = make_inputs(1, 9, 2, 2, 16, torch.float32, "cpu")
    out = two_simplicial_attention(*xs, 4, 2)
    assert out.shape == (1, 9, 2, 16)


# ----------------------------------------------------------------------------------------------------- bad inputs


def _good(B=1, N=8, Hq=2, Hkv=1, D=16, dtype=torch.float32):
    return make_inputs(B, N, Hq, Hkv, D, dtype, "cpu")


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda x: (x[0][0], *x[1:], 4, 2), r"q must have rank 4"),
        (lambda x: (x[0], x[1][:, :5], *x[2:], 4, 2), r"k1 must be \[B=1, N=8"),
        (lambda x: (x[0], x[1], x[2][..., :8], *x[3:], 4, 2), r"k2 must be"),
        (lambda x: (x[0], *[t.expand(1, 8, 3, 16) for t in x[1:]], 4, 2), r"divisible"),
        (lambda x: (x[0], x[1], x[2], torch.cat([x[3], x[3]], 2), x[4], 4, 2), r"v1 must have k1's shape"),
        (lambda x: (*x, 0, 2), r"w1 must be an int >= 1"),
        (lambda x: (*x, 4, -1), r"w2 must be an int >= 1"),
        (lambda x: (*x, 4.0, 2), r"w1 must be an int"),
        (lambda x: (x[0].double(), *x[1:], 4, 2), r"q has unsupported dtype|q has dtype"),
        (lambda x: (x[0], x[1].half(), *x[2:], 4, 2), r"k1 has dtype torch.float16 but q has torch.float32"),
        (lambda x: (x[0].to(torch.int32), *x[1:], 4, 2), r"q has unsupported dtype"),
    ],
    ids=["rank", "seq_len", "head_dim", "gqa", "v1_heads", "w1_zero", "w2_neg", "w1_float", "float64", "mixed",
         "int"],
)
def test_bad_inputs_raise_value_error(mutate, match):
    args = mutate(_good())
    with pytest.raises(ValueError, match=match) as info:
        two_simplicial_attention(*args, backend="triton")
    assert "q(" in str(info.value) or "w1" in str(info.value) or "w2" in str(info.value)


def test_unsupported_head_dim_and_backend():
    xs = _good(D=24)
    with pytest.raises(ValueError, match=r"head dim D=24 is not supported"):
        two_simplicial_attention(*xs, 4, 2, backend="triton")
    out = two_simplicial_attention(*xs, 4, 2, backend="torch")  # the reference takes any D
    assert out.shape == xs[0].shape
    with pytest.raises(ValueError, match=r"backend must be one of"):
        two_simplicial_attention(*xs, 4, 2, backend="cuda")


def test_different_devices_raise():
    xs = _good()
    xs[2] = xs[2].to("meta")
    with pytest.raises(ValueError, match=r"k2 is on meta but q is on cpu"):
        two_simplicial_attention(*xs, 4, 2, backend="triton")


# ------------------------------------------------------------------------------------ the plan and the library op


def test_every_planned_kernel_has_a_launcher_and_bad_plans_are_refused():
    from triton_kernels import attention
    from triton_kernels.plan import table

    assert set(attention.LAUNCHERS) == {k for p in PASSES for k in KERNELS[p]}
    assert all(row["kernel"] in KERNELS[row["pass_"]] and row["why"] for row in table())
    xs = make_inputs(1, 9, 2, 1, 16, torch.float32, "cpu")
    plan = make_plan(*xs, 4, 2)
    with pytest.raises(ValueError, match=r"kernel 'gluon_fwd' does not run pass 'bwd_dq'"):
        plan.replace("bwd_dq", kernel="gluon_fwd")
    with pytest.raises(ValueError, match=r"pass 'bwd' is not one of"):
        plan.replace("bwd", config={})
    with pytest.raises(TypeError, match="plan must be a KernelPlan"):
        simplicial_attention(*xs, 4, 2, plan={"fwd": {}})
    with pytest.raises(TypeError):  # frozen: a plan is a value, passed in, never patched
        plan.fwd.config["BLOCK_M"] = 32


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in ("basic", "gqa2", "non_contiguous")],
                         ids=lambda c: c[0])
def test_public_entry_runs_the_library_op(case):
    """two_simplicial_attention(backend="triton") goes through torch.ops.triton_kernels.two_simplicial_attention and
    its registered backward: outputs and all five gradients against the float64 reference."""
    errs = check_case(case, torch.float32, "cpu", backend="public")
    bad = {k: v for k, v in errs.items() if not v < TOL[torch.float32]}
    assert not bad, f"{case[0]}: rel errors over 1e-4: {bad}"


def test_library_op_registration_and_fake_implementations():
    """torch.library.opcheck: the schema, the autograd registration, the fake (meta) implementations against the real
    kernels, and AOT dispatch with dynamic shapes; for the forward op (with and without inputs that need gradients)
    and the backward op."""
    from torch.library import opcheck

    xs = make_inputs(1, 21, 2, 1, 16, torch.float32, "cpu", seed=2)
    fwd = torch.ops.triton_kernels.two_simplicial_attention
    for args in ((*xs, 6, 3, 0.25), (*(x.clone().requires_grad_() for x in xs), 6, 3, 0.25)):
        result = opcheck(fwd, args)
        assert set(result.values()) == {"SUCCESS"}, result
    out, lse = fwd(*xs, 6, 3, 0.25)
    assert out.shape == xs[0].shape and lse.shape == (1, 2, 21) and lse.dtype == torch.float32
    do = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
    result = opcheck(torch.ops.triton_kernels.two_simplicial_attention_backward, (do, *xs, out, lse, 6, 3, 0.25))
    assert set(result.values()) == {"SUCCESS"}, result


def test_torch_compile_traces_a_simplicial_model_without_graph_breaks():
    """A small 2-simplicial LM (simplicial.model, attn_backend "triton", so its attention is the library op) under
    torch.compile(fullgraph=True): a graph break would raise. Its loss and gradients equal the eager model's.
    (backend="aot_eager": the graph capture and autograd tracing are what is tested, without a C++ toolchain.)"""
    from simplicial.model import LM, ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=32, seq_len=24, n_layers=2, d_model=32, n_heads=2, arch="simplicial",
                      simplicial_every=1, w1=8, w2=4, attn_backend="triton")
    model = LM(cfg)
    idx = torch.randint(0, 32, (2, cfg.seq_len + 1), generator=torch.Generator().manual_seed(1))
    _, eager_loss = model(idx[:, :-1], idx[:, 1:])
    eager_grads = torch.autograd.grad(eager_loss, list(model.parameters()))
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    _, loss = compiled(idx[:, :-1], idx[:, 1:])
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert abs(loss.item() - eager_loss.item()) < 1e-5, (loss.item(), eager_loss.item())
    assert max(rel_err(a, b) for a, b in zip(grads, eager_grads)) < 1e-4


def test_backward_leaves_a_gluon_kernel_that_cannot_read_the_upstream_gradient():
    """do is only known in the backward: where a planned Gluon backward kernel cannot read it (here: the interpreter,
    where no Gluon kernel applies; on a GPU, a dO whose heads are not packed in rows), plan_backward re-plans both
    backward passes to the tl kernels and keeps the forward."""
    from triton_kernels.plan import default_launch, plan_backward

    xs = make_inputs(1, 64, 2, 1, 64, torch.float16, "cpu")
    plan = make_plan(*xs, 32, 8).replace("bwd_dq", kernel="gluon_bwd_dq").replace("bwd_dk1", kernel="gluon_bwd_dk1")
    replanned = plan_backward(plan, torch.zeros_like(xs[0]), *xs, 32, 8)
    assert replanned.fwd == plan.fwd
    assert replanned.bwd_dq == default_launch("bwd_dq", False, 64, torch.float16, 32, 8)
    assert replanned.bwd_dk1 == default_launch("bwd_dk1", False, 64, torch.float16, 32, 8)
    tl_plan = make_plan(*xs, 32, 8)
    assert plan_backward(tl_plan, torch.zeros_like(xs[0]), *xs, 32, 8) is tl_plan
