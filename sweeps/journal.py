"""The sweep journal: which job ran (or runs) which run, kept on disk so any later process can find it.

`<sweep_dir>/journal.jsonl` gets one line per submission: {"run_id", "job_id", "executor", "folder",
"submitted_at"}. The latest line of a run wins. `launch.py status / collect / cancel` read it after the launching
process has exited, from any login that sees the shared file system, and re-attach to jobs through submitit.
"""

from __future__ import annotations

import fcntl
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

JOURNAL = "journal.jsonl"


@dataclass(frozen=True)
class JournalEntry:
    run_id: str
    job_id: str
    executor: str  # local | slurm | debug
    folder: str  # the submitit folder holding the job's logs and pickles
    submitted_at: str


def journal_path(sweep_dir: Path) -> Path:
    return Path(sweep_dir) / JOURNAL


def record(sweep_dir: Path, entries: list[JournalEntry]) -> None:
    """Append entries under an exclusive lock (two launchers of one sweep never interleave lines)."""
    path = journal_path(sweep_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        for e in entries:
            f.write(json.dumps(e.__dict__) + "\n")
        f.flush()


def latest(sweep_dir: Path) -> dict[str, JournalEntry]:
    """run id -> its latest journal entry. Unreadable lines (a torn write) are skipped."""
    path = journal_path(sweep_dir)
    out: dict[str, JournalEntry] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            e = JournalEntry(**json.loads(line))
        except (ValueError, TypeError):
            continue
        out[e.run_id] = e
    return out


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
