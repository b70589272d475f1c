"""The kernel benchmark's variant sweep times the config its label names (no flag inherited from the default)."""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import bench_attention as bench  # noqa: E402
from triton_kernels import simplicial_attention as sa  # noqa: E402


@pytest.mark.parametrize("kind", bench.SWEEP_VARIANTS)
def test_sweep_variant_replaces_the_whole_default_config(monkeypatch, kind):
    for d, variants in bench.SWEEP_VARIANTS[kind].items():
        for v, w1 in ((v, w1) for v in variants for w1 in (128, 512, 1024)):
            monkeypatch.setattr(sa, "CONFIG_OVERRIDE", {kind: dict(v)})
            cfg = sa._config(kind, d, torch.bfloat16, w1)
            assert {k: cfg.get(k) for k in v} == v, (kind, d, w1, bench.variant_label(v))
            assert not any(cfg.get(k) for k in bench._FLAGS_OFF if not v.get(k)), (kind, d, cfg)


def test_variant_rejects_an_unknown_flag():
    with pytest.raises(ValueError, match="unknown flags.*'TMAA'"):
        bench.variant(64, 64, 4, 3, TMAA=True)
    assert bench.variant_label(bench.variant(64, 64, 4, 3, maxnreg=168, TMA=True)) == "64x64 w4 s3 TMA maxnreg=168"


@pytest.mark.parametrize("text,message", [("8192,512", "expected N,W1,W2"), ("8192,512,x", "expected N,W1,W2"),
                                          ("8192,0,32", "must be positive")])
def test_sweep_shape_errors_name_the_value(capsys, text, message):
    with pytest.raises(SystemExit):
        bench.main(["--sweep", "--shape", text])
    err = capsys.readouterr().err
    assert message in err and repr(text) in err


def test_sdpa_equal_length_matches_the_recorded_grid():
    # N_eq^2 / 2 = N * w1 * w2, to a multiple of 128: the N_eq column of benchmarks/results/*-grid.md
    assert [bench.sdpa_equal_length(n, w1, w2) for n, w1, w2 in
            ((8192, 512, 32), (2048, 512, 32), (16384, 1024, 16), (16384, 128, 128))] == [16384, 8192, 23168, 23168]
    assert bench.sdpa_flops(16384, 64) == 4 * 4 * 8 * 64 * 16384 * 16385 / 2
