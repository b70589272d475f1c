"""The trainer: the loss goes down, results are complete, a killed run resumes exactly, divergence is recorded."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from simplicial.data import load_tokens, step_starts
from simplicial.train import train_run
from sweeps import expand, load_sweep
from tests.conftest import REPO_ROOT, write_sweep


def _run(tmp_path, index=0, budgets="5120", **training):
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = load_sweep(write_sweep(tmp_path, budgets=budgets))
    run = expand(spec)[index]
    return dataclasses.replace(run, training={**run.training, "threads": 1, **training})


def test_training_lowers_loss_and_writes_result(tmp_path):
    run = _run(tmp_path, budgets="12800", lr=1e-2)  # 50 steps
    result = train_run(run)
    assert result["status"] == "done"
    assert result["val_loss"] < 0.7 * math.log(256), result["val_loss"]  # uniform guess: ln 256
    on_disk = json.loads((run.run_dir / "result.json").read_text())
    for key in ("train_loss", "val_loss", "params", "params_with_embeddings", "params_non_embedding", "tokens",
                "flops", "wall_time_s", "tokens_per_s", "versions", "status", "finished_at"):
        assert on_disk[key] is not None, key
    assert on_disk["tokens"] == 12800 and on_disk["steps"] == 50
    assert on_disk["params_with_embeddings"] - on_disk["params_non_embedding"] == 256 * 32
    rows = [json.loads(l) for l in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 50 and "val_loss" in rows[-1]
    assert rows[0]["train_loss"] > rows[-1]["train_loss"]
    assert json.loads((run.run_dir / "config.json").read_text())["run_id"] == run.run_id


def test_simplicial_model_trains(tmp_path):
    run = _run(tmp_path, index=2, budgets="2560")  # simplicial, size a (grid order: arch, size, budget)
    assert run.arch == "simplicial"
    result = train_run(run)
    assert result["status"] == "done" and result["val_loss"] < math.log(256)


def test_batches_do_not_depend_on_split():
    a = step_starts(10_000, 32, 8, seed=3, step=7)
    assert np.array_equal(a, step_starts(10_000, 32, 8, seed=3, step=7))
    assert not np.array_equal(a, step_starts(10_000, 32, 8, seed=3, step=8))


def test_divergence_is_recorded_not_raised(tmp_path):
    run = _run(tmp_path, budgets="2560", lr=1e6, grad_clip=0.0)
    result = train_run(run)
    assert result["status"] == "diverged", result
    assert "loss is" in result["error"]
    assert json.loads((run.run_dir / "result.json").read_text())["status"] == "diverged"


def test_failure_writes_result_with_traceback(tmp_path):
    run = _run(tmp_path, budgets="2560")
    run = dataclasses.replace(run, data={**run.data, "source": "text", "path": str(tmp_path / "nope.txt")})
    with pytest.raises(Exception, match="no such file"):
        train_run(run)
    result = json.loads((run.run_dir / "result.json").read_text())
    assert result["status"] == "failed" and "Traceback" in result["error"] and "nope.txt" in result["error"]


def test_killed_run_resumes_from_checkpoint_bit_exact(tmp_path):
    """SIGKILL a run after its first checkpoint; the re-run resumes there and ends with the uninterrupted loss."""
    reference = train_run(_run(tmp_path / "ref", budgets="25600"))  # 100 steps, checkpoint every 5

    run = _run(tmp_path / "killed", budgets="25600")
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "config.json").write_text(json.dumps(run.to_dict()))
    cmd = [sys.executable, "-m", "simplicial.train", str(run.run_dir / "config.json")]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (run.run_dir / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run.run_dir / "result.json").exists(), "killed too late: the run had finished"
    assert (run.run_dir / "checkpoint.pt").exists()

    out = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    step = int(out.stdout.split("resuming from step ")[1].split("/")[0])
    assert 0 < step < 100
    result = json.loads((run.run_dir / "result.json").read_text())
    assert result["status"] == "done" and result["steps"] == 100
    assert result["val_loss"] == reference["val_loss"] and result["train_loss"] == reference["train_loss"]
    steps = [json.loads(l)["step"] for l in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(set(steps)), steps  # no duplicated rows after resume


# ---- issue 28: checkpoints that cannot be trusted, files teammates cannot read ------------------------------------


def test_file_system_error_keeps_the_checkpoint(tmp_path, monkeypatch):
    """An OSError while reading (the file system, not the file) must not rename a good checkpoint to .bad."""
    from simplicial import checkpoint

    path = tmp_path / "checkpoint.pt"
    torch.save({"step": 3}, path)

    def flaky(_):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(checkpoint, "_load", flaky)
    with pytest.raises(OSError):
        checkpoint.load_checkpoint(path, log=lambda _: None)
    assert path.exists() and not (tmp_path / "checkpoint.pt.bad").exists()


def test_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    """A truncated checkpoint.pt used to fail every re-launch with torch's zip error, naming no file."""
    run = _run(tmp_path, budgets="5120")  # 20 steps, checkpoint every 5
    ref = train_run(run)
    ckpt = run.run_dir / "checkpoint.pt"
    prev = run.run_dir / "checkpoint.prev.pt"
    assert ckpt.exists() and prev.exists()
    prev_step = torch.load(prev, weights_only=True)["step"]
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # truncated
    (run.run_dir / "result.json").unlink()
    capsys.readouterr()
    again = train_run(run)
    out = capsys.readouterr().out
    assert f"checkpoint {ckpt} is unreadable" in out and "moved to checkpoint.pt.bad" in out, out
    assert f"resuming from the previous checkpoint {prev}" in out and f"resuming from step {prev_step}/20" in out
    assert again["status"] == "done" and again["val_loss"] == ref["val_loss"]  # resumed bit-exact from the previous
    notes = json.loads((run.run_dir / "result.json").read_text())["checkpoint_notes"]
    assert any(f"checkpoint {ckpt} is unreadable" in n for n in notes), notes


def test_unreadable_checkpoints_restart_the_run_and_say_so(tmp_path, capsys):
    run = _run(tmp_path, budgets="2560")
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "checkpoint.pt").write_bytes(b"PK\x03\x04 not a zip")
    result = train_run(run)
    out = capsys.readouterr().out
    assert "is unreadable" in out and "the run restarts from step 0" in out, out
    assert result["status"] == "done" and result["steps"] == 10


def test_planted_checkpoint_cannot_run_code(tmp_path, capsys):
    """checkpoint.pt was unpickled with weights_only=False: a planted one ran a command."""
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    run = _run(tmp_path, budgets="2560")
    run.run_dir.mkdir(parents=True)
    with open(run.run_dir / "checkpoint.pt", "wb") as f:
        pickle.dump({"run_id": run.run_id, "x": Evil()}, f)
    result = train_run(run)
    assert not marker.exists()
    assert result["status"] == "done" and "is unreadable" in capsys.readouterr().out
    state = torch.load(run.run_dir / "checkpoint.pt", weights_only=True)  # our own checkpoints are plain
    assert state["run_id"] == run.run_id and state["step"] == 5


def test_written_files_honour_the_umask(tmp_path):
    """mkstemp made result.json, config.json, checkpoints and results.csv 0600: unreadable to teammates."""
    old = os.umask(0o022)
    try:
        run = _run(tmp_path, budgets="2560")
        train_run(run)
        from simplicial.checkpoint import write_json_atomic

        write_json_atomic(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(old)
    for p in [*run.run_dir.iterdir(), tmp_path / "x.json"]:
        assert p.stat().st_mode & 0o777 == 0o644, (p, oct(p.stat().st_mode))

def test_prefetched_batches_equal_the_steps_own_batches():
    """The prefetcher builds ahead, but step s always gets the batch of (seed, s), also after a jump (resume)."""
    from simplicial.data import windows
    from simplicial.prefetch import BatchPrefetcher

    tokens = np.arange(5000, dtype=np.uint16)
    slices = [slice(0, 3), slice(3, 6)]
    starts_of = lambda step: step_starts(len(tokens), 16, 6, seed=1, step=step)  # noqa: E731
    with BatchPrefetcher(tokens, 16, starts_of, slices, total_steps=20, pin=False) as pf:
        for step in [0, 1, 2, 7, 8, 3, 19]:
            got = pf.get(step)
            want = [windows(tokens, starts_of(step)[sl], 16) for sl in slices]
            assert len(got) == 2 and all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(got, want))
        assert not pf._pending  # nothing is built past the last step


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 2], ids=["dot", "simplicial"])
def test_compiled_training_matches_eager(tmp_path, index):
    """training.compile: the same run through torch.compile gives eager's losses (CPU: float32, tight)."""
    eager = train_run(_run(tmp_path / "e", index, budgets="2560"))
    compiled_run = _run(tmp_path / "c", index, budgets="2560", compile=True)
    compiled = train_run(compiled_run)
    assert compiled["status"] == "done", compiled.get("error")
    assert compiled["run_id"] == eager["run_id"]  # compile does not change what is trained: the same run
    assert compiled["val_loss"] == pytest.approx(eager["val_loss"], rel=1e-3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_failure_names_its_cause(tmp_path):
    """A `device: cuda` failure was summarised as "ended without writing result.json", the cause only in status."""
    from sweeps.cli import failure_cause
    from sweeps.state import run_states

    run = _run(tmp_path, budgets="2560", device="cuda")
    with pytest.raises(RuntimeError):
        train_run(run)
    st = run_states([run], run.run_dir.parents[1])[0]
    assert st.status == "failed"
    assert failure_cause(st).startswith("RuntimeError: training.device is 'cuda' but no CUDA device is visible")


def test_loss_is_read_on_the_host_only_when_logging_evaluating_or_checkpointing(tmp_path):
    """Reading the loss (.item()) is a host sync: the trainer does it at log, eval and checkpoint steps and the last,
    not after every step (which left the GPU idle while the host waited)."""
    from simplicial.distributed import DistInfo
    from simplicial.train import Trainer

    run = _run(tmp_path, budgets="5120", log_every=5, checkpoint_every=10, eval_every=0)  # 20 steps
    trainer = Trainer(run, DistInfo(), torch.device("cpu"))
    synced, checked = [], trainer.checked_loss

    def counting(loss):
        synced.append(trainer.step)
        return checked(loss)

    trainer.checked_loss = counting
    data = load_tokens(run.data, tmp_path / "cache")
    trainer.fit(data, lambda row: None)
    assert synced == [5, 10, 15, 20]
