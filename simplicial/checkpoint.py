"""Atomic file writes and training checkpoints.

Every file another process may read (result.json, checkpoint.pt, config.json, results.csv, fits.json) is written
under a temporary name in the same folder and renamed into place, so a reader sees the old file or the new one, never
half of one (submitit's `temporary_save_path` does the same). The new file gets the permissions a plain `open()`
would give it (0666 less the umask), so teammates on a shared file system can read what a sweep wrote.

Checkpoints: the previous checkpoint is kept beside the new one (`checkpoint.prev.pt`), and a checkpoint that cannot
be read (truncated, corrupt, or not plain tensors and containers) is moved aside and the previous one used, with a
message naming both files; with neither, the run restarts from step 0 and says so.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    """The process umask, read without changing it (Linux reports it in /proc; elsewhere set and restore it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside `path`; on success rename it over `path`, on error remove it.

    mkstemp creates the file 0600 (private); it is widened to 0666 & ~umask, what `open(path, "w")` would give."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json_atomic(path: Path, obj, **dump_kwargs) -> None:
    options = {"indent": 2, "sort_keys": True, **dump_kwargs}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, allow_nan=False, **options) + "\n")


def previous_checkpoint(path: Path) -> Path:
    """Where the checkpoint before `path` is kept: checkpoint.pt -> checkpoint.prev.pt."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` completely (flushed to disk) before it replaces the current checkpoint, which becomes the
    previous one: a crash at any point leaves at least one complete checkpoint."""
    import torch  # here, not at the top: fitting and reports use atomic_path without loading torch

    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.replace(path, previous_checkpoint(path))


def _load(path: Path) -> dict:
    # weights_only: tensors and plain containers only, never arbitrary pickled objects (a planted checkpoint.pt
    # could otherwise run code); our state holds nothing else
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def load_checkpoint(path: Path, log=print) -> dict | None:
    """The newest readable checkpoint at `path` (else its previous one), or None: start from step 0.

    An unreadable file is renamed `<name>.bad` (kept for inspection; the next save would overwrite it otherwise)
    and `log` is told which file failed, why, and what is used instead."""
    path = Path(path)
    damaged = False
    for candidate in (path, previous_checkpoint(path)):
        if not candidate.exists():
            continue
        try:
            state = _load(candidate)
            if not isinstance(state, dict):
                raise ValueError(f"holds a {type(state).__name__}, not a state dict")
        except OSError:  # the file system failed, not the file (an NFS hiccup): keep it, and say so by raising
            raise
        except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError ... by the kind of damage
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            bad = candidate.with_name(candidate.name + ".bad")
            try:
                os.replace(candidate, bad)
            except OSError:  # another rank of this run moved it first
                pass
            damaged = True
            log(f"checkpoint {candidate} is unreadable ({type(e).__name__}: {reason}); moved to {bad.name}")
            continue
        if candidate != path:
            log(f"resuming from the previous checkpoint {candidate}")
        return state
    if damaged:
        log(f"no readable checkpoint in {path.parent}: the run restarts from step 0")
    return None


class TrunkStore:
    """The stable trunk of a wsd ladder (one per arch, size, lr, seed): `<sweep_dir>/trunks/<id>/step-<n>.pt` at
    each branch point, written by whichever run of the ladder reaches it first. `locked()` is an exclusive lock
    (fcntl, as the data cache's; released by the kernel if the holder dies) that a run holds while it extends the
    trunk by one segment, so no segment is trained twice and a shorter run waits at most one segment."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @contextmanager
    def locked(self):
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield self

    def path(self, step: int) -> Path:
        return self.folder / f"step-{step}.pt"

    def steps(self) -> list[int]:
        """Branch points saved so far, ascending."""
        import re

        found = (re.fullmatch(r"step-(\d+)\.pt", p.name) for p in self.folder.glob("step-*.pt"))
        return sorted(int(m.group(1)) for m in found if m)

    def save(self, step: int, state: dict) -> None:
        save_checkpoint(self.path(step), state)

    def load(self, step: int, log=print) -> dict | None:
        return load_checkpoint(self.path(step), log=log)
