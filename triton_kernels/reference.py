"""Plain-PyTorch 2-simplicial attention: the naive O(N^3) definition and an exact, memory-bounded chunked version.

Both compute, for query i (math in docs/REFERENCE.md section 1, Roy et al. 2025):

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
_CHUNK_ELEMENTS = 1 << 21


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


def _chunk(qc, k1b, k2w, v1b, v2w, valid, scale):
    """One chunk of C queries, in the diagonal-offset form (docs/REFERENCE.md section 2) so the work is dense matmuls.

    qc [B, C, Hkv, G, D]; k1b, v1b [B, L, Hkv, D]: the L = C + w1 - 1 positions of the chunk's union k1 window;
    k2w, v2w [B, C, Hkv, D, w2]: row i's own k2 window; valid [C, w2, L] bool (slot t of row i pairs with k2 row
    i - w2 + 1 + t, key l of the block with position start - w1 + 1 + l)."""
    qk2 = qc.unsqueeze(-2) * k2w.transpose(-1, -2).unsqueeze(3)  # [B, C, Hkv, G, w2, D]
    b, c, h, g, w2, d = qk2.shape
    L = k1b.shape[1]
    a = qk2.permute(0, 2, 3, 1, 4, 5).reshape(b, h, g, c * w2, d)
    logits = torch.matmul(a, k1b.permute(0, 2, 3, 1).unsqueeze(2)) * scale  # [B, Hkv, G, C*w2, L]
    logits = logits.view(b, h, g, c, w2, L).masked_fill(~valid, float("-inf"))
    s = torch.softmax(logits.view(b, h, g, c, w2 * L), dim=-1).view(b, h, g, c * w2, L)
    sv1 = torch.matmul(s, v1b.permute(0, 2, 1, 3).unsqueeze(2)).view(b, h, g, c, w2, d)  # [B, Hkv, G, C, w2, D]
    out = (sv1 * v2w.permute(0, 2, 1, 4, 3).unsqueeze(2)).sum(-2)  # [B, Hkv, G, C, D]
    return out.permute(0, 3, 1, 2, 4)  # [B, C, Hkv, G, D]


def two_simplicial_attention_chunked(q, k1, k2, v1, v2, w1, w2, sm_scale=None, chunk_size=None):
    """Exact 2-simplicial attention in query chunks; autograd through PyTorch, memory ~ B*Hq*chunk*w2*(chunk+w1) per
    chunk, never N^3. Each chunk is two dense matmuls per k2 offset (the diagonal-offset form), fast on CPU.

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
    if chunk_size is None:  # logits of a chunk: B * Hq * C * w2 * (C + w1 - 1) elements
        per_row = b * hq * w2e
        chunk_size = max(1, int((-(w1e - 1) + math.sqrt((w1e - 1) ** 2 + 4 * _CHUNK_ELEMENTS / per_row)) / 2))
    chunk_size = int(min(max(1, chunk_size), n))

    qg = _group(q.to(ct), hkv)
    k1p = F.pad(k1.to(ct), (0, 0, 0, 0, w1e - 1, 0))  # position p at index p + w1 - 1
    v1p = F.pad(v1.to(ct), (0, 0, 0, 0, w1e - 1, 0))
    k2w, v2w = _windows(k2.to(ct), w2e), _windows(v2.to(ct), w2e)
    pos = torch.arange(n, device=q.device)
    ok2 = (pos[:, None] - w2e + 1 + torch.arange(w2e, device=q.device)[None, :]) >= 0  # [N, w2]: k2 row >= 0
    need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k1, k2, v1, v2))

    outs = []
    for s in range(0, n, chunk_size):
        e = min(n, s + chunk_size)
        j = s - w1e + 1 + torch.arange(e - s + w1e - 1, device=q.device)  # absolute k1 positions of the block
        lag = pos[s:e, None] - j[None, :]  # i - j
        ok1 = (lag >= 0) & (lag < w1e) & (j[None, :] >= 0)  # [C, L]
        valid = ok2[s:e, :, None] & ok1[:, None, :]  # [C, w2, L]
        args = (qg[:, s:e], k1p[:, s : e + w1e - 1], k2w[:, s:e], v1p[:, s : e + w1e - 1], v2w[:, s:e], valid, scale)
        if need_grad and e - s < n:
            outs.append(checkpoint(_chunk, *args, use_reentrant=False))
        else:
            outs.append(_chunk(*args))
    out = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
    return out.reshape(b, n, hq, d).to(q.dtype)
