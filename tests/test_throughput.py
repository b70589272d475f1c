"""The local executor's thread budget and measured-throughput ETA (sweeps/throughput.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sweeps.throughput import Throughput, share_threads


@dataclass
class Run:
    run_id: str
    arch: str
    size: str
    tokens: int
    flops: float
    training: dict


def _run(run_id, arch, size, tokens, fpt):
    return Run(run_id, arch, size, tokens, tokens * fpt, {"batch_tokens": 100})


def test_share_threads_gives_every_core_away():
    assert share_threads(2, {"a": 5.0}) == {"a": 2}
    assert share_threads(4, {"a": 1.0, "b": 9.0, "c": 3.0}) == {"b": 2, "c": 1, "a": 1}
    assert share_threads(1, {"a": 1.0, "b": 2.0}) == {"b": 1, "a": 1}  # at least one each
    assert share_threads(8, {}) == {}


def test_eta_from_measured_pace_not_flops():
    """Two kinds with equal FLOPs per token, one 4x slower per token on this machine: the ETA follows the pace, and
    what a run costs beyond its training proper (start-up, final evaluation, exit) is measured apart."""
    tp = Throughput(budget=2)
    fast, slow = _run("f", "dot", "s", 1000, 1.0), _run("s", "simplicial", "s", 1000, 1.0)
    tp.start(fast, 1, now=0.0)
    tp.start(slow, 1, now=0.0)
    assert tp.eta([], now=1.0) is None  # nothing measured yet
    tp.progress("f", 100, now=4.0)  # 2 s of start-up, then 50 tokens/s (0.02 core-s per token)
    tp.progress("s", 25, now=4.0)  # ... and 12.5 tokens/s (0.08 core-s per token)
    tp.progress("f", 500, now=12.0)
    tp.progress("s", 125, now=12.0)
    # left: fast 500 x 0.02 = 10 core-s, slow 875 x 0.08 = 70 core-s; 2 threads -> 40 s
    assert tp.eta([], now=12.0) == pytest.approx(40.0)
    tp.progress("f", 900, now=20.0)
    tp.progress("s", 225, now=20.0)
    tp.finish("f", now=24.0)  # 2 s of evaluation and exit after its last step
    assert tp.overhead() == pytest.approx(4.0)  # 24 core-s less 1000 x 0.02
    # a queued run of each kind: overhead + its measured cost; an unmeasured size of a measured arch scales by
    # FLOPs per token (simplicial m: twice the FLOPs per token of simplicial s)
    queued = [_run("f2", "dot", "s", 1000, 1.0), _run("s2", "simplicial", "m", 1000, 2.0)]
    assert tp.eta(queued, now=24.0) == pytest.approx((775 * 0.08 + (4 + 1000 * 0.02) + (4 + 1000 * 0.08 * 2)) / 2)


def test_a_run_seen_once_is_forecast_from_its_kind_not_its_start_up():
    """One look at a run just started mixes its start-up into its pace (5x too slow here); until a second look it
    is forecast from the measured runs (start-up + tokens x pace, scaled by FLOPs per token)."""
    tp = Throughput(budget=2)
    tp.start(_run("a", "dot", "s", 1000, 1.0), 1, now=0.0)
    tp.progress("a", 100, now=4.0)
    tp.progress("a", 500, now=12.0)  # 0.02 core-s per token after 2 s of start-up
    tp.start(_run("b", "dot", "xs", 1000, 0.5), 1, now=10.0)
    tp.progress("b", 20, now=12.0)  # 2 s in, 20 tokens: its start-up
    assert tp.eta([], now=12.0) == pytest.approx((500 * 0.02 + 980 * 0.01) / 2)
    tp.progress("b", 220, now=14.0)  # a second look: its own pace, 0.01 core-s per token
    tp.progress("a", 600, now=14.0)
    assert tp.eta([], now=14.0) == pytest.approx((400 * 0.02 + 780 * 0.01) / 2)


def test_threads_count_in_the_cost_and_resumed_steps_do_not():
    tp = Throughput(budget=2)
    run = _run("r", "dot", "s", 1000, 1.0)
    tp.start(run, 1, now=0.0, base_step=4)  # resumed at step 4 of batch 100: 600 tokens left
    tp.progress("r", 400, now=2.0)  # nothing new yet
    tp.set_threads("r", 2, now=10.0)  # 10 core-s so far
    tp.progress("r", 500, now=10.0)  # the first new step seen
    tp.progress("r", 700, now=15.0)  # 200 more tokens for 5 s x 2 threads = 10 core-s: 0.05 per token
    assert tp.left_tokens("r") == 300
    assert tp.eta([], now=15.0) == pytest.approx(300 * 0.05 / 2)
    tp.finish("r", now=20.0)
    assert tp.left_tokens("r") == 0 and tp.eta([], now=20.0) == 0.0


def test_trainer_takes_the_threads_file(tmp_path):
    import torch

    from simplicial.train import train_run
    from sweeps import expand, load_sweep
    from tests.conftest import write_sweep

    run = expand(load_sweep(write_sweep(tmp_path, budgets="2560"), ["training.threads=1"]))[0]
    run.paths.root.mkdir(parents=True)
    run.paths.threads.write_text("2\n")
    before = torch.get_num_threads()
    try:
        assert train_run(run)["status"] == "done"
        assert torch.get_num_threads() == 2  # set to 1 at the start, then the file's 2 at the first log step
    finally:
        torch.set_num_threads(before)


def test_freed_cores_go_to_the_last_run(tmp_path):
    import os

    from sweeps import expand, load_sweep
    from sweeps.executors import run_local
    from tests.slurm_utils import single_run_sweep

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 cores")
    path = single_run_sweep(tmp_path, executor="local", budgets="2560, 51200")  # 10 and 200 steps
    runs = expand(load_sweep(path, ["executor.max_parallel=2"]))
    lines = []
    outcome = run_local(runs, load_sweep(path).sweep_dir, max_parallel=2, log=lines.append)
    assert set(outcome.values()) == {"done"}, lines
    long_run = max(runs, key=lambda r: r.tokens)
    cores = len(os.sched_getaffinity(0))
    assert long_run.paths.threads.read_text().strip() == str(cores), lines  # it started with cores // 2
    assert any(line.startswith(f"  threads {long_run.run_id}: {cores}") for line in lines), lines
    assert all("ETA ?" not in line for line in lines if line.startswith("[2/2]")), lines
