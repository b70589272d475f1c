"""Claims: a launcher holds a run before it starts it, so two launches of one sweep never train a run twice.

A claim is an exclusive `flock` on the run folder's `claim.lock` (RunPaths.claim), held by the launching process for
as long as it starts and watches the run. The kernel drops it when that process ends in any way (kill -9 included),
so a crash never leaves a stale claim: a leftover file is simply locked by the next launcher. The file carries the
holder's identity for messages and is removed on release (while still locked; a claimer that locked a file that was
removed meanwhile sees the path no longer names its file, and tries again).
Holding a claim is not the whole check: after taking it, the launcher reads the run's state again (another launcher
may have finished or submitted it meanwhile) and starts it only if it is still to do.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone

from sweeps.paths import RunPaths
from sweeps.procs import ProcessId


@dataclass
class Claim:
    paths: RunPaths
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            try:
                self.paths.claim.unlink()  # still locked: nobody can hold this file between the unlink and close
            except OSError:
                pass
            os.close(self.fd)  # closing the descriptor drops the lock
            self.fd = -1


def try_claim(paths: RunPaths) -> tuple[Claim | None, str | None]:
    """(Claim, None) when this process now holds the run; (None, who) when another process holds it."""
    paths.root.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(paths.claim, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None, holder(paths)
        try:
            current = os.stat(paths.claim).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)  # the holder released (and removed) the file between our open and lock: take the new one
    me = {**ProcessId.current().to_dict(), "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
    return Claim(paths, fd), None


def holder(paths: RunPaths) -> str:
    """Who holds a claim, in words (best effort: the holder may be writing it this instant)."""
    try:
        who = json.loads(paths.claim.read_text())
        return f"launcher pid {who['pid']} on {who['host']} since {who['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another launcher"
