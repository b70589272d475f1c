"""Which process is which: a pid alone is not an identity (pids are reused, after a reboot or a long wait).

`ProcessId` is (host, pid, boot id, start time in clock ticks since boot), read from Linux's /proc. Two records with
the same four values are the same process; `alive()` answers True / False on the host that recorded it, and None
elsewhere (a pid means nothing on another machine), so nobody trusts or signals a process they cannot identify.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of a live pid, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[19])  # fields 3 and 22 of proc(5), counted after the ")" that ends the name


def started_at(pid: int) -> float | None:
    """When a live process started (seconds since the epoch: boot time + its start ticks), or None."""
    st = _stat(pid)
    if st is None:
        return None
    try:
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
    except (OSError, StopIteration, ValueError):
        return None
    return btime + st[1] / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessId:
    host: str
    pid: int
    boot_id: str | None
    start_ticks: int | None

    @classmethod
    def of(cls, pid: int) -> "ProcessId":
        st = _stat(pid)
        return cls(socket.gethostname(), int(pid), _boot_id(), st[1] if st else None)

    @classmethod
    def current(cls) -> "ProcessId":
        return cls.of(os.getpid())

    def to_dict(self) -> dict:
        return asdict(self)

    def alive(self) -> bool | None:
        """True: this very process runs (not a zombie); False: it ended (its pid may be another process's now);
        None: recorded on another host, or without a start time, so it cannot be checked from here."""
        if self.host != socket.gethostname() or self.start_ticks is None:
            return None
        if self.boot_id is not None and self.boot_id != _boot_id():
            return False  # the machine rebooted since
        st = _stat(self.pid)
        return st is not None and st[0] not in ("Z", "X") and st[1] == self.start_ticks

    def children(self) -> list["ProcessId"]:
        """The live child processes of this one (Linux /proc/<pid>/task/*/children)."""
        kids = []
        for task in Path(f"/proc/{self.pid}/task").glob("*/children"):
            try:
                kids += [int(c) for c in task.read_text().split()]
            except (OSError, ValueError):
                continue
        return [ProcessId.of(c) for c in kids]

    def signal(self, sig: int) -> bool:
        """Send `sig` if this is still the recorded process; False when it is gone or not ours to identify."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def stop(procs: list[ProcessId], grace_s: float = 20.0, poll_s: float = 0.1) -> list[bool]:
    """Stop local jobs (submitit controllers and the tasks they started) and make sure it happened; one answer each.

    A checkpointable submitit task ignores SIGTERM ("Bypassing signal SIGTERM": on SLURM, SIGTERM precedes the
    preemption signal), so SIGTERM stops nothing. Instead each controller is frozen (SIGSTOP: it starts no new task
    and prints no KeyboardInterrupt traceback to the launcher's terminal), its tasks get SIGINT (Python's
    KeyboardInterrupt, whose traceback lands in the task's own log), what still runs after `grace_s` gets SIGKILL,
    and then the controller does. True: the process is gone now; False: it was not identified as alive here
    (another host, or gone before), or it survived SIGKILL."""
    live = [i for i, p in enumerate(procs) if p.alive() is True]
    for i in live:
        procs[i].signal(signal.SIGSTOP)
    tasks = [kid for i in live for kid in procs[i].children()]
    for t in tasks:
        t.signal(signal.SIGINT)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(t.alive() for t in tasks):
        time.sleep(poll_s)
    for t in tasks:
        t.signal(signal.SIGKILL)
    for i in live:
        for kid in procs[i].children():  # a task started between the freeze and the listing
            kid.signal(signal.SIGKILL)
        procs[i].signal(signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(procs[i].alive() for i in live):
        time.sleep(poll_s)
    return [i in live and not procs[i].alive() for i in range(len(procs))]
