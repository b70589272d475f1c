"""The code a run runs: a snapshot of the checkout as launched, and the commit and dirty flag it records.

SLURM jobs wait in the queue and are requeued after preemption; if they imported the live checkout, an edit made
meanwhile would change the code mid-experiment. So `submit_slurm` first copies the working tree's files (tracked ones,
uncommitted edits included, and untracked ones git does not ignore: a new module not yet `git add`ed is part of what
you launched) into `<sweep_dir>/code/<key>/` with rsync, and points the jobs there. This is submitit's
`RsyncSnapshot` without its shallow clone: rsync over a fresh clone skips a file whose size and modification second
match the clone's (an edit made in the second before launch is lost), while a copy into an empty folder cannot.
The key names the content: the commit, plus a hash of the uncommitted changes when there are any, so a re-launch of
unchanged code reuses the folder and a changed tree gets a new one. `SNAPSHOT.json`, written last, marks a complete
snapshot and carries the commit and the dirty flag; `running_code()` reads it in the job, and result.json records
it as `code`.

A checkout that is not a git repository (an installed package) is not snapshotted: the installed files do not
change under the jobs, and `code.commit` is null.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MARKER = "SNAPSHOT.json"


def _git(root: Path, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, check=True, timeout=60).stdout


def _under(path: Path, folder: Path | None) -> bool:
    return folder is not None and Path(path).resolve().is_relative_to(Path(folder).resolve())


def code_state(root: Path = REPO_ROOT, skip: Path | None = None) -> dict | None:
    """{"commit", "dirty", "key", "untracked"} of the checkout at `root`, or None where it is not a git work tree.
    Untracked files under `skip` (a sweep folder inside the checkout and not ignored) are not code."""
    try:
        commit = _git(root, "rev-parse", "HEAD").decode().strip()
        diff = _git(root, "diff", "HEAD", "--binary")
        untracked = [p for p in _git(root, "ls-files", "--others", "--exclude-standard", "-z").decode().split("\0")
                     if p and not _under(root / p, skip)]
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    h = hashlib.sha256(diff)
    for name in sorted(untracked):
        h.update(name.encode() + b"\0")
        try:
            h.update((root / name).read_bytes())
        except OSError:
            pass
    dirty = bool(diff or untracked)
    key = commit[:12] + (f"-dirty-{h.hexdigest()[:10]}" if dirty else "")
    return {"commit": commit, "dirty": dirty, "key": key, "untracked": sorted(untracked)}


def snapshot_code(sweep_dir: Path, root: Path = REPO_ROOT, log=print) -> Path | None:
    """Copy the code at `root` into `<sweep_dir>/code/<key>/` (reused when complete); returns its folder, or None
    when `root` is not a git work tree. Needs rsync (the Makefile's set-up installs it)."""
    state = code_state(root, skip=sweep_dir)
    if state is None:
        return None
    dest = Path(sweep_dir) / "code" / state["key"]
    if (dest / MARKER).exists():
        return dest
    if shutil.which("rsync") is None:
        raise RuntimeError("SLURM jobs run a snapshot of the code and that needs rsync: apt-get install rsync")
    if dest.exists():  # an earlier copy that did not finish
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    listed = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").decode().split("\0")
    # a deleted tracked file stays listed; the sweep's own folder is not code even where git does not ignore it
    files = sorted({f for f in listed if f and (root / f).is_file() and not _under(root / f, sweep_dir)})
    subprocess.run(["rsync", "-a", "--from0", "--files-from=-", f"{root}/", f"{dest}/"], input="\0".join(files),
                   text=True, check=True, capture_output=True, timeout=600)
    from simplicial.checkpoint import write_json_atomic

    write_json_atomic(dest / MARKER, {"commit": state["commit"], "dirty": state["dirty"], "source": str(root),
                                      "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    log(f"code snapshot: {dest} (commit {state['commit'][:12]}{', with uncommitted changes' if state['dirty'] else ''})")
    return dest


def running_code(root: Path = REPO_ROOT) -> dict:
    """What result.json records as `code`: {"commit", "dirty", "snapshot"} of the code this process imported."""
    marker = Path(root) / MARKER
    if marker.exists():
        meta = json.loads(marker.read_text())
        return {"commit": meta["commit"], "dirty": meta["dirty"], "snapshot": str(root)}
    state = code_state(root)
    if state is None:
        return {"commit": None, "dirty": None, "snapshot": None}
    return {"commit": state["commit"], "dirty": state["dirty"], "snapshot": None}
