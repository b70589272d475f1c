"""The ceiling benchmark's ablation flags (benchmarks/triton_flash_ceiling.py) on CPU (TRITON_INTERPRET=1): every flag
combination against the float64 model of the ablated math, flags-off and MASK_PERIOD-only against SDPA."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

# On CPU the benchmark's kernels run in Triton's interpreter, which tests/conftest.py selects before this import.
_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "triton_flash_ceiling.py"
_spec = importlib.util.spec_from_file_location("triton_flash_ceiling", _PATH)
ceiling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ceiling)


def test_ceiling_check():
    ceiling.check()


def test_ceiling_ablation_check():
    ceiling.check_ablation()


def test_ceiling_mask_is_not_vacuous():
    """With a bound below N (66 < 70; every row, padding too, keeps a key) the same mask code drops keys: the
    ablation's always-true mask is a real compare, not dead code."""
    g = torch.Generator(device="cpu").manual_seed(2)
    q, k, v = (torch.randn(1, 1, 70, 16, generator=g) for _ in range(3))
    out = torch.empty_like(q)
    ceiling._causal_attention_fwd[(5, 1)](q, k, v, out, v, k, None, None, None, None, 70, ceiling._LOG2E / 4.0, 66,
                                          HEAD_DIM=16, BLOCK_M=16, BLOCK_N=16, TMA=False, MASK_PERIOD=3)
    plain = ceiling.causal_attention(q, k, v, 16, 16, 1, 1, False)
    assert torch.isfinite(out).all() and not torch.equal(out, plain)
