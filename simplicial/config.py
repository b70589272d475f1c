"""The model's shape and architecture as a plain dataclass: no torch here, so grid expansion, parameter and FLOP
counts and a sweep file's validation run where torch is not installed (an analysis-only install)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 256
    seq_len: int = 256
    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    n_kv_heads: int | None = None  # grouped-query attention; None: n_heads
    arch: str = "dot"  # "dot" | "simplicial"
    simplicial_every: int = 4  # every k-th block is 2-simplicial (the paper: k = 4)
    w1: int = 512  # 2-simplicial windows (the paper: 512, 32)
    w2: int = 32
    attn_backend: str = "auto"  # for 2-simplicial blocks: auto | triton | torch
    tie_embeddings: bool = True
    mlp_ratio: int = 4
    rope_base: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    def is_simplicial(self, layer: int) -> bool:
        """The one place that decides which blocks are 2-simplicial: blocks k-1, 2k-1, ... (1-based: every k-th)."""
        return self.arch == "simplicial" and (layer + 1) % self.simplicial_every == 0

    def to_dict(self) -> dict:
        return asdict(self)
