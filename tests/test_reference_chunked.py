"""The chunked PyTorch 2-simplicial attention (the model's CPU path) against the naive O(N^3) einsum definition:
values and all five gradients, in float64, on fresh random inputs, over chunk sizes that do and do not divide N."""

from __future__ import annotations

import pytest
import torch

from triton_kernels.reference import two_simplicial_attention_chunked, two_simplicial_attention_naive


@pytest.mark.parametrize("n, w1, w2, hq, hkv, d, chunk", [
    (13, 5, 3, 2, 2, 8, 4),      # chunk does not divide N
    (16, 4, 8, 4, 2, 16, 16),    # w1 < w2, GQA 2, one chunk
    (9, 32, 32, 2, 1, 4, 2),     # windows longer than N, GQA 2
    (11, 1, 1, 1, 1, 8, 3),      # one pair per query
])
def test_chunked_matches_naive_values_and_grads(n, w1, w2, hq, hkv, d, chunk):
    g = torch.Generator().manual_seed(n * 1000 + w1 * 10 + w2)
    shapes = [(2, n, hq, d)] + [(2, n, hkv, d)] * 4
    inputs = [torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True) for s in shapes]
    dout = torch.randn(2, n, hq, d, generator=g, dtype=torch.float64)

    ref = two_simplicial_attention_naive(*inputs, w1, w2)
    ref_grads = torch.autograd.grad(ref, inputs, dout)
    out = two_simplicial_attention_chunked(*inputs, w1, w2, chunk_size=chunk)
    grads = torch.autograd.grad(out, inputs, dout)

    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    for name, a, b in zip(("q", "k1", "k2", "v1", "v2"), grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=lambda m: f"d{name}: {m}")


def test_naive_matches_definition_by_loops():
    """The naive reference itself against explicit loops over (i, j, k) for one head: guards the guard."""
    g = torch.Generator().manual_seed(0)
    n, d, w1, w2 = 6, 3, 3, 2
    q, k1, k2, v1, v2 = (torch.randn(1, n, 1, d, generator=g, dtype=torch.float64) for _ in range(5))
    out = two_simplicial_attention_naive(q, k1, k2, v1, v2, w1, w2)
    scale = d ** -0.5
    for i in range(n):
        pairs = [(j, k) for j in range(max(0, i - w1 + 1), i + 1) for k in range(max(0, i - w2 + 1), i + 1)]
        logits = torch.stack([scale * (q[0, i, 0] * k1[0, j, 0] * k2[0, k, 0]).sum() for j, k in pairs])
        p = torch.softmax(logits, 0)
        expect = sum(p[t] * v1[0, j, 0] * v2[0, k, 0] for t, (j, k) in enumerate(pairs))
        torch.testing.assert_close(out[0, i, 0], expect)
