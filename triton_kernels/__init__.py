"""Causal sliding-window 2-simplicial attention: Triton kernels (forward and backward) and a PyTorch reference.

    from triton_kernels import two_simplicial_attention
    out = two_simplicial_attention(q, k1, k2, v1, v2, w1, w2)   # q [B, N, Hq, D]; k1, k2, v1, v2 [B, N, Hkv, D]

Query i attends to j in (i - w1, i] of (k1, v1) and k in (i - w2, i] of (k2, v2), softmax jointly over (j, k),
logits sm_scale * sum_l q_il k1_jl k2_kl (sm_scale defaults to 1/sqrt(D)), out_i = sum_jk S_ijk (v1_j * v2_k).
"""

from __future__ import annotations

import os

import torch

from .attention import two_simplicial_attention_triton  # registers torch.ops.triton_kernels.two_simplicial_attention
from .reference import two_simplicial_attention_chunked, two_simplicial_attention_naive

__all__ = [
    "two_simplicial_attention",
    "two_simplicial_attention_chunked",
    "two_simplicial_attention_naive",
    "SUPPORTED_HEAD_DIMS",
    "SUPPORTED_DTYPES",
]

# Head dims the Triton kernels are built and tested for (tl.dot needs a power of two >= 16).
SUPPORTED_HEAD_DIMS = (16, 32, 64, 128, 256)
SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_BACKENDS = ("auto", "triton", "torch")
_NAMES = ("q", "k1", "k2", "v1", "v2")


def _shapes(tensors) -> str:
    return ", ".join(f"{n}{tuple(t.shape)}" for n, t in zip(_NAMES, tensors))


def _validate(q, k1, k2, v1, v2, w1, w2, sm_scale, backend) -> None:
    """Raise ValueError naming the argument and the shapes for anything the kernels would not compute exactly."""
    tensors = (q, k1, k2, v1, v2)
    for name, t in zip(_NAMES, tensors):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"two_simplicial_attention: {name} must be a torch.Tensor, got {type(t).__name__}")
    shapes = _shapes(tensors)
    if backend not in _BACKENDS:
        raise ValueError(f"two_simplicial_attention: backend must be one of {_BACKENDS}, got {backend!r}")
    for name, t in zip(_NAMES, tensors):
        if t.dim() != 4:
            raise ValueError(f"two_simplicial_attention: {name} must have rank 4 [B, N, H, D], got {shapes}")
    b, n, hq, d = q.shape
    if b < 1 or n < 1 or hq < 1 or d < 1:
        raise ValueError(f"two_simplicial_attention: q must have B, N, H, D >= 1, got {shapes}")
    kshape = k1.shape
    for name, t in zip(_NAMES[1:], tensors[1:]):
        if t.shape[0] != b or t.shape[1] != n or t.shape[3] != d:
            raise ValueError(f"two_simplicial_attention: {name} must be [B={b}, N={n}, Hkv, D={d}] like q, got {shapes}")
        if t.shape != kshape:
            raise ValueError(f"two_simplicial_attention: {name} must have k1's shape {tuple(kshape)}, got {shapes}")
    hkv = kshape[2]
    if hkv < 1 or hq % hkv != 0:
        raise ValueError(f"two_simplicial_attention: q heads ({hq}) must be divisible by k1 heads ({hkv}), got {shapes}")
    for name, w in (("w1", w1), ("w2", w2)):
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise ValueError(f"two_simplicial_attention: {name} must be an int >= 1, got {w!r} (shapes {shapes})")
    if sm_scale is not None and not isinstance(sm_scale, (int, float)):
        raise ValueError(f"two_simplicial_attention: sm_scale must be a float or None, got {sm_scale!r}")
    dev = q.device
    for name, t in zip(_NAMES[1:], tensors[1:]):
        if t.device != dev:
            raise ValueError(
                f"two_simplicial_attention: {name} is on {t.device} but q is on {dev} (shapes {shapes})"
            )
    dt = q.dtype
    allowed = SUPPORTED_DTYPES + ((torch.float64,) if backend == "torch" else ())
    for name, t in zip(_NAMES, tensors):
        if t.dtype not in allowed:
            raise ValueError(
                f"two_simplicial_attention: {name} has unsupported dtype {t.dtype} (supported: {allowed}; shapes {shapes})"
            )
        if t.dtype != dt:
            raise ValueError(
                f"two_simplicial_attention: {name} has dtype {t.dtype} but q has {dt} (shapes {shapes})"
            )


def _use_triton(q: torch.Tensor, backend: str) -> bool:
    if backend == "torch":
        return False
    if backend == "auto":
        return q.is_cuda
    return True


def two_simplicial_attention(q, k1, k2, v1, v2, w1, w2, *, sm_scale=None, backend="auto"):
    """Causal sliding-window 2-simplicial attention, differentiable in q, k1, k2, v1, v2.

    backend: "triton" runs the Triton kernels (CUDA tensors, or CPU tensors under TRITON_INTERPRET=1), "torch" the exact
    chunked PyTorch reference, "auto" Triton on CUDA and the reference otherwise. Returns [B, N, Hq, D] in q's dtype.
    """
    _validate(q, k1, k2, v1, v2, w1, w2, sm_scale, backend)
    if not _use_triton(q, backend):
        return two_simplicial_attention_chunked(q, k1, k2, v1, v2, w1, w2, sm_scale=sm_scale)
    d = q.shape[-1]
    if d not in SUPPORTED_HEAD_DIMS:
        raise ValueError(
            f"two_simplicial_attention: head dim D={d} is not supported by the Triton kernels "
            f"(supported: {SUPPORTED_HEAD_DIMS}; shapes {_shapes((q, k1, k2, v1, v2))}); use backend='torch'"
        )
    if not q.is_cuda and os.environ.get("TRITON_INTERPRET", "0") != "1":
        raise ValueError(
            f"two_simplicial_attention: backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for CPU ones); "
            f"q is on {q.device}"
        )
    return two_simplicial_attention_triton(q, k1, k2, v1, v2, w1, w2, sm_scale=sm_scale)
