"""Inputs and error measures the kernels' tests and benchmarks share (as `torch.testing` serves torch's own)."""

from __future__ import annotations

import torch

__all__ = ["make_inputs", "rel_err", "as_accurate"]


def make_inputs(B, N, Hq, Hkv, D, dtype, device, non_contiguous=False, seed=0):
    """Fresh random q [B, N, Hq, D] and k1, k2, v1, v2 [B, N, Hkv, D]; non_contiguous ones are slices of one fused
    projection [B, N, Hq*D + 4*Hkv*D], the layout simplicial.model hands the kernels."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    if non_contiguous:
        fused = torch.randn(B, N, (Hq + 4 * Hkv) * D, generator=g).to(device=device, dtype=dtype)
        parts = torch.split(fused, [Hq * D] + [Hkv * D] * 4, dim=-1)
        q = parts[0].unflatten(-1, (Hq, D))
        ks = [p.unflatten(-1, (Hkv, D)) for p in parts[1:]]
        assert not q.is_contiguous()
        return [q, *ks]
    q = torch.randn(B, N, Hq, D, generator=g).to(device=device, dtype=dtype)
    return [q] + [torch.randn(B, N, Hkv, D, generator=g).to(device=device, dtype=dtype) for _ in range(4)]


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    """||x - ref|| / ||ref|| in float64."""
    x, ref = x.double(), ref.double()
    return ((x - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def as_accurate(err: float, ref_err: float) -> bool:
    """An output error against fp32 at most 1.25x a reference kernel's (kernels that sum in another order, like the
    packed D=64 forward's per-query merge, differ from the tl kernel by about one 16-bit rounding of the output)."""
    return err <= 1.25 * ref_err + 1e-6
