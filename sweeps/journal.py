"""The sweep journal: which job ran (or runs) which run, kept on disk so any later process can find it.

`<sweep_dir>/journal.jsonl` gets one line per submission: {"run_id", "job_id", "executor", "folder",
"submitted_at"}, and for a local job (whose id is a pid) the process's identity too: "host", "boot_id" and
"start_ticks" (sweeps/procs.py), checked before the pid is trusted or signalled. The latest line of a run wins. `launch.py status / collect / cancel` read it after the launching
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
    host: str | None = None  # local jobs: where the pid lives, and which process it was (pids are reused)
    boot_id: str | None = None
    start_ticks: int | None = None

    @property
    def process(self):
        """The local job's ProcessId, or None (a SLURM job, or a journal line written before identities)."""
        from sweeps.procs import ProcessId

        if self.executor != "local" or self.host is None:
            return None
        return ProcessId(self.host, int(self.job_id), self.boot_id, self.start_ticks)


def journal_path(sweep_dir: Path) -> Path:
    return Path(sweep_dir) / JOURNAL


def record(sweep_dir: Path, entries: list[JournalEntry]) -> None:
    """Append entries under an exclusive lock (two launchers of one sweep never interleave lines)."""
    path = journal_path(sweep_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        for e in entries:
            f.write(json.dumps({k: v for k, v in e.__dict__.items() if v is not None}) + "\n")
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
