"""A study in sittings: run a committed sweep a few minutes at a time on a borrowed GPU, keep its small files in git.

    python3 scripts/study_sitting.py plan   studies/NAME/study.yaml [--seconds 450]   # what the next sitting runs
    python3 scripts/study_sitting.py run    studies/NAME/study.yaml [--seconds 450] [--out DIR]   # on the GPU
    python3 scripts/study_sitting.py unpack studies/NAME TARBALL                      # here, then git commit
    python3 scripts/study_sitting.py report studies/NAME [--bootstrap 1000] [--out DIR]  # fits + PDF from results.csv
    python3 scripts/study_sitting.py headline studies/NAME                            # README's headline from the fits

A study's sweep writes into its own folder (`output: ..` and `name:` equal to the folder's name), so finished runs
land in `studies/NAME/runs/<run_id>/`. A sitting is one command on a machine that lasts minutes: `run` plans the
pending runs that fit in `--seconds` (`plan`: whole wsd ladders, by tier, longest first; each run's time from the
tokens/s and start-up that finished runs of the same architecture and size measured, else from its FLOPs at an
assumed rate, below), builds the data and evaluation caches, launches exactly those runs through the product's CLI
(`launch.py run STUDY --only ID ...`, the sweep's own executor), stops the launcher and its runs at a hard limit,
collects `results.csv`, and packs the small files of every finished run (config.json, metrics.jsonl, result.json;
never checkpoints) with the tables into `DIR/<name>-sitting.tar.gz`. `unpack` puts them into the study folder here;
committing them makes the next sitting skip those runs. A run that a sitting could not finish is not packed and
starts from scratch next time (its checkpoint and its ladder's trunk live only on the machine that is given back),
which is why the plan takes only what its estimates fit and every ladder of a study must fit one sitting. Those
estimates run long, so when a sitting ends early `run` starts another with the time left (`refill`), until less
than a minute of `--seconds` is left or nothing more fits; the tarball then holds every sitting of the command.

Refusals, before any compute: a committed run folder whose id the sweep no longer produces (the code, the sweep or
the corpus changed what a run is: the data fingerprint is part of every run id; finish the study with the code and
image its sittings recorded, or start it again on purpose), and a sitting in which nothing fits while pending
ladders or runs remain whose estimates exceed a whole sitting. Where such units remain beside others that fit, the
sitting runs the others and names the long ones (on its output and in sittings.log): estimates from runs that
shared the GPU can be pessimistic, and the rest of the study should not wait on them.

The assumed rates (ASSUMED) are estimates for an H100, not measurements of this trainer: a model's training FLOPs
per token over an effective rate, capped for small models, whose step is bound by kernel launches rather than by
arithmetic. They only order and pack the first sitting; later sittings use what the runs measured.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SMALL_FILES = ("config.json", "metrics.jsonl", "result.json")
TABLES = ("results.csv", "results_curves.csv", "sweep.yaml")
SITTING_LOG = "sittings.log"

# Assumed H100 rates for runs no finished run has measured yet (estimates; see the module docstring): an effective
# TFLOP/s of the model's own FLOP count (simplicial/counting.py) and a ceiling in tokens/s for the small models, whose
# steps are bound by kernel launches, not arithmetic; start-up covers the run's imports, data cache and (2-simplicial)
# the Triton kernels' first build. From a bare model-step probe on an H100 (2026-12-07, bf16, fused AdamW, 16-32k
# tokens a step: dot 0.76-1.25M tok/s and 2-simplicial 0.51-0.79M tok/s at 0.2M-26M parameters, 134 / 168 TFLOP/s
# at 26M; studies/dot-vs-simplicial-h100/machine.md), taken at about 60% for the trainer's data path, logging and
# evaluation, which the probe left out.
ASSUMED = {
    "dot": {"tflops": 100.0, "max_tokens_per_s": 5.0e5, "startup_s": 30.0},
    "simplicial": {"tflops": 100.0, "max_tokens_per_s": 4.0e5, "startup_s": 45.0},
}

# A run's result.json times it from inside its process; starting that process (interpreter, imports, the job's
# pickle) comes on top in a sitting: about 10 s on a 2-core CPU machine, taken as 15 s.
PROCESS_START_S = 15.0


@dataclass
class Estimate:
    run_id: str
    seconds: float  # expected wall time of the run, start-up included, as if it had the GPU to itself
    startup: float  # the part of `seconds` before training starts
    gpu_seconds: float  # the GPU's busy time it needs: its FLOPs at the assumed effective rate
    source: str  # "measured" (finished runs of this arch and size) or "assumed"


@dataclass
class Unit:
    """Runs that must share a sitting: a wsd ladder's pending runs (their stable trunk is saved under the sweep
    folder, which a sitting does not keep), or one cosine run. Its cost is the trunk once, to the furthest branch
    point among them, plus each run's own decay (sweeps.grid.trained_flops's rule); its runs wait on the trunk's
    lock in turn, so it holds about one slot for its wall time."""

    run_ids: list
    seconds: float
    gpu_seconds: float
    tier: int


def _load(study: Path):
    from sweeps import expand, load_sweep

    spec = load_sweep(study)
    return spec, expand(spec)


def committed_orphans(spec, runs) -> list[str]:
    """Run folders in the study that the sweep (as this code expands it) does not produce."""
    known = {r.run_id for r in runs}
    root = spec.sweep_dir / "runs"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in known) if root.is_dir() else []


def _own_rates(run_dir: Path) -> list[float]:
    """Tokens/s of each logged window of the steps a run trained itself (metrics.jsonl). result.json's
    tokens_per_s divides the whole budget by the run's own training time, too high for a wsd run that took a
    trunk another run trained."""
    try:
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    except (OSError, ValueError):
        return []
    return [float(r["tokens_per_s"]) for r in rows if r.get("tokens_per_s")]


def estimates(spec, runs, states, assumed: dict = ASSUMED) -> dict[str, Estimate]:
    """Every run's expected wall time (tokens / tokens-per-second + start-up) and GPU time (FLOPs / effective rate).
    The wall time comes from the finished runs of the same (architecture, size) where there are any (the tokens/s
    they measured over their own steps, all their logged windows together, which carries whatever sharing of the
    GPU they met; the least
    start-up among them, as a wsd run's also holds its wait for the trunk; plus PROCESS_START_S), else from the
    assumed rates."""
    measured: dict[tuple[str, str], tuple[list[float], list[float]]] = {}  # window rates, start-ups
    for run, st in zip(runs, states):
        res = st.result or {}
        rates = _own_rates(run.run_dir) if st.finished else []
        if rates and res.get("wall_time_s") is not None and res.get("train_time_s") is not None:
            seen = measured.setdefault((run.arch, run.size), ([], []))
            seen[0].extend(rates)
            seen[1].append(max(0.0, res["wall_time_s"] - res["train_time_s"]))
    out = {}
    for run in runs:
        a = assumed[spec.architectures[run.arch].type]
        gpu = run.flops / (a["tflops"] * 1e12)
        seen = measured.get((run.arch, run.size))
        if seen:
            # the windows' harmonic mean: their tokens over their time (a window is log_every steps, the same
            # tokens in every run of the cell). A median over runs let a ladder's short decays, a few windows each
            # and timed while other runs shared the GPU, outvote its long trunk: in the H100 pilot the dot xxl
            # ladder's runs measured 62k, 75k and 177k tok/s, and the median (75k) priced the ladder at 8.7 min
            # where it took about 4.6; the harmonic mean of its 43 windows (132k) prices it at 4.9
            rate = len(seen[0]) / sum(1.0 / r for r in seen[0])
            startup = min(seen[1]) + PROCESS_START_S
            out[run.run_id] = Estimate(run.run_id, run.tokens / rate + startup, startup, gpu, "measured")
        else:
            rate = min(a["max_tokens_per_s"], run.tokens / gpu)
            start = a["startup_s"]
            out[run.run_id] = Estimate(run.run_id, run.tokens / rate + start, start, gpu, "assumed")
    return out


def tier(run, first_seed: int) -> int:
    """Which runs a study needs first: 0 the main grid (first seed, the lr as resolved), 1 the learning-rate axis
    around it, 2 the further seeds. A study cut short then still has whole grids to fit."""
    return 2 if run.seed != first_seed else (1 if run.lr_mult != 1.0 else 0)


def units(spec, pending: list, est: dict[str, Estimate]) -> list[Unit]:
    """The pending runs grouped into Units (wsd ladders by trunk id), each priced from its runs' estimates: the
    share of a run's time after its branch point is its own decay; the trunk's is paid once."""
    groups: dict[str, list] = {}
    for r in pending:
        groups.setdefault(r.trunk["id"] if r.trunk else r.run_id, []).append(r)
    out = []
    first_seed = spec.seeds[0]
    for rs in groups.values():
        startup = wall_trunk = gpu_trunk = wall_own = gpu_own = 0.0
        for r in rs:
            e = est[r.run_id]
            frac = r.trunk["branch_step"] / r.steps if r.trunk else 0.0  # the share of its steps on the trunk
            train = e.seconds - e.startup
            startup = max(startup, e.startup)
            wall_trunk, gpu_trunk = max(wall_trunk, train * frac), max(gpu_trunk, e.gpu_seconds * frac)
            wall_own, gpu_own = wall_own + train * (1 - frac), gpu_own + e.gpu_seconds * (1 - frac)
        out.append(Unit([r.run_id for r in rs], startup + wall_trunk + wall_own, gpu_trunk + gpu_own,
                        min(tier(r, first_seed) for r in rs)))
    return out


def plan(spec, runs, states, seconds: float, assumed: dict = ASSUMED) -> tuple[list[str], float, list[str]]:
    """(run ids to launch, expected duration, refusals). Pending runs go in Units (a wsd ladder's runs together),
    taken by tier (`tier`), longest first within a tier, onto slots (list scheduling): `executor.max_parallel`
    slots, divided by the largest ladder's size since a ladder's runs hold a process each while they wait for its
    trunk. A unit joins when its slot still ends within `seconds` and the GPU time of all chosen units stays within
    `seconds` too (runs that share the GPU overlap their start-up and launch gaps, not their arithmetic). The
    expected duration is the larger of the two. A unit longer than a whole sitting is refused: it could never
    finish."""
    est = estimates(spec, runs, states, assumed)
    pending = [r for r, st in zip(runs, states) if st.to_run]
    us = units(spec, pending, est)
    too_long = [f"{u.run_ids[0]}{f' (+{len(u.run_ids) - 1} of its ladder)' if len(u.run_ids) > 1 else ''}: expected "
                f"{u.seconds:.0f} s > a sitting of {seconds:.0f} s" for u in us if u.seconds > seconds]
    widest = max((len(u.run_ids) for u in us), default=1)
    slots = [0.0] * max(1, spec.executor.max_parallel // widest)
    gpu = 0.0
    chosen = []
    for u in sorted(us, key=lambda u: (u.tier, -u.seconds)):
        i = min(range(len(slots)), key=lambda k: slots[k])
        if slots[i] + u.seconds <= seconds and gpu + u.gpu_seconds <= seconds:
            slots[i] += u.seconds
            gpu += u.gpu_seconds
            chosen += u.run_ids
    return chosen, max(max(slots), gpu), too_long


def code_fingerprint(root: Path = REPO) -> str:
    """SHA-256 (16 hex digits) of the product's Python source (launch.py and the packages), names and contents in
    order: the device's copy of the repository has no git history, so a sitting records this instead of a commit,
    and `unpack` compares it with the code here."""
    digest = hashlib.sha256()
    files = [root / "launch.py", *sorted(p for pkg in ("sweeps", "simplicial", "triton_kernels", "fitting", "reports")
                                         for p in (root / pkg).rglob("*.py"))]
    for f in files:
        if f.is_file():
            digest.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _plan_or_refuse(study: Path, seconds: float, assumed: dict = ASSUMED, refuse: bool = True):
    """The plan of a sitting of `seconds`, after the refusals (module docstring). ``refuse=False`` (a refill):
    pending units longer than `seconds` are not an error, the plan is then empty."""
    from sweeps.state import run_states

    spec, runs = _load(study)
    orphans = committed_orphans(spec, runs)
    if orphans:
        raise SystemExit(f"{study}: {len(orphans)} committed run folder(s) are not runs of this sweep as the code now "
                         f"expands it (e.g. {orphans[0]}): the run identity changed since they ran (the code, the "
                         f"sweep, or the corpus: the installed packages' content is in every run id). Finish the "
                         f"study with the code and machine image its sittings.log names, or move them aside to start "
                         f"again.")
    states = run_states(runs, spec.sweep_dir, query_scheduler=False)
    chosen, makespan, too_long = plan(spec, runs, states, seconds, assumed)
    if too_long and not chosen and refuse:
        raise SystemExit(f"{study}: pending run(s) cannot finish in one sitting:\n  " + "\n  ".join(too_long))
    warnings = [f"warning: not in this sitting, expected longer than a whole sitting (a longer --seconds, or a "
                f"design whose ladders are shorter): {t}" for t in too_long]
    for w in warnings:
        print(w, file=sys.stderr)
    done = sum(st.trained for st in states)
    return spec, runs, states, chosen, makespan, done, warnings


def cmd_plan(args) -> int:
    spec, runs, states, chosen, makespan, done, _ = _plan_or_refuse(args.study, args.seconds)
    est = estimates(spec, runs, states)
    # a run awaiting its lr is one of len(lr_multipliers) runs of which one will train
    share = {r.run_id: 1.0 if st.to_run else 1.0 / len(r.training["lr_multipliers"])
             for r, st in zip(runs, states) if st.to_run or st.status == "awaiting-lr"}
    k = max(1, spec.executor.max_parallel)
    left = max(sum(est[i].seconds * w for i, w in share.items()) / k,
               sum(est[i].gpu_seconds * w for i, w in share.items()))
    print(f"{spec.name}: {done}/{len(runs)} runs done, {round(sum(share.values()))} to train, about {left / 60:.1f} "
          f"min of sittings left (the larger of the runs' wall time over {k} slots and their GPU time)")
    for rid in chosen:
        print(f"  {rid}  wall {est[rid].seconds:5.0f} s  GPU {est[rid].gpu_seconds:5.0f} s  ({est[rid].source})")
    print(f"this sitting: {len(chosen)} run(s), expected {makespan:.0f} s of {args.seconds:.0f} s")
    return 0


def _pack(spec, out_dir: Path, log_lines: list[str]) -> Path:
    """A tarball of the study's small files: every finished run's SMALL_FILES and the TABLES, plus this sitting's
    log appended to the study's SITTING_LOG."""
    from sweeps.state import read_result

    folder = spec.sweep_dir
    with open(folder / SITTING_LOG, "a") as f:
        f.write("\n".join(log_lines) + "\n")
    out_dir.mkdir(parents=True, exist_ok=True)
    tar_path = out_dir / f"{spec.name}-sitting.tar.gz"
    from simplicial.checkpoint import atomic_path

    # atomic: a refill sitting repacks over the last tarball, which must stand if this one is cut off
    with atomic_path(tar_path) as tmp, tarfile.open(tmp, "w:gz") as tar:
        for name in (*TABLES, SITTING_LOG):
            if (folder / name).is_file():
                tar.add(folder / name, arcname=name)
        for run_dir in sorted((folder / "runs").glob("*")):
            res = read_result(run_dir)
            if not res or res.get("status") not in ("done", "diverged"):
                continue
            for name in SMALL_FILES:
                if (run_dir / name).is_file():
                    tar.add(run_dir / name, arcname=f"runs/{run_dir.name}/{name}")
    return tar_path


def preflight(runs) -> list[str]:
    """Build the token cache and every evaluation set's cache once, in this process, with the code the runs use
    (simplicial.data, the cache root simplicial.train uses): a corpus or evaluation problem then stops the sitting
    in seconds instead of failing every run, and the runs find the caches built."""
    from simplicial.data import load_eval, load_tokens

    run = runs[0]
    cache = Path(run.sweep_dir).parent / ".cache" / "data"
    t0 = time.time()
    splits = load_tokens(run.data, cache)
    lines = [f"data: {splits.description}: {len(splits.train):,} train / {len(splits.val):,} val tokens"]
    for name, ev in run.evals.items():
        lines.append(f"eval {name}: {len(load_eval(run.data, name, ev, cache)):,} tokens")
    lines.append(f"caches ready in {time.time() - t0:.0f} s")
    return lines


# A refill sitting starts only with this much of --seconds left: less holds no ladder the study has measured.
MIN_REFILL_S = 60.0


def cmd_run(args) -> int:
    return refill(args.seconds, lambda left, deadline: _sitting(args, left, deadline))


def refill(seconds: float, sitting, clock=time.time) -> int:
    """Sittings back to back until `seconds` of training are spent, counted from the first one's launch: the plan's
    estimates run long (the H100 study's sittings ended at 0.5-0.9 of them), so when one ends early the next plans
    what fits in the time left. ``sitting(seconds_left, deadline)`` is one sitting (`_sitting`): the first has no
    deadline (its --seconds start at its launch, after its caches are built) and refuses a study in which nothing
    fits; a refill is stopped at that first launch + `seconds` (+ the grace) whatever its own set-up took, and one
    with nothing that fits just ends. Each sitting appends its block to sittings.log and repacks the tarball, so the
    last tarball holds them all. Stops at a sitting that fails or launches nothing."""
    deadline = None
    while True:
        left = seconds if deadline is None else deadline - clock()
        if deadline is not None and left < MIN_REFILL_S:
            return 0
        t0, rc, launched = sitting(left, deadline)
        deadline = t0 + seconds if deadline is None else deadline
        if rc or not launched:
            return rc


def _sitting(args, seconds: float, deadline: float | None) -> tuple[float, int, int]:
    """One sitting of `seconds` (plan, caches, launch, hard stop at `seconds` + grace after the launch or at
    `deadline` + grace, collect, pack): (the time its launch started, exit code, runs launched)."""
    refuse = deadline is None
    spec, runs, states, chosen, makespan, done, warnings = _plan_or_refuse(args.study, seconds, refuse=refuse)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    log = [f"# sitting {stamp}: code {code_fingerprint()}; {done}/{len(runs)} done before; launching "
           f"{len(chosen)} run(s), expected {makespan:.0f} s of {seconds:.0f} s"]
    print(log[0], flush=True)
    log += warnings
    if not chosen and not refuse:  # a refill with nothing that fits: the last tarball stands
        return time.time(), 0, 0
    if chosen:
        log += preflight(runs)
        print("\n".join(log[-len(runs[0].evals) - 2:]), flush=True)
    rc = 0
    t0 = time.time()
    if chosen:
        cmd = [sys.executable, str(REPO / "launch.py"), "run", str(args.study)]
        for rid in chosen:
            cmd += ["--only", rid]
        hard = (seconds if deadline is None else max(deadline - time.time(), 0.0)) + args.grace
        # The launcher's output streams through. It and its runs (submitit's local jobs stay in its process group)
        # are stopped together at the hard limit, SIGTERM then SIGKILL (a local job may bypass SIGTERM), so nothing
        # keeps writing into the run folders while they are packed.
        proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True)
        try:
            rc = proc.wait(timeout=hard)
        except subprocess.TimeoutExpired:
            rc = 124
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        launched = f"launcher exit {rc} after {time.time() - t0:.0f} s (hard limit {hard:.0f} s)"
        log.append(launched)
        print(launched, flush=True)
    subprocess.run([sys.executable, str(REPO / "launch.py"), "collect", str(args.study)], cwd=REPO, check=False)
    from sweeps.state import run_states

    after = run_states(runs, spec.sweep_dir, query_scheduler=False)
    for run, st in zip(runs, after):
        if run.run_id in chosen:
            res = st.result or {}
            log.append(f"{run.run_id}: {st.status} wall {res.get('wall_time_s', '-')} s, "
                       f"{res.get('tokens_per_s') or 0:.0f} tok/s, device {res.get('device', '-')}")
    log.append(f"{sum(st.trained for st in after)}/{len(runs)} done after this sitting"
               + (f" ({sum(st.status == 'not-tuned' for st in after)} not needed: another lr won the tuning)"
                  if any(st.status == "not-tuned" for st in after) else ""))
    print("\n".join(log[log.index(launched) + 1:] if chosen else log[1:]), flush=True)
    tar = _pack(spec, Path(args.out or os.environ.get("OUT") or "."), log)
    print(f"packed {tar}")
    return t0, (0 if rc == 0 else 1), len(chosen)


def cmd_unpack(args) -> int:
    """Extract a sitting's tarball into the study folder: only the small files of run folders and the tables, and
    only names a sitting writes (nothing outside the folder, no links). It needs no sweep loading, so it works on a
    machine without the study's corpus."""
    folder = args.study_dir.resolve()
    if not (folder / "study.yaml").is_file():
        raise SystemExit(f"{args.study_dir}: not a study folder (no study.yaml)")
    allowed_top = {*TABLES, SITTING_LOG}
    n = 0
    with tarfile.open(args.tarball) as tar:
        # A sitting appends to the log it was given, so its log continues this folder's unless it ran on a tree
        # without this folder's latest sittings (launched before the one before it was unpacked here). Its tables
        # and log would then replace what is here with less: refused before anything is extracted.
        here_log = folder / SITTING_LOG
        theirs = tar.extractfile(SITTING_LOG) if SITTING_LOG in tar.getnames() else None
        if here_log.is_file() and theirs is not None and not theirs.read().startswith(here_log.read_bytes()):
            raise SystemExit(
                f"{args.tarball}: its {SITTING_LOG} does not continue {here_log}: that sitting ran on a tree "
                f"without this folder's latest sittings, and its tables would replace theirs; nothing was "
                f"extracted. Unpack each sitting before the next one starts; to keep this one's runs, extract its "
                f"runs/ by hand and let the next sitting rewrite the tables.")
        for m in tar.getmembers():
            parts = Path(m.name).parts
            ok = m.isfile() and (
                (len(parts) == 1 and parts[0] in allowed_top)
                or (len(parts) == 3 and parts[0] == "runs" and parts[2] in SMALL_FILES and ".." not in parts))
            if not ok:
                raise SystemExit(f"{args.tarball}: unexpected member {m.name!r}; nothing after it was extracted")
            target = folder / m.name
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(m) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            n += 1
    print(f"{n} file(s) into {folder}; commit them: git add {folder} && git commit")
    last = ([line for line in here_log.read_text().splitlines() if line.startswith("# sitting ")]
            if here_log.is_file() else [])
    here = code_fingerprint()
    if last and f"code {here};" not in last[-1]:
        print(f"WARNING: the last sitting ran other code than this checkout's (code {here}): {last[-1]}")
    return 0


def regenerate(study_dir: Path, out: Path, bootstrap: int, seed: int = 0) -> dict[str, Path]:
    """fits.json, fits_<set>.json per evaluation set, fixed_budget.json, report.pdf and the figures from the study's
    committed results.csv alone (no run folders, no GPU): what CI re-runs so the committed answer keeps following
    the code. Every evaluation set is fitted as the validation loss is (the published start grid): each is part
    of the headline."""
    import pandas as pd

    from fitting.cli import fit_files, fit_results
    from reports.cli import main as reports_main
    from reports.inputs import eval_sets

    results = study_dir / "results.csv"
    if not results.is_file():
        raise SystemExit(f"{study_dir}: no results.csv yet (a sitting writes it)")
    out.mkdir(parents=True, exist_ok=True)
    names = eval_sets(pd.read_csv(results, nrows=0))
    paths = {**fit_files(out, names), "report": out / "report.pdf", "figures": out / "figures"}
    rc = fit_results(results, out, names, bootstrap=bootstrap, seed=seed, eval_starts="published")
    if rc:
        raise SystemExit(f"fitting exited {rc}")
    curves = study_dir / "results_curves.csv"
    rc = reports_main([str(results), "--fits", str(paths["fits"]), "--fixed-budget", str(paths["fixed_budget"]),
                       *(["--curves", str(curves)] if curves.is_file() else []), "-o", str(paths["report"]),
                       "--png-dir", str(paths["figures"])])
    if rc:
        raise SystemExit(f"reports exited {rc}")
    return paths


HEADLINE_BEGIN = "<!-- headline: written by `scripts/study_sitting.py headline` from fits*.json; do not edit -->"
HEADLINE_END = "<!-- /headline -->"


def headline(study_dir: Path) -> str:
    """The README's headline, in Markdown, from the study's committed results.csv and fit files alone: per
    evaluation set each architecture's alpha and beta and their difference with its interval and verdict (the
    report's tables, reports.tables.eval_set_rows), then what the design could resolve at the noise the runs
    showed (fits.json's design analysis)."""
    from reports import tables
    from reports.inputs import resolve_inputs

    inputs = resolve_inputs(study_dir / "results.csv")
    if inputs.fits is None:
        raise SystemExit(f"{study_dir}: no fits.json yet (`python3 scripts/study_sitting.py report {study_dir}`)")
    header, rows = tables.eval_set_rows(inputs)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    why = [f"{name}, {arch}: {'; '.join(g['identifiability'])}" for name, view in tables.eval_set_views(inputs)
           for arch in view.archs if (g := view.group_fit(arch)) and not tables.identified(g)
           and g.get("identifiability")]
    if why:
        lines += ["", "Not identified, as the fits say why:", *(f"- {w}" for w in why)]
    warned = [n.removeprefix("WARNING ") for n in inputs.fits.get("notes", []) if n.startswith("WARNING")]
    if warned:
        lines += ["", "Warnings of the fits (fits.json):", *(f"- {w}" for w in warned)]
    meta, design = inputs.fits["meta"], inputs.fits.get("design") or {}
    lines.append("")
    lines.append(f"{meta['level']:.0%} intervals: {meta.get('resample_method', '-')}; {meta['n_runs']} runs "
                 f"(each cell's best lr, column best_lr).")
    if all(design.get(k) is not None for k in ("min_detectable_delta_alpha", "noise_observed", "sd_delta_alpha")):
        lines.append(f"At the noise the runs showed (SD of log loss {design['noise_observed']:.3g}), this grid "
                     f"detects a difference in alpha of {design['min_detectable_delta_alpha']:.3g} with 80% power "
                     f"(SD of the difference {design['sd_delta_alpha']:.3g}; fitting.design, parameters: "
                     f"{design.get('params_source', '-')}).")
    header, rows = tables.fixed_budget_rows(inputs, "fixed_tokens")
    keep = [i for i, h in enumerate(header) if h == "D" or h.endswith("local slope [CI]") or h == "difference"]
    if rows and len(keep) > 1:
        lines += ["", "Local slopes of the validation loss in N at each token budget (fixed_budget.json; the form of "
                  "Roy et al. 2025's Table 3): the slope of log L on log N over this grid's sizes, with t intervals "
                  "(their calibration: benchmarks/results/calibration-2026-12-07.md, \"Local slopes\"). Not alpha: "
                  "at fixed D it is alpha A N^-alpha / L, which can move opposite to alpha, so a difference says "
                  "which loss falls faster with N on this grid, not the sign of delta alpha.", "",
                  "| " + " | ".join(header[i].replace(": local slope [CI]", "") if header[i] != "difference" else
                                    " - ".join(reversed(inputs.archs[:2])) for i in keep) + " |",
                  "|" + "---|" * len(keep)]
        lines += ["| " + " | ".join(row[i] for i in keep) + " |" for row in rows]
    return "\n".join(lines)


def write_headline(study_dir: Path) -> Path:
    """Replace the README's headline block (between HEADLINE_BEGIN and HEADLINE_END) with `headline`."""
    readme = study_dir / "README.md"
    text = readme.read_text()
    if HEADLINE_BEGIN not in text or HEADLINE_END not in text:
        raise SystemExit(f"{readme}: no headline block; put the two lines\n{HEADLINE_BEGIN}\n{HEADLINE_END}\n"
                         f"where the headline goes")
    before, rest = text.split(HEADLINE_BEGIN, 1)
    _, after = rest.split(HEADLINE_END, 1)
    from simplicial.checkpoint import atomic_path

    with atomic_path(readme) as tmp:
        Path(tmp).write_text(f"{before}{HEADLINE_BEGIN}\n{headline(study_dir)}\n{HEADLINE_END}{after}")
    return readme


def cmd_report(args) -> int:
    paths = regenerate(args.study_dir, Path(args.out or args.study_dir), args.bootstrap)
    print("\n".join(str(p) for p in paths.values()))
    return 0


def cmd_headline(args) -> int:
    print(write_headline(args.study_dir))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="study_sitting.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("plan", "run"):
        s = sub.add_parser(name)
        s.add_argument("study", type=Path, help="the study's sweep file, studies/NAME/study.yaml")
        s.add_argument("--seconds", type=float, default=450.0, help="training time of the sitting (default 450)")
        if name == "run":
            s.add_argument("--grace", type=float, default=45.0,
                           help="seconds past --seconds before the launcher is stopped (default 45); the caches are "
                                "built before --seconds starts")
            s.add_argument("--out", help="where the tarball goes (default $OUT, else .)")
    u = sub.add_parser("unpack")
    u.add_argument("study_dir", type=Path, help="studies/NAME")
    u.add_argument("tarball", type=Path)
    r = sub.add_parser("report")
    r.add_argument("study_dir", type=Path, help="studies/NAME (reads its results.csv)")
    r.add_argument("--bootstrap", type=int, default=1000)
    r.add_argument("--out", help="output folder (default: the study folder)")
    h = sub.add_parser("headline")
    h.add_argument("study_dir", type=Path, help="studies/NAME (reads its results.csv and fit files)")
    args = p.parse_args(argv)
    return {"plan": cmd_plan, "run": cmd_run, "unpack": cmd_unpack, "report": cmd_report,
            "headline": cmd_headline}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
