"""A decoder-only language model with optional sliding-window 2-simplicial attention blocks.

Follows nanoGPT's model.py (karpathy/nanoGPT) in layout: norm, attention, MLP, Block, config, LM. Differences:
RMSNorm instead of LayerNorm, rotary position embeddings (Su et al. 2021) instead of learned positions, no biases,
and architecture `simplicial`, where every `simplicial_every`-th block uses 2-simplicial attention
(Roy et al. 2025, arXiv 2507.02754; docs/REFERENCE.md section 1) through `triton_kernels.two_simplicial_attention`.

The output head is TIED to the token embedding by default (`tie_embeddings=True`), as in nanoGPT.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from simplicial.config import ModelConfig  # noqa: F401 - its home is torch-free; LM's callers import it here
from triton_kernels import two_simplicial_attention


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rotary_tables(seq_len: int, head_dim: int, base: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)  # (T, hd/2)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, T, H, hd). Rotates pairs (even, odd halves) by position-dependent angles."""
    T = x.shape[1]
    cos, sin = cos[:T, None, :].to(x.dtype), sin[:T, None, :].to(x.dtype)  # (T, 1, hd/2)
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class CausalSelfAttention(nn.Module):
    """Dot-product attention through fused SDPA, with rotary embeddings and optional grouped-query heads."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv, self.hd = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * self.hd, bias=False)
        self.kv_proj = nn.Linear(cfg.d_model, 2 * self.n_kv * self.hd, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * self.hd, cfg.d_model, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.hd)  # (B, T, H, hd)
        k, v = self.kv_proj(x).view(B, T, 2, self.n_kv, self.hd).unbind(2)  # (B, T, Hkv, hd) each
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, T, hd)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_kv != self.n_heads)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class SimplicialAttention(nn.Module):
    """Sliding-window 2-simplicial attention: one query against pairs (k1_j, k2_k), trilinear logits, joint softmax,
    output sum_jk S_ijk (v1_j * v2_k). K2/V2 are the extra projections (K', V' in the paper). Rotary is applied to q
    and k1 only: the trilinear form is not rotation-invariant (docs/REFERENCE.md section 1 gives the determinant form),
    so k2 stays unrotated and carries content, while q.k1 carries relative position within the w1 window."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv, self.hd = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.w1, self.w2, self.backend = cfg.w1, cfg.w2, cfg.attn_backend
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * self.hd, bias=False)
        # one fused projection for k1, k2, v1, v2; the kernels take its (non-contiguous) slices directly
        self.kv_proj = nn.Linear(cfg.d_model, 4 * self.n_kv * self.hd, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * self.hd, cfg.d_model, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.hd)  # (B, T, H, hd)
        k1, k2, v1, v2 = self.kv_proj(x).view(B, T, 4, self.n_kv, self.hd).unbind(2)  # (B, T, Hkv, hd) each
        q, k1 = apply_rotary(q, cos, sin), apply_rotary(k1, cos, sin)
        y = two_simplicial_attention(q, k1, k2, v1, v2, self.w1, self.w2, backend=self.backend)  # (B, T, H, hd)
        return self.o_proj(y.reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model, bias=False)
        self.down = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(cfg.d_model), RMSNorm(cfg.d_model)
        self.attn = SimplicialAttention(cfg) if cfg.is_simplicial(layer) else CausalSelfAttention(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


class LM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.d_model % cfg.n_heads or cfg.head_dim % 2:
            raise ValueError(f"d_model={cfg.d_model} must split into n_heads={cfg.n_heads} heads of even size")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        cos, sin = rotary_tables(cfg.seq_len, cfg.head_dim, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        # GPT-2 style: scale the residual output projections by 1/sqrt(2 * n_layers)
        for name, p in self.named_parameters():
            if name.endswith(("o_proj.weight", "down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        if T > self.cfg.seq_len:
            raise ValueError(f"sequence of {T} tokens is longer than seq_len={self.cfg.seq_len}")
        x = self.embed(idx)  # (B, T, d)
        for block in self.blocks:
            x = block(x, self.rope_cos, self.rope_sin)
        logits = self.head(self.norm(x))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters, counted once even when tied. non_embedding=True subtracts the token embedding matrix
        (Chinchilla counts all parameters except input embeddings; with a tied head that matrix is the head too).
        `simplicial.counting.param_counts` computes the same numbers from the config alone (tested equal)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.embed.weight.numel() if non_embedding else n

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """One home for weight-decay policy: matrices decay, vectors (norm gains) do not (nanoGPT's rule)."""
        decay = [p for p in self.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.dim() < 2]
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
