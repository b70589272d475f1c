"""Plain-PyTorch 2-simplicial attention: the naive O(N^3) definition and an exact, memory-bounded chunked version.

Both compute, for query i (math in ../shared/REFERENCE.md section 1, Roy et al. 2025):

    A_ijk = sm_scale * sum_l q_il k1_jl k2_kl        for  i - w1 < j <= i  and  i - w2 < k <= i
    S_ijk = softmax over the pair (j, k) of A_ijk
    o_i   = sum_jk S_ijk (v1_j * v2_k)

Shapes: q [B, N, Hq, D]; k1, k2, v1, v2 [B, N, Hkv, D] with Hq divisible by Hkv (grouped-query attention: query head h
uses kv head h // (Hq // Hkv)); out [B, N, Hq, D] in q's dtype. Softmax math runs in float32 (float64 when an input is
float64), so the naive version in float64 is the tests' ground truth.

`two_simplicial_attention_chunked` is the CPU path of the model and the Triton kernels' fallback: each chunk of queries
gathers only its own windows (a strided view of the padded K/V, no copy), so the live logits are
B * Hq * chunk * w1 * w2 elements, never N^3; each chunk runs under torch.utils.checkpoint when gradients are needed,
so the saved activations stay O(B * N * H * D).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

__all__ = ["two_simplicial_attention_naive", "two_simplicial_attention_chunked"]

# Elements of the per-chunk logits tensor the chunked version aims for when chunk_size is not given (64 MiB in fp32;
# the einsum temporaries are a few times that).
_CHUNK_ELEMENTS = 1 << 24


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _no_autocast(device: torch.device):
    """The reference computes in fp32/fp64 as written, also inside a caller's autocast region (which would otherwise
    run its einsums in bf16 and make it less exact than the kernels it checks)."""
    if device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def _group(q: torch.Tensor, hkv: int) -> torch.Tensor:
    """[B, N, Hq, D] -> [B, N, Hkv, G, D] (query heads grouped by the kv head they use)."""
    b, n, hq, d = q.shape
    return q.reshape(b, n, hkv, hq // hkv, d)


def two_simplicial_attention_naive(q, k1, k2, v1, v2, w1, w2, sm_scale=None):
    """Direct definition with the full [N, N, N] logits per head: only for tiny tests (float64 ground truth)."""
    with _no_autocast(q.device):
        return _naive(q, k1, k2, v1, v2, w1, w2, sm_scale)


def _naive(q, k1, k2, v1, v2, w1, w2, sm_scale):
    b, n, hq, d = q.shape
    hkv = k1.shape[2]
    scale = 1.0 / math.sqrt(d) if sm_scale is None else float(sm_scale)
    ct = _compute_dtype(q, k1, k2, v1, v2)
    qg = _group(q.to(ct), hkv)
    k1c, k2c, v1c, v2c = (t.to(ct) for t in (k1, k2, v1, v2))
    logits = torch.einsum("bihgl,bjhl,bkhl->bhgijk", qg, k1c, k2c) * scale
    pos = torch.arange(n, device=q.device)
    d1 = pos[:, None] - pos[None, :]  # i - j
    in1 = (d1 >= 0) & (d1 < w1)
    in2 = (d1 >= 0) & (d1 < w2)
    mask = in1[:, :, None] & in2[:, None, :]  # [i, j, k]
    logits = logits.masked_fill(~mask, float("-inf"))
    s = torch.softmax(logits.reshape(*logits.shape[:-2], -1), dim=-1).reshape(logits.shape)
    out = torch.einsum("bhgijk,bjhl,bkhl->bihgl", s, v1c, v2c)
    return out.reshape(b, n, hq, d).to(q.dtype)


def _windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """[B, N, H, D] -> [B, N, H, D, w] view: window a of row i holds row i - w + 1 + a (zeros before row 0)."""
    xp = F.pad(x, (0, 0, 0, 0, w - 1, 0))  # pad the sequence dim in front
    return xp.unfold(1, w, 1)


def _chunk(qc, k1w, k2w, v1w, v2w, valid, scale):
    """One chunk of queries. qc [B, C, Hkv, G, D]; k*w, v*w [B, C, Hkv, D, w]; valid [C, w1, w2] bool."""
    # (q_i * k2_k) for every k of row i's window: [B, C, Hkv, G, w2, D]
    qk2 = qc.unsqueeze(-2) * k2w.transpose(-1, -2).unsqueeze(3)
    logits = torch.einsum("bchgtd,bchda->bchgta", qk2, k1w) * scale  # [B, C, Hkv, G, w2, w1]
    logits = logits.masked_fill(~valid[None, :, None, None], float("-inf"))
    shp = logits.shape
    s = torch.softmax(logits.reshape(*shp[:-2], -1), dim=-1).reshape(shp)
    sv1 = torch.einsum("bchgta,bchda->bchgtd", s, v1w)  # [B, C, Hkv, G, w2, D]
    return torch.einsum("bchgtd,bchdt->bchgd", sv1, v2w)  # [B, C, Hkv, G, D]


def two_simplicial_attention_chunked(q, k1, k2, v1, v2, w1, w2, sm_scale=None, chunk_size=None):
    """Exact 2-simplicial attention in query chunks; autograd through PyTorch, memory ~ B*Hq*chunk*w1*w2 per chunk.

    Windows longer than N act as N. chunk_size=None picks the chunk so the logits of one chunk hold about 16M elements.
    """
    with _no_autocast(q.device):
        return _chunked(q, k1, k2, v1, v2, w1, w2, sm_scale, chunk_size)


def _chunked(q, k1, k2, v1, v2, w1, w2, sm_scale, chunk_size):
    b, n, hq, d = q.shape
    hkv = k1.shape[2]
    scale = 1.0 / math.sqrt(d) if sm_scale is None else float(sm_scale)
    w1e, w2e = max(1, min(int(w1), n)), max(1, min(int(w2), n))
    ct = _compute_dtype(q, k1, k2, v1, v2)
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // max(1, b * hq * w1e * w2e))
    chunk_size = int(min(max(1, chunk_size), n))

    qg = _group(q.to(ct), hkv)
    k1w, k2w = _windows(k1.to(ct), w1e), _windows(k2.to(ct), w2e)
    v1w, v2w = _windows(v1.to(ct), w1e), _windows(v2.to(ct), w2e)
    pos = torch.arange(n, device=q.device)
    # window slot a of row i holds position i - w + 1 + a: valid when >= 0
    ok1 = (pos[:, None] - w1e + 1 + torch.arange(w1e, device=q.device)[None, :]) >= 0  # [N, w1]
    ok2 = (pos[:, None] - w2e + 1 + torch.arange(w2e, device=q.device)[None, :]) >= 0  # [N, w2]
    need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k1, k2, v1, v2))

    outs = []
    for s in range(0, n, chunk_size):
        e = min(n, s + chunk_size)
        valid = ok2[s:e, :, None] & ok1[s:e, None, :]  # [C, w2, w1]
        args = (qg[:, s:e], k1w[:, s:e], k2w[:, s:e], v1w[:, s:e], v2w[:, s:e], valid, scale)
        if need_grad and e - s < n:
            outs.append(checkpoint(_chunk, *args, use_reentrant=False))
        else:
            outs.append(_chunk(*args))
    out = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
    return out.reshape(b, n, hq, d).to(q.dtype)
