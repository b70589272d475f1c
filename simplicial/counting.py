"""Parameter and FLOP counts from a ModelConfig alone (no model is built), so a dry run can print them.

Conventions (say them wherever a number is shown):
- Parameters: `params_non_embedding` = all parameters except the token-embedding matrix (Chinchilla's N excludes
  input embeddings; with the default tied head that matrix is also the output head). `params_with_embeddings` = all.
- FLOPs: a multiply-add is 2 FLOPs. Forward FLOPs per token = 2 x (weights used in matmuls, the head included)
  + attention: dot-product causal attention 4 * d_attn * (average context) per layer (QK^T and PV), 2-simplicial
  attention 4 * d_attn * P / T per layer with P the exact number of valid (i, j, k) triples (the tensor-core
  convention of docs/REFERENCE.md section 2; the paper's 6*n*w1*w2 also counts the element-wise product).
  Training FLOPs per token = 3 x forward (backward = 2 x forward), as in Kaplan et al. 2020 / Chinchilla's 6N.
"""

from __future__ import annotations

from simplicial.config import ModelConfig


def param_counts(cfg: ModelConfig) -> dict[str, int]:
    """Exact parameter counts of `LM(cfg)`; tests check them against the built model."""
    d, hd, H, Hkv = cfg.d_model, cfg.head_dim, cfg.n_heads, cfg.kv_heads
    embed = cfg.vocab_size * d
    head = 0 if cfg.tie_embeddings else cfg.vocab_size * d
    mlp = 2 * d * cfg.mlp_ratio * d
    total = embed + head + d  # final norm
    for layer in range(cfg.n_layers):
        kv_projections = 4 if cfg.is_simplicial(layer) else 2  # k1, k2, v1, v2 vs k, v
        attn = d * H * hd + kv_projections * d * Hkv * hd + H * hd * d
        total += attn + mlp + 2 * d  # two RMSNorm gains
    return {"params_with_embeddings": total, "params_non_embedding": total - embed}


def simplicial_triples(seq_len: int, w1: int, w2: int) -> int:
    """P = sum over query positions i < T of |window1(i)| * |window2(i)| = sum min(i+1, w1) * min(i+1, w2)."""
    return sum(min(i + 1, w1) * min(i + 1, w2) for i in range(seq_len))


def flops_per_token(cfg: ModelConfig) -> dict[str, float]:
    """Forward and training FLOPs per token at full sequence length `cfg.seq_len`, attention terms included."""
    d, hd, H, Hkv, T = cfg.d_model, cfg.head_dim, cfg.n_heads, cfg.kv_heads, cfg.seq_len
    d_attn = H * hd
    dense = 0.0
    attention = 0.0
    for layer in range(cfg.n_layers):
        kv_projections = 4 if cfg.is_simplicial(layer) else 2
        dense += 2 * (d * d_attn + kv_projections * d * Hkv * hd + d_attn * d + 2 * d * cfg.mlp_ratio * d)
        if cfg.is_simplicial(layer):
            attention += 4 * d_attn * simplicial_triples(T, cfg.w1, cfg.w2) / T
        else:
            attention += 4 * d_attn * (T + 1) / 2  # causal: average context (T+1)/2
    dense += 2 * d * cfg.vocab_size  # output head (logits)
    forward = dense + attention
    return {"forward": forward, "attention_forward": attention, "train": 3.0 * forward}
