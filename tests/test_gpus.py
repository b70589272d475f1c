"""Which GPUs the runs of a local sweep get (sweeps/gpus.py), and that run_local hands them to its jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from sweeps.gpus import GpuAllocationError, GpuPool, gpus_needed, submitit_gpu_parameters, visible_devices
from tests.conftest import REPO_ROOT, write_sweep


def test_visible_devices_honour_cuda_visible_devices():
    assert visible_devices(None, 3) == ["0", "1", "2"]  # unset: every GPU torch counts
    assert visible_devices("2,3", 2) == ["2", "3"]  # the launcher's own set, not 0 and 1
    assert visible_devices(" 5 , 7 ", 2) == ["5", "7"]
    assert visible_devices("", 0) == []
    assert visible_devices("4,9", 1) == ["4"]  # CUDA stops at the first entry it cannot use
    assert visible_devices(None, 0) == []


def test_gpus_needed_defaults_to_one_per_task_on_a_gpu_machine():
    assert gpus_needed({}, "auto", 2) == 1  # no resources section: one GPU, not submitit's none
    assert gpus_needed({"tasks_per_node": 2}, "auto", 2) == 2
    assert gpus_needed({}, "auto", 0) == 0  # no GPU on this machine: the CPU
    assert gpus_needed({"gpus_per_node": 0}, "auto", 4) == 0  # the CPU by request
    assert gpus_needed({"gpus_per_node": 2}, "auto", 4) == 2
    assert gpus_needed({}, "cpu", 4) == 0


@pytest.mark.parametrize("resources, device, n, words", [
    ({"gpus_per_node": 3}, "auto", 2, ["gpus_per_node", "needs 3", "shows 2"]),
    ({}, "cuda", 0, ["training.device is 'cuda'", "no CUDA device"]),
    ({"gpus_per_node": 0}, "cuda", 2, ["training.device is 'cuda'", "gpus_per_node is 0"]),
    ({"gpus_per_node": 1}, "cpu", 2, ["gpus_per_node is 1", "'cpu'"]),
])
def test_gpus_needed_refuses_what_the_machine_cannot_give(resources, device, n, words):
    with pytest.raises(GpuAllocationError) as e:
        gpus_needed(resources, device, n)
    assert all(w in str(e.value) for w in words), str(e.value)


def _wave(pool: GpuPool, n_runs: int, per_run: int, max_parallel: int) -> list[list[str]]:
    """The devices of the runs that start at once, as run_local starts them."""
    started = []
    for _ in range(min(n_runs, max_parallel)):
        gpus = pool.acquire(per_run)
        if gpus is None:
            break
        started.append(gpus)
    return started


def test_concurrent_runs_get_their_own_gpus_round_robin():
    pool = GpuPool(["0", "1", "2", "3"])
    assert _wave(pool, 8, 1, 8) == [["0"], ["1"], ["2"], ["3"]]  # 4 at once on 4 GPUs, the rest wait
    pool.release(["2"])
    assert pool.acquire(1) == ["2"]  # the freed GPU goes to the next run
    assert pool.acquire(1) is None


def test_max_parallel_below_the_gpu_count_leaves_gpus_free():
    pool = GpuPool(["0", "1", "2"])
    assert _wave(pool, 5, 1, 2) == [["0"], ["1"]]


def test_existing_cuda_visible_devices_are_what_is_handed_out():
    pool = GpuPool(visible_devices("6,2", 2))
    assert _wave(pool, 3, 1, 3) == [["6"], ["2"]]


def test_runs_per_gpu_packs_runs_spread_over_the_gpus():
    pool = GpuPool(["0", "1"], runs_per_gpu=3)
    assert pool.slots(1) == 6
    assert _wave(pool, 10, 1, 10) == [["0"], ["1"], ["0"], ["1"], ["0"], ["1"]]  # spread, then at most 3 each
    pool.release(["1"])
    assert pool.acquire(1) == ["1"]


def test_multi_gpu_runs_take_disjoint_sets():
    pool = GpuPool(["0", "1", "2", "3", "4"])
    assert pool.slots(2) == 2
    assert _wave(pool, 3, 2, 3) == [["0", "1"], ["2", "3"]]  # the third waits: one GPU is left
    pool.release(["0", "1"])
    assert pool.acquire(2) == ["0", "1"]


def test_cpu_runs_take_no_gpu_and_never_wait():
    pool = GpuPool([])
    assert _wave(pool, 3, 0, 3) == [[], [], []]
    with pytest.raises(ValueError, match="holds no run"):
        pool.release(["0"])


def test_bad_pool_settings_are_refused():
    with pytest.raises(GpuAllocationError, match="runs_per_gpu"):
        GpuPool(["0"], runs_per_gpu=0)
    with pytest.raises(GpuAllocationError, match="twice"):
        GpuPool(["1", "1"])


def test_submitit_parameters():
    assert submitit_gpu_parameters(["3", "5"]) == {"gpus_per_node": 2, "visible_gpus": (3, 5)}
    assert submitit_gpu_parameters([]) == {"gpus_per_node": 0, "visible_gpus": ()}
    with pytest.raises(GpuAllocationError, match="UUID"):
        submitit_gpu_parameters(["GPU-8d1f2c1e"])


def test_run_local_hands_each_concurrent_run_its_own_devices(tmp_path):
    """Two runs at once with a (pretend) visible set 3, 5 and no resources section: each job's CUDA_VISIBLE_DEVICES
    is its own device, not submitit's default ('' without gpus_per_node, 0 for everyone with it). On this machine
    no such GPU exists, so each run falls back to the CPU and says so in result.json."""
    from sweeps.executors import run_local
    from sweeps.grid import expand
    from sweeps.spec import load_sweep

    spec = load_sweep(write_sweep(tmp_path, budgets="2560"))
    runs = [r for r in expand(spec) if r.arch == "dot"]  # two sizes
    lines = []
    outcome = run_local(runs, spec.sweep_dir, max_parallel=2, log=lines.append, poll_s=0.2, devices=["3", "5"])
    assert set(outcome.values()) == {"done"}, lines
    results = [json.loads((r.run_dir / "result.json").read_text()) for r in runs]
    assert sorted(r["cuda_visible_devices"] for r in results) == ["3", "5"]
    if not torch.cuda.is_available():
        assert all("training on the CPU" in r["device_note"] and r["device"].startswith("cpu") for r in results)
    assert any("GPU 3" in l for l in lines) and any("GPU 5" in l for l in lines), lines
    assert any("at most 2 run(s) at once" in l for l in lines), lines


def test_run_local_without_gpus_says_the_runs_use_the_cpu(tmp_path):
    from sweeps.executors import run_local
    from sweeps.grid import expand
    from sweeps.spec import load_sweep

    spec = load_sweep(write_sweep(tmp_path, budgets="2560"))
    run = [r for r in expand(spec) if r.arch == "dot"][0]
    lines = []
    assert run_local([run], spec.sweep_dir, max_parallel=1, log=lines.append, poll_s=0.2, devices=[]) == {
        run.run_id: "done"}
    assert "no GPU visible" in lines[0] and "CPU" in lines[0], lines
    result = json.loads((run.run_dir / "result.json").read_text())
    assert result["cuda_visible_devices"] == "" and "training on the CPU" in result["device_note"]
    assert any("on cpu" in l for l in lines), lines  # the finished line names the device


def test_launcher_refuses_more_gpus_than_the_machine_has(tmp_path):
    n = torch.cuda.device_count()
    path = write_sweep(tmp_path, budgets="2560", extra=f"""\
        executor:
          name: local
          resources: {{gpus_per_node: {n + 1}}}
        """)
    text = path.read_text()
    path.write_text(text.replace("executor:\n  name: local\n  max_parallel: 2\n", "", 1))
    out = subprocess.run([sys.executable, "launch.py", str(path)], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "gpus_per_node" in out.stderr and f"needs {n + 1}" in out.stderr and "sweep.yaml" in out.stderr
    assert not (tmp_path / "out" / "tiny" / "runs").exists()  # refused before any run started


@pytest.mark.gpu
@pytest.mark.timeout(600)
def test_local_sweep_without_resources_trains_on_the_gpu(tmp_path):
    """The issue's case: a sweep with no resources section on a GPU machine. Both runs must train on a GPU (submitit
    alone would give them CUDA_VISIBLE_DEVICES='' and the CPU)."""
    path = tmp_path / "sweep.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: gpu-local
        output: {tmp_path / 'out'}
        architectures: {{dot: {{type: dot}}}}
        sizes:
          a: {{n_layers: 2, d_model: 64, n_heads: 2}}
          b: {{n_layers: 2, d_model: 128, n_heads: 2}}
        budgets: {{tokens: [16384]}}
        data: {{source: python-stdlib, max_bytes: 400000}}
        training: {{seq_len: 64, batch_tokens: 1024, micro_batch_size: 16, eval_every: 0, eval_tokens: 1024}}
        executor: {{name: local, max_parallel: 2}}
        """))
    out = subprocess.run([sys.executable, "launch.py", str(path)], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=540, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    print(out.stdout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sorted((tmp_path / "out" / "gpu-local" / "runs").glob("*/result.json"))]
    assert len(results) == 2 and all(r["status"] == "done" for r in results)
    name = torch.cuda.get_device_name(0)
    assert all(r["device"] == name and r["device_note"] is None for r in results), results
    visible = visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count())
    assert all(r["cuda_visible_devices"] in visible for r in results)
    assert f"on {name}" in out.stdout
