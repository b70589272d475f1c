"""Run ids, grid expansion, parameter and FLOP counts (against hand-computed values and the built model)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from simplicial.counting import flops_per_token, param_counts, simplicial_triples
from simplicial.model import LM, ModelConfig
from simplicial.sizes import shape_for_params
from sweeps import expand, parse_sweep
from tests.conftest import REPO_ROOT, TINY_SWEEP, write_sweep

import yaml

DOT = ModelConfig(vocab_size=256, seq_len=128, n_layers=2, d_model=64, n_heads=2)
SIMP = dataclasses.replace(DOT, arch="simplicial", simplicial_every=2, w1=32, w2=8)


def test_param_counts_by_hand():
    # embedding 256*64; per block: q,o 2*64*64 + k,v 2*64*64 + MLP 2*64*256 + 2 norms*64; final norm 64
    per_block = 4 * 64 * 64 + 2 * 64 * 256 + 2 * 64
    assert param_counts(DOT) == {"params_with_embeddings": 256 * 64 + 2 * per_block + 64,
                                 "params_non_embedding": 2 * per_block + 64}
    # the 2-simplicial block (the 2nd of 2) adds K', V' projections: 2 * 64 * 64
    assert param_counts(SIMP)["params_non_embedding"] == 2 * per_block + 64 + 2 * 64 * 64


@pytest.mark.parametrize("cfg", [DOT, SIMP, dataclasses.replace(SIMP, tie_embeddings=False, n_kv_heads=1),
                                 dataclasses.replace(DOT, n_layers=3, d_model=96, n_heads=3)])
def test_param_counts_match_built_model(cfg):
    model = LM(cfg)
    counts = param_counts(cfg)
    assert counts["params_with_embeddings"] == model.num_params(non_embedding=False)
    assert counts["params_non_embedding"] == model.num_params(non_embedding=True)


def test_simplicial_triples_by_hand():
    # n = i+1: n<=8 -> n^2 (sum 204); 9..32 -> 8n (8*492); 33..128 -> 32*8 (96 positions)
    assert simplicial_triples(128, 32, 8) == 204 + 8 * 492 + 96 * 256
    assert simplicial_triples(5, 1, 1) == 5
    assert simplicial_triples(4, 100, 100) == 1 + 4 + 9 + 16  # windows longer than the sequence


def test_flops_per_token_by_hand():
    dense_layer = 2 * (64 * 64 * 4 + 2 * 64 * 256)  # q, k, v, o + MLP; 2 FLOPs per multiply-add
    head = 2 * 64 * 256
    dot_attn = 4 * 64 * 129 / 2  # QK^T and PV over the average causal context (T+1)/2
    f = flops_per_token(DOT)
    assert f["forward"] == pytest.approx(2 * dense_layer + head + 2 * dot_attn)
    assert f["train"] == pytest.approx(3 * f["forward"])
    s = flops_per_token(SIMP)
    simp_attn = 4 * 64 * simplicial_triples(128, 32, 8) / 128
    assert s["forward"] == pytest.approx(2 * dense_layer + 2 * 2 * 64 * 64 + head + dot_attn + simp_attn)


def test_shape_family_hits_target():
    base = ModelConfig(vocab_size=256, seq_len=128)
    for target in (1e5, 1e6, 1e7):
        L, d, H = shape_for_params(target, base)
        got = param_counts(dataclasses.replace(base, n_layers=L, d_model=d, n_heads=H))["params_non_embedding"]
        assert 0.4 < got / target < 2.5, (target, L, d, H, got)
        assert d % H == 0 and d == 64 * L


def _spec(**training):
    raw = yaml.safe_load(TINY_SWEEP.format(output="/tmp/x", executor="local", budgets="2560, 5120"))
    raw["training"].update(training)
    return parse_sweep(raw)


def test_run_ids_stable_and_sensitive():
    ids = [r.run_id for r in expand(_spec())]
    assert len(ids) == 2 * 2 * 2 and len(set(ids)) == len(ids)
    assert ids == [r.run_id for r in expand(_spec())]
    assert ids == [r.run_id for r in expand(_spec(threads=1, log_every=7, checkpoint_every=3))]  # not identity
    changed = [r.run_id for r in expand(_spec(lr=1e-3))]
    assert not set(changed) & set(ids)
    assert ids[0].startswith("dot-a-2.56ktok-s0-")


def test_run_ids_same_in_another_process(tmp_path):
    path = write_sweep(tmp_path)
    code = "from sweeps import load_sweep, expand; import sys; print(' '.join(r.run_id for r in expand(load_sweep(sys.argv[1]))))"
    outs = {subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=REPO_ROOT,
                           env={**os.environ, "PYTHONHASHSEED": seed}, check=True).stdout for seed in ("1", "2")}
    assert len(outs) == 1


def test_flop_budgets_equalise_compute():
    raw = yaml.safe_load(TINY_SWEEP.format(output="/tmp/x", executor="local", budgets="1"))
    raw["budgets"] = {"flops": [1e10]}
    runs = expand(parse_sweep(raw))
    for r in runs:  # whole batches: within one batch of the budget
        per_batch = r.flops / r.steps
        assert abs(r.flops - 1e10) <= per_batch
