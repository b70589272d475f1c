"""The `simplex-scaling` CLI (sweeps/cli.py, also `python launch.py`): subcommands with their own flags, dotted
overrides validated like the file, the resolved sweep saved in the sweep folder, and `status` exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from sweeps import expand, load_sweep, parse_sweep
from sweeps.cli import EXIT_FAILED, EXIT_OK, EXIT_UNFINISHED, main, save_resolved, status_exit_code
from sweeps.spec import SweepError, resolved_document
from sweeps.state import RunState
from tests.conftest import REPO_ROOT

SUBCOMMANDS = ("run", "design", "status", "collect", "cancel", "fit", "report")


def cli(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "launch.py", *map(str, args)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_console_script_declared_and_lists_subcommands(capsys):
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["simplex-scaling"] == "sweeps.cli:main"
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: simplex-scaling") and all(f"    {c} " in text for c in SUBCOMMANDS), text
    installed = Path(sys.executable).parent / "simplex-scaling"  # pip install . puts it beside the interpreter
    if installed.exists():
        out = subprocess.run([installed, "--help"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and all(f"    {c} " in out.stdout for c in SUBCOMMANDS), out.stdout


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_each_subcommand_has_its_own_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert f"simplex-scaling {command}" in text and "KEY=VALUE" in text
    assert ("--dry-run" in text) == (command == "run") and ("--bootstrap-seed" in text) == (command in ("run", "fit"))


def test_usage_errors_name_the_offending_word(tiny_sweep):
    out = cli("statuss", tiny_sweep)
    assert out.returncode == 2 and "invalid choice: 'statuss'" in out.stderr, out.stderr
    out = cli("status", tiny_sweep, "--fit", "--dry-run")  # flags of `run`
    assert out.returncode == 2 and "'status': --fit --dry-run" in out.stderr, out.stderr
    out = cli(tiny_sweep, "--dry-run", "--seed", "3")  # the bootstrap seed is --bootstrap-seed now
    assert out.returncode == 2 and "--seed 3" in out.stderr, out.stderr
    out = cli("status", tiny_sweep, "other.yaml")
    assert out.returncode == 2 and "expected a KEY=VALUE override" in out.stderr and "'other.yaml'" in out.stderr


def _ids(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines() if line.startswith(("dot-", "simplicial-"))]


def test_overrides_change_ids_only_for_what_is_trained(tiny_sweep):
    base = cli(tiny_sweep, "--dry-run")
    assert base.returncode == 0, base.stderr
    lr = cli(tiny_sweep, "training.lr=1e-3", "--dry-run")
    same = cli(tiny_sweep, "--dry-run", "executor.name=slurm", "training.threads=1")  # overrides after a flag too
    assert lr.returncode == 0 and same.returncode == 0, lr.stderr + same.stderr
    assert len(_ids(base.stdout)) == 8 and set(_ids(base.stdout)).isdisjoint(_ids(lr.stdout))
    assert _ids(same.stdout) == _ids(base.stdout) and "executor: slurm" in same.stdout
    shape = cli(tiny_sweep, "sizes.b.n_layers=3", "--dry-run")
    assert shape.returncode == 0 and "3x48/2h" in shape.stdout and "3x32/2h" not in shape.stdout, shape.stdout


def test_override_values_are_yaml_and_validated_like_the_file(tiny_sweep):
    spec = load_sweep(tiny_sweep, ["training.lr=1e-3", "budgets.tokens=[2560, 7680]", "training.tie_embeddings=false",
                                   "executor.per_size.a.cpus_per_task=4", "sizes.c.params=4e5"])
    assert spec.training.lr == 1e-3 and isinstance(spec.training.lr, float)
    assert spec.budgets.tokens == [2560, 7680] and spec.training.tie_embeddings is False
    assert spec.executor.per_size["a"].cpus_per_task == 4 and spec.sizes["c"].params == 4e5
    cases = {
        "training.lr=fast": "(override training.lr=fast): training.lr: expected float",
        "training.lrr=1": "(override training.lrr=1): training.lrr: unknown key",
        "architectures.simplicial.w2=0": "(override architectures.simplicial.w2=0): architectures.simplicial.w2",
        "training.lr.x=1": "training.lr: override 'training.lr.x=1': is a float",
        "training.lr": "override 'training.lr': expected KEY=VALUE",
        "sizes.c.n_layers=2": "(override sizes.c.n_layers=2): sizes.c: missing d_model, n_heads",
    }
    for override, message in cases.items():
        with pytest.raises(SweepError) as exc:
            load_sweep(tiny_sweep, [override])
        assert str(tiny_sweep) in str(exc.value) and message in str(exc.value), (override, str(exc.value))
    out = cli(tiny_sweep, "training.warmup_fraction=1.5", "--dry-run")
    assert out.returncode == 2 and "override training.warmup_fraction=1.5" in out.stderr, out.stderr
    assert not (tiny_sweep.parent / "out").exists()  # nothing written before the error


def test_resolved_sweep_round_trips_and_notes_changes(tiny_sweep):
    spec = load_sweep(tiny_sweep, ["training.lr=1e-3", "sizes.a.n_layers=3"])
    notes = []
    path = save_resolved(spec, ["training.lr=1e-3", "sizes.a.n_layers=3"], out=notes.append)
    assert path == spec.sweep_dir / "sweep.yaml" and not notes
    text = path.read_text()
    assert "training.lr=1e-3 sizes.a.n_layers=3" in text.splitlines()[0]
    again = load_sweep(path)  # a valid sweep file, from any folder: output is absolute
    assert resolved_document(again) == resolved_document(spec) and again.sweep_dir == spec.sweep_dir
    assert [r.run_id for r in expand(again)] == [r.run_id for r in expand(spec)]
    save_resolved(load_sweep(tiny_sweep), [], out=notes.append)
    assert len(notes) == 1 and "sizes.a.n_layers" in notes[0] and "training.lr" in notes[0], notes


def _state(status: str) -> RunState:
    return RunState("r", "dot", "a", status)


def test_status_exit_code_table():
    assert status_exit_code([_state("done"), _state("diverged")]) == EXIT_OK == 0
    for bad in ("failed", "timeout", "unknown"):
        assert status_exit_code([_state("done"), _state("running"), _state(bad)]) == EXIT_FAILED == 3
    for busy in ("pending", "queued", "running", "preempted"):
        assert status_exit_code([_state("done"), _state(busy)]) == EXIT_UNFINISHED == 4


def test_status_exit_codes_from_run_folders(tiny_sweep):
    runs = expand(load_sweep(tiny_sweep))
    assert cli("status", tiny_sweep).returncode == 4  # nothing ran yet: all pending
    for run in runs:
        run.run_dir.mkdir(parents=True)
        (run.run_dir / "result.json").write_text(json.dumps({"status": "done", "val_loss": 2.0}))
    done = cli("status", tiny_sweep)
    assert done.returncode == 0 and "done 8 (of 8)" in done.stdout, done.stdout
    (runs[3].run_dir / "result.json").write_text(json.dumps({"status": "failed", "error": "Boom: it broke"}))
    failed = cli("status", tiny_sweep)
    assert failed.returncode == 3 and "Boom: it broke" in failed.stdout, failed.stdout


def test_run_only_takes_the_runs_matching_its_globs(tiny_sweep):
    runs = expand(load_sweep(tiny_sweep))
    pending = [runs[0].run_id, runs[5].run_id]
    for run in runs:
        if run.run_id not in pending:
            run.run_dir.mkdir(parents=True)
            (run.run_dir / "result.json").write_text(json.dumps({"status": "done", "val_loss": 2.0}))
    bad = cli("run", tiny_sweep, "--only", pending[0], "--only", "nothing-*")
    assert bad.returncode == 2 and "--only 'nothing-*' matches no run" in bad.stderr, bad.stderr
    out = cli("run", tiny_sweep, "--executor", "debug", "--only", pending[0][:-3] + "*", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "7 done or in flight or not selected, 1 to run" in out.stdout, out.stdout
    assert json.loads((runs[0].run_dir / "result.json").read_text())["status"] == "done"
    assert not runs[5].run_dir.exists()  # not selected: still pending
    assert cli("status", tiny_sweep).returncode == 4


def test_one_local_launch_tunes_the_lr_then_trains_the_replicate_at_the_winner(tmp_path):
    """lr_tuning_seeds through the CLI: the dry run prices the replicates at one lr each; `run` trains the tuning
    seed's axis, then in the same launch the replicate at the winning multiplier; `status` is then complete."""
    from tests.conftest import write_sweep

    sweep = write_sweep(tmp_path, budgets="2560", extra="seeds: [0, 1]\n")
    doc = yaml.safe_load(sweep.read_text())
    doc["sizes"]["a"]["training"] = {"lr_multipliers": [0.5, 1.0], "lr_tuning_seeds": [0]}
    sweep.write_text(yaml.safe_dump(doc))
    dry = cli("run", sweep, "--dry-run", "--only", "dot-a-*")
    assert dry.returncode == 0, dry.stderr
    assert "lr_tuning_seeds: 4 runs of replicate seeds wait for the tuning seeds' runs, then only the winning lr " \
           "of each (arch, size) trains: 2 of them" in dry.stdout, dry.stdout
    out = cli("run", sweep, "--executor", "debug", "--only", "dot-a-*", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 run(s) of replicate seeds wait for their lr to be tuned" in out.stdout, out.stdout  # both archs
    assert "lr tuned: 1 run(s) of replicate seeds now train at the winning lr" in out.stdout, out.stdout
    runs = {(r.seed, r.lr_mult): r for r in expand(load_sweep(sweep)) if r.arch == "dot" and r.size == "a"}
    loss = {k: json.loads((r.run_dir / "result.json").read_text())["val_loss"]
            for k, r in runs.items() if (r.run_dir / "result.json").exists()}
    assert set(loss) == {(0, 0.5), (0, 1.0), (1, min((0.5, 1.0), key=lambda m: loss[0, m]))}, loss
    status = cli("status", sweep)
    assert "not-tuned 1" in status.stdout and "1 run(s) of replicate seeds are not needed" in status.stdout, \
        status.stdout
