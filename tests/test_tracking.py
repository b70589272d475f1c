"""Live tracking (simplicial/tracking.py): a run writes TensorBoard event files and a W&B offline run through the
trainer's metrics writer, and a restart at a checkpoint continues the same tracked run (CPU, no network)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from sweeps import expand, load_sweep
from tests.conftest import write_sweep

pytest.importorskip("tensorboard", reason="pip install 'simplex-scaling[tracking]'")
pytest.importorskip("wandb", reason="pip install 'simplex-scaling[tracking]'")

TRACKING = """\
tracking:
  tensorboard: true
  wandb: offline
  wandb_tags: [test]
"""


@pytest.fixture(autouse=True)
def _quiet_wandb(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))  # never the user's settings or API key


def tensorboard_scalars(folder: Path, tag: str) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))  # purges events after a restart's purge step, as TensorBoard shows them
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)}


def wandb_records(path: Path):
    """The records of a W&B transaction log (.wandb): a 7-byte header, then LevelDB-log framing in 32 KiB blocks
    (crc32, length, type: 1 full, 2 first, 3 middle, 4 last) around protobuf `Record`s."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, parts = path.read_bytes(), 7, 32768, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            break
        frag, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        parts = frag if kind in (1, 2) else parts + frag
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts)
            yield record


def wandb_history(path: Path) -> tuple[str, list[dict]]:
    run_id, rows = None, []
    for r in wandb_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run_id = r.run.run_id
        elif kind == "history":
            rows.append({item.key or "/".join(item.nested_key): float(item.value_json) for item in r.history.item})
    return run_id, rows


def _run(tmp_path):
    return expand(load_sweep(write_sweep(tmp_path, budgets="2560", extra=TRACKING)))[0]


def test_training_writes_tensorboard_and_wandb_offline(tmp_path):
    from simplicial.train import train_run

    run = _run(tmp_path)
    assert run.tracking["wandb"] == "offline" and run.tracking["tensorboard"] is True
    result = train_run(run)
    assert result["status"] == "done"
    losses = tensorboard_scalars(run.run_dir / "tensorboard", "train_loss")
    assert sorted(losses) == [2, 4, 6, 8, 10] and all(v > 0 for v in losses.values())
    assert tensorboard_scalars(run.run_dir / "tensorboard", "val_loss")[10] == pytest.approx(result["val_loss"])
    offline = list((Path(run.sweep_dir) / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and offline[0].name.endswith(run.run_id)
    run_id, rows = wandb_history(offline[0] / f"run-{run.run_id}.wandb")
    assert run_id == run.run_id
    assert [r["_step"] for r in rows] == [2, 4, 6, 8, 10]
    assert rows[-1]["val_loss"] == pytest.approx(result["val_loss"]) and rows[0]["train_loss"] == losses[2]


def test_a_restart_continues_one_tracked_run(tmp_path):
    from simplicial.tracking import open_trackers

    run = _run(tmp_path)
    first = open_trackers(run, resume_step=0)
    for step in (2, 4, 6):  # the process dies after logging step 6; its last checkpoint is step 4
        for t in first:
            t.log({"step": step, "train_loss": 10.0 - step})
    for t in first:
        t.close(ok=False)
    second = open_trackers(run, resume_step=4)
    for step in (6, 8):  # redone from the checkpoint
        for t in second:
            t.log({"step": step, "train_loss": 100.0 + step})
    for t in second:
        t.close(ok=True)
    # TensorBoard: one curve, the interrupted process's step 6 replaced by the redone one
    assert tensorboard_scalars(run.run_dir / "tensorboard", "train_loss") == {2: 8.0, 4: 6.0, 6: 106.0, 8: 108.0}
    # W&B offline: both segments carry the run's id, so `wandb sync` puts them in one run
    segments = sorted((Path(run.sweep_dir) / "wandb").glob("offline-run-*"))
    assert len(segments) == 2
    histories = [wandb_history(s / f"run-{run.run_id}.wandb") for s in segments]
    kinds = [[r.WhichOneof("record_type") for r in wandb_records(s / f"run-{run.run_id}.wandb")] for s in segments]
    assert {h[0] for h in histories} == {run.run_id}, (segments, kinds)
    assert [r["_step"] for r in histories[1][1]] == [6, 8]


def test_long_run_ids_give_stable_wandb_ids():
    from simplicial.tracking import WANDB_ID_MAX, wandb_run_id

    short = "dot-xs-400ktok-s0-e1b4fc1a73"
    assert wandb_run_id(short) == short
    long_id = "simplicial-" + "a-very-long-size-name" * 4 + "-1.6Mtok-s0-e1b4fc1a73"
    assert len(wandb_run_id(long_id)) <= WANDB_ID_MAX and wandb_run_id(long_id) == wandb_run_id(long_id)
    assert wandb_run_id(long_id) != wandb_run_id(long_id.replace("e1b4", "f1b4"))


def test_tracking_settings_are_validated_and_not_in_the_run_id(tmp_path):
    from sweeps import SweepError

    path = write_sweep(tmp_path, budgets="2560")
    plain = [r.run_id for r in expand(load_sweep(path))]
    tracked = [r.run_id for r in expand(load_sweep(path, ["tracking.wandb=online", "tracking.tensorboard=true"]))]
    assert plain == tracked
    with pytest.raises(SweepError, match=r"tracking\.wandb: must be off, online or offline, got 'maybe'"):
        load_sweep(path, ["tracking.wandb=maybe"])
