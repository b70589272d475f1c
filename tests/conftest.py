"""Shared pytest set-up: GPU tests skip without CUDA; tiny sweep files for the orchestration tests."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

# Triton picks its CPU interpreter when a kernel is decorated, i.e. when a module defining kernels is first imported.
# Test modules are all imported at collection, in file order, so choose it here, before any of them (a module that
# imports the kernels before tests/test_kernels.py sets it would otherwise get GPU-only kernels on a CPU machine).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_configure(config):
    from tests.slurm_utils import load_slurm_env

    load_slurm_env()  # SLURM_CONF of the local test cluster, for launcher code that shells out to sbatch/sacct


def pytest_collection_modifyitems(config, items):
    from tests.slurm_utils import SKIP_MESSAGE, slurm_available

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU: run `make gpu-test` on the device machine")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
    if any(item.get_closest_marker("slurm") for item in items) and not slurm_available():
        for item in items:
            if item.get_closest_marker("slurm"):
                item.add_marker(pytest.mark.skip(reason=SKIP_MESSAGE))


TINY_SWEEP = """\
name: tiny
output: {output}
architectures:
  dot: {{type: dot}}
  simplicial: {{type: simplicial, every: 2, w1: 8, w2: 4}}
sizes:
  a: {{n_layers: 2, d_model: 32, n_heads: 2}}
  b: {{n_layers: 2, d_model: 48, n_heads: 2}}
budgets:
  tokens: [{budgets}]
data:
  source: python-stdlib
  max_bytes: 400000
training:
  seq_len: 32
  batch_tokens: 256
  micro_batch_size: 4
  lr: 3.0e-3
  eval_every: 0
  eval_tokens: 1024
  log_every: 2
  checkpoint_every: 5
executor:
  name: {executor}
  max_parallel: 2
"""


def write_sweep(folder: Path, *, executor: str = "local", budgets: str = "2560, 5120", extra: str = "") -> Path:
    path = Path(folder) / "sweep.yaml"
    path.write_text(TINY_SWEEP.format(output=str(Path(folder) / "out"), executor=executor, budgets=budgets)
                    + textwrap.dedent(extra))
    return path


@pytest.fixture
def tiny_sweep(tmp_path) -> Path:
    return write_sweep(tmp_path)
