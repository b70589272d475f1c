"""The launcher under misuse and faults (issue 28): two launches of one sweep, cancel, reused pids, SIGTERM/SIGHUP
and Ctrl-C of a launcher. Each waits on conditions with deadlines, never on a state read once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweeps import expand, load_sweep
from sweeps.claims import try_claim
from sweeps.journal import JournalEntry, latest, now, record
from sweeps.paths import RunPaths
from sweeps.procs import ProcessId
from tests.conftest import REPO_ROOT, write_sweep

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _default_signals():
    # A job started in the background by a non-interactive shell (`make test &`, some CI runners) inherits SIGINT
    # ignored, and Python then installs no KeyboardInterrupt handler: the launcher under test must see the
    # dispositions a terminal gives it, whatever started pytest.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def _nohup_signals():
    _default_signals()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _launch(*args, preexec_fn=_default_signals) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "launch.py", *map(str, args)], cwd=REPO_ROOT, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec_fn)


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _long_sweep(tmp_path: Path) -> Path:
    """One run long enough to be interrupted (20000 steps of a tiny model), checkpointing often."""
    path = write_sweep(tmp_path, budgets=str(256 * 20000))
    text = path.read_text().replace("  simplicial: {type: simplicial, every: 2, w1: 8, w2: 4}\n", "")
    text = text.replace("  b: {n_layers: 2, d_model: 48, n_heads: 2}\n", "")
    path.write_text(text.replace("max_bytes: 400000", "max_bytes: 400000\n  max_epochs: 100")
                    .replace("checkpoint_every: 5", "checkpoint_every: 100"))
    return path


def _started_job(sweep_dir: Path, timeout: float = 120) -> ProcessId:
    entry = _wait(lambda: next(iter(latest(sweep_dir).values()), None), timeout, "the run's journal line")
    assert entry.process is not None, entry  # a local job is journaled with its identity
    return entry.process


def _kill_tree(proc: ProcessId) -> None:
    for p in [*proc.children(), proc]:
        p.signal(signal.SIGKILL)


# ---- item 3: a run is claimed before it starts -------------------------------------------------------------------


def test_claim_is_exclusive_names_its_holder_and_dies_with_it(tmp_path):
    paths = RunPaths(tmp_path / "run")
    code = ("import sys, time; from pathlib import Path; from sweeps.claims import try_claim; "
            "from sweeps.paths import RunPaths; c, _ = try_claim(RunPaths(Path(sys.argv[1]))); "
            "print('held' if c else 'refused', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(paths.root)], cwd=REPO_ROOT, env=ENV, text=True,
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        claim, who = try_claim(paths)
        assert claim is None and f"launcher pid {holder.pid} on " in who, who
    finally:
        holder.kill()  # a crash: SIGKILL, nothing cleaned up
        holder.wait()
    claim, who = _wait(lambda: (lambda c: c if c[0] else None)(try_claim(paths)), 10, "the claim to be free")
    assert who is None
    claim.release()
    assert not paths.claim.exists()  # released claims leave nothing behind


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_launches_of_one_sweep_train_each_run_once(tmp_path):
    """Two launchers started together used to train the same runs and overwrite each other's result.json."""
    path = write_sweep(tmp_path, budgets="2560")  # 2 runs (dot, sizes a and b) of 10 steps, one at a time
    path.write_text(path.read_text().replace("max_parallel: 2", "max_parallel: 1")
                    .replace("  simplicial: {type: simplicial, every: 2, w1: 8, w2: 4}\n", ""))
    a, b = _launch(path), _launch(path)
    outs = [p.communicate(timeout=280) for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, outs
    sweep_dir = tmp_path / "out" / "tiny"
    lines = [json.loads(l) for l in (sweep_dir / "journal.jsonl").read_text().splitlines()]
    started = [l["run_id"] for l in lines]
    assert sorted(started) == sorted(set(started)) and len(started) == 2, started  # each run started exactly once
    runs = expand(load_sweep(path))
    assert all(json.loads(r.paths.result.read_text())["status"] == "done" for r in runs)
    stdout = outs[0][0] + outs[1][0]
    assert stdout.count("  start   ") == 2 and "  skip    " in stdout, stdout
    assert not any(r.paths.claim.exists() for r in runs)


# ---- item 4: local job ids are identities; cancel stops the run and says so only when it did --------------------


def test_process_identity_detects_reuse_and_other_hosts():
    me = ProcessId.current()
    assert me.alive() is True
    assert ProcessId(me.host, me.pid, me.boot_id, me.start_ticks + 1).alive() is False  # same pid, other process
    assert ProcessId(me.host, me.pid, "another-boot", me.start_ticks).alive() is False  # rebooted since
    assert ProcessId("elsewhere.example", me.pid, me.boot_id, me.start_ticks).alive() is None


def test_reused_pid_is_neither_running_nor_signalled(tmp_path):
    """A journaled pid that now belongs to another process made `status` say running and `cancel` kill it."""
    from sweeps.cli import main

    path = write_sweep(tmp_path, budgets="2560")
    spec = load_sweep(path)
    run = expand(spec)[0]
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ident = ProcessId.of(bystander.pid)
        record(spec.sweep_dir, [JournalEntry(run.run_id, str(bystander.pid), "local", str(tmp_path), now(),
                                             ident.host, ident.boot_id, ident.start_ticks - 1)])  # an older process
        from sweeps.state import run_states

        st = run_states([run], spec.sweep_dir)[0]
        assert st.status == "failed" and "process gone" in st.error, (st.status, st.error)
        assert main(["cancel", str(path)]) == 0
        time.sleep(0.5)
        assert bystander.poll() is None  # not signalled
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.timeout(300)
def test_cancel_stops_a_local_run_and_reports_it(tmp_path):
    """`cancel` used to print "cancelled 1 job(s)" while the job bypassed SIGTERM and trained to the end."""
    path = _long_sweep(tmp_path)
    launcher = _launch(path)
    sweep_dir = tmp_path / "out" / "tiny"
    proc = _started_job(sweep_dir)
    run = expand(load_sweep(path))[0]
    try:
        _wait(lambda: run.paths.metrics.exists() and run.paths.metrics.stat().st_size > 0, 120, "training steps")
        out = subprocess.run([sys.executable, "launch.py", "cancel", str(path)], cwd=REPO_ROOT, env=ENV, text=True,
                             capture_output=True, timeout=120)
        assert out.returncode == 0 and f"cancelled 1 job(s): {proc.pid}" in out.stdout, out.stdout + out.stderr
        assert proc.alive() is False  # stopped when it says so, not eventually
        launcher.communicate(timeout=60)
        assert not run.paths.result.exists() or json.loads(run.paths.result.read_text())["status"] != "done"
    finally:
        _kill_tree(proc)
        launcher.kill()
        launcher.communicate()


# ---- items 10, 12: a launcher ended by a signal stops its runs, with a message and no traceback ------------------


@pytest.mark.timeout(300)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signalled_launcher_stops_its_local_runs(tmp_path, sig):
    path = _long_sweep(tmp_path)
    launcher = _launch(path)
    proc = _started_job(tmp_path / "out" / "tiny")
    try:
        launcher.send_signal(sig)
        stdout, stderr = launcher.communicate(timeout=120)
        assert launcher.returncode == 128 + sig, (launcher.returncode, stdout, stderr)
        assert proc.alive() is False, "the launcher's run was left training"
        name = signal.Signals(sig).name
        assert "stopped 1 running job(s)" in stdout and f"stopped by {name}" in stderr, stdout + stderr
        assert "Traceback" not in stderr, stderr
    finally:
        _kill_tree(proc)
        launcher.kill()
        launcher.communicate()


@pytest.mark.parametrize("value", ["-1", "0"])
def test_max_parallel_below_one_is_refused(tmp_path, capsys, value):
    """--max-parallel -1 hung the launcher with no output; 0 silently fell back to the YAML's value."""
    from sweeps.cli import main
    from sweeps.executors import run_local

    with pytest.raises(SystemExit) as exit_:
        main(["run", str(write_sweep(tmp_path)), "--max-parallel", value])
    assert exit_.value.code == 2 and f"must be >= 1, got {value}" in capsys.readouterr().err
    with pytest.raises(ValueError, match="max_parallel must be >= 1"):
        run_local([], tmp_path, int(value))


def test_legacy_journal_line_is_not_trusted_for_a_newer_process(tmp_path):
    """A journal line without an identity (an older launcher): a live pid that started after the submission is
    another process."""
    from sweeps.state import run_states

    spec = load_sweep(write_sweep(tmp_path, budgets="2560"))
    run = expand(spec)[0]
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record(spec.sweep_dir, [JournalEntry(run.run_id, str(bystander.pid), "local", str(tmp_path),
                                             "2020-01-01T00:00:00+00:00")])
        st = run_states([run], spec.sweep_dir)[0]
        assert st.status == "failed" and "started after the submission" in st.error, (st.status, st.error)
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.timeout(300)
def test_launcher_under_nohup_keeps_sighup_ignored(tmp_path):
    """`nohup launch.py ...` means a closed terminal must not stop the sweep: SIGHUP, ignored at start, stays so."""
    path = _long_sweep(tmp_path)
    run = expand(load_sweep(path))[0]
    launcher = _launch(path, preexec_fn=_nohup_signals)
    proc = _started_job(tmp_path / "out" / "tiny")

    def steps() -> int:
        text = run.paths.metrics.read_text() if run.paths.metrics.exists() else ""
        return len(text.splitlines())

    try:
        _wait(steps, 120, "training steps")
        launcher.send_signal(signal.SIGHUP)
        after = steps()
        _wait(lambda: steps() >= after + 3 or launcher.poll() is not None, 120, "training to go on after SIGHUP")
        assert launcher.poll() is None and proc.alive(), launcher.communicate(timeout=60)
        launcher.send_signal(signal.SIGTERM)
        stdout, stderr = launcher.communicate(timeout=120)
        assert launcher.returncode == 128 + signal.SIGTERM, (launcher.returncode, stdout, stderr)
        assert "SIGHUP" not in stdout + stderr, stdout + stderr
    finally:
        _kill_tree(proc)
        launcher.kill()
        launcher.communicate()
