"""Code snapshots for SLURM jobs (sweeps/snapshot.py): the working tree as launched, content-keyed, with its commit
and dirty flag, and the report's list of the commits a sweep's runs used."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest

from reports.tables import code_versions
from sweeps.snapshot import MARKER, code_state, running_code, snapshot_code


def _git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "mod.py").write_text("VALUE = 1\n")
    (repo / ".gitignore").write_text("outputs/\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    return repo


def test_snapshot_of_a_clean_tree_is_keyed_by_commit_and_reused(repo, tmp_path):
    head = _git(repo, "rev-parse", "HEAD")
    logs = []
    dest = snapshot_code(tmp_path / "sweep", root=repo, log=logs.append)
    assert dest == tmp_path / "sweep" / "code" / head[:12] and len(logs) == 1
    assert (dest / "pkg" / "mod.py").read_text() == "VALUE = 1\n"
    assert json.loads((dest / MARKER).read_text())["commit"] == head
    assert running_code(dest) == {"commit": head, "dirty": False, "snapshot": str(dest)}
    assert snapshot_code(tmp_path / "sweep", root=repo, log=logs.append) == dest and len(logs) == 1  # reused


def test_snapshot_carries_uncommitted_edits_and_outlives_later_ones(repo, tmp_path):
    (repo / "pkg" / "mod.py").write_text("VALUE = 2\n")  # launched with an uncommitted edit ...
    (repo / "pkg" / "new.py").write_text("NEW = True\n")  # ... and a module not yet added
    (repo / "outputs").mkdir()
    (repo / "outputs" / "big.bin").write_bytes(b"x" * 1000)  # ignored: not code
    state = code_state(repo)
    assert state["dirty"] and state["key"].startswith(_git(repo, "rev-parse", "HEAD")[:12] + "-dirty-")
    dest = snapshot_code(tmp_path / "sweep", root=repo, log=lambda m: None)
    assert dest.name == state["key"]
    assert (dest / "pkg" / "mod.py").read_text() == "VALUE = 2\n" and (dest / "pkg" / "new.py").exists()
    assert not (dest / "outputs").exists()
    assert running_code(dest)["dirty"] is True
    (repo / "pkg" / "mod.py").write_text("VALUE = 3\n")  # edited while the jobs wait: they keep what was launched
    assert (dest / "pkg" / "mod.py").read_text() == "VALUE = 2\n"
    again = snapshot_code(tmp_path / "sweep", root=repo, log=lambda m: None)
    assert again != dest and (again / "pkg" / "mod.py").read_text() == "VALUE = 3\n"


def test_outside_git_there_is_no_snapshot(tmp_path):
    (tmp_path / "plain").mkdir()
    assert code_state(tmp_path / "plain") is None
    assert snapshot_code(tmp_path / "sweep", root=tmp_path / "plain") is None
    assert running_code(tmp_path / "plain") == {"commit": None, "dirty": None, "snapshot": None}


def test_report_lists_the_commits_runs_used():
    res = pd.DataFrame({"git_commit": ["abc", "abc", "def", "abc", ""],
                        "code_dirty": ["False", "False", "True", "False", ""]})
    assert code_versions(res) == ("abc (3 runs); def with uncommitted changes (1 run); "
                                  "1 run(s) without a record")
    assert code_versions(res.iloc[4:]) == "unknown"


def test_a_sweep_folder_inside_the_checkout_is_not_code(repo):
    sweep_dir = repo / "runs-here" / "demo"  # not ignored by the repository's .gitignore
    first = snapshot_code(sweep_dir, root=repo, log=lambda m: None)
    assert first.is_relative_to(sweep_dir) and not (first / "runs-here").exists()
    (sweep_dir / "runs").mkdir()
    (sweep_dir / "runs" / "result.json").write_text("{}")
    assert snapshot_code(sweep_dir, root=repo, log=lambda m: None) == first  # results do not change the code's key
