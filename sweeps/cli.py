"""`simplex-scaling`: plan, launch, follow, collect, fit and report a scaling sweep, one subcommand each.

    simplex-scaling run sweeps/demo.yaml --dry-run           # the table of runs: id, arch, size, params, tokens, FLOPs, status
    simplex-scaling run sweeps/demo.yaml                     # train what is not done (executor from the YAML; local by default)
    simplex-scaling run sweeps/demo.yaml --fit --report      # ... then collect, fit L(N, D) per architecture, write the PDF
    simplex-scaling run sweeps/demo.yaml training.lr=1e-3 executor.name=slurm   # dotted overrides of the YAML
    simplex-scaling status  sweeps/demo.yaml                 # done / running / failed / pending, with errors
    simplex-scaling collect sweeps/demo.yaml -o results.csv
    simplex-scaling cancel  sweeps/demo.yaml                 # cancel the sweep's queued and running jobs
    simplex-scaling fit     sweeps/demo.yaml                 # collect, then fits.json and fixed_budget.json
    simplex-scaling report  sweeps/demo.yaml                 # collect, then report.pdf
    simplex-scaling design  sweeps/demo.yaml --noise 0.01 --effect 0.06   # what the grid can resolve, before compute

`python launch.py ...` is the same CLI (`python launch.py SWEEP.yaml` means `run`). Every subcommand takes the sweep
file and then any number of KEY=VALUE overrides (YAML values: training.lr=1e-3, sizes.s.n_layers=6,
budgets.tokens=[1e6,2e6]); they are validated exactly like the file. A run's id hashes its resolved recipe, so an
override of a training, data, model or budget key names new runs; give `status`, `collect`, `fit` and `report` the
same overrides as `run` (or the resolved `<sweep_dir>/sweep.yaml` that `run` saves) to see those runs.

Re-launching skips runs whose result.json says done (or diverged) and runs that are queued or running; unfinished
runs resume from their last checkpoint.

Exit status: 0 success; 2 bad usage or a bad sweep file / override (nothing is submitted). `run`: 1 when a run
failed. `status`: 0 only when every run is finished (done, or diverged: a run that ended with a non-finite loss and
is not retried), 3 when any run is failed, timed out or unknown, else 4 while runs are pending, queued, preempted
or running. `cancel`: 1 when a job could not be cancelled. Stopped by Ctrl-C, SIGTERM or SIGHUP: 128 + the signal.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import time
from pathlib import Path

PROG = "simplex-scaling"
RESOLVED = "sweep.yaml"  # the resolved sweep in the sweep folder, written by every `run`

# `status` exit codes (documented in the module docstring and README.md)
EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_FAILED, EXIT_UNFINISHED = 0, 1, 2, 3, 4


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:{'<' if i < 4 else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*header), fmt.format(*["-" * w for w in widths])]
    return "\n".join(lines + [fmt.format(*map(str, r)) for r in rows])


def _shape(run) -> str:
    m = run.model
    return f"{m['n_layers']}x{m['d_model']}/{m['n_heads']}h"


def _cli_words(args) -> str:
    """The command line that reaches this sweep again (for hints printed to the user)."""
    return " ".join([str(args.sweep), *args.overrides])


# ----------------------------------------------------------------------------------------------------------------
# Subcommands: each takes the parsed arguments and returns the exit status.


def status_exit_code(states) -> int:
    """0: every run finished; 3: some run failed, timed out or is unknown; 4: otherwise some run is still pending,
    queued, preempted or running."""
    if any(st.status in ("failed", "timeout", "unknown") for st in states):
        return EXIT_FAILED
    if all(st.finished for st in states):
        return EXIT_OK
    return EXIT_UNFINISHED


def cmd_status(args, spec, runs, out=print) -> int:
    from sweeps.state import run_states, stale_runs

    states = run_states(runs, spec.sweep_dir)
    counts: dict[str, int] = {}
    for st in states:
        counts[st.status] = counts.get(st.status, 0) + 1
    rows = []
    for run, st in zip(runs, states):
        progress = f"{st.step or 0}/{st.total_steps}"
        elapsed = f"{st.elapsed_s:.0f}s" if st.elapsed_s is not None else "-"
        loss = f"{st.result['val_loss']:.4f}" if st.result and st.result.get("val_loss") is not None else "-"
        rows.append([run.run_id, st.status, st.job_id or "-", st.scheduler_state or "-", progress, elapsed, loss])
    out(_table(rows, ["run", "status", "job", "scheduler", "step", "elapsed", "val_loss"]))
    out("")
    out(f"sweep {spec.name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f" (of {len(runs)})")
    for st in states:
        if st.status in ("failed", "timeout", "diverged") and (st.error or st.log_tail):
            out(f"\n--- {st.run_id} ({st.status}) ---")
            if st.error:
                out(st.error.rstrip())
            if st.log_tail and st.log_tail not in (st.error or ""):
                out("log tail:\n" + st.log_tail)
    stale = stale_runs(runs, spec.sweep_dir)
    if stale:
        out(f"\nstale: {len(stale)} finished run(s) in {spec.sweep_dir / 'runs'} were trained on data that has changed "
            f"since (another data fingerprint); kept, not counted above, and not fitted:")
        out(_table([[s.run_id, s.arch, s.size, f"{s.tokens:,}", "-" if s.val_loss is None else f"{s.val_loss:.4f}"]
                    for s in stale], ["run", "arch", "size", "tokens", "val_loss"]))
    _say_tuning(states, out)
    unknown = [st.run_id for st in states if st.status == "unknown"]
    if unknown:
        out(f"\n{len(unknown)} run(s) unknown: neither squeue nor sacct knows their job (scheduler unreachable, or "
            f"accounting off and the job aged out). A re-launch leaves them alone so no job runs twice; once you "
            f"know they are gone, `{PROG} run {_cli_words(args)} --resubmit-unknown` submits them.")
    return status_exit_code(states)


def _collect(spec, runs, out_path: Path | None, out=print) -> Path:
    from sweeps.collect import write_results

    out_path = Path(out_path) if out_path else spec.sweep_dir / "results.csv"
    table, curves = write_results(runs, spec.sweep_dir, out_path)
    n_done = int((table["status"] == "done").sum())
    out(f"wrote {out_path} ({len(table)} runs, {n_done} done) and {curves}")
    return out_path


def cmd_collect(args, spec, runs, out=print) -> int:
    _collect(spec, runs, args.output, out)
    return EXIT_OK


def _fit(spec, results: Path, bootstrap: int, seed: int) -> int:
    from fitting.cli import fit_results

    return fit_results(results, spec.sweep_dir, list(spec.evals), bootstrap=bootstrap, seed=seed)


def _report(spec, results: Path) -> int:
    from reports.cli import main as reports_main

    pdf = spec.sweep_dir / "report.pdf"
    argv = [str(results), "-o", str(pdf)]
    fits = spec.sweep_dir / "fits.json"
    if fits.exists():
        argv += ["--fits", str(fits)]
    return reports_main(argv)


def cmd_fit(args, spec, runs, out=print) -> int:
    return _fit(spec, _collect(spec, runs, args.output, out), args.bootstrap, args.bootstrap_seed)


def cmd_report(args, spec, runs, out=print) -> int:
    return _report(spec, _collect(spec, runs, args.output, out))


def cmd_cancel(args, spec, runs, out=print) -> int:
    from sweeps.executors import cancel_jobs
    from sweeps.journal import latest
    from sweeps.state import run_states

    journal = latest(spec.sweep_dir)
    live = [journal[st.run_id] for st in run_states(runs, spec.sweep_dir) if st.active and st.run_id in journal]
    cancelled, refused = cancel_jobs(live)
    out(f"cancelled {len(cancelled)} job(s): {' '.join(cancelled) or '-'}")
    for line in refused:
        print(f"{args.prog}: not cancelled: {line}", file=sys.stderr)
    return EXIT_RUN_FAILED if refused else EXIT_OK


def save_resolved(spec, overrides, out=print) -> Path:
    """Write the resolved sweep to `<sweep_dir>/sweep.yaml` (a valid sweep file: `status`/`collect` accept it as
    is), saying which keys changed since the previous launch of this sweep folder."""
    import yaml

    from simplicial.checkpoint import atomic_path
    from sweeps.spec import parse_sweep, resolved_document

    path = spec.sweep_dir / RESOLVED
    doc = resolved_document(spec)
    try:
        before = resolved_document(parse_sweep(yaml.safe_load(path.read_text()), str(path)))
    except (OSError, ValueError, yaml.YAMLError):
        before = None
    if before is not None and before != doc:
        changed = sorted(k for k in set(_flat(doc)) | set(_flat(before)) if _flat(doc).get(k) != _flat(before).get(k))
        out(f"note: this launch's resolved sweep differs from the last one's in {', '.join(changed[:8])}"
            f"{' ...' if len(changed) > 8 else ''}; runs of the last one stay in {spec.sweep_dir / 'runs'}")
    header = (f"# The resolved sweep of the latest `run`: {spec.source_path or '-'}"
              f"{' with ' + ' '.join(overrides) if overrides else ''}, at {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.\n"
              f"# A valid sweep file: `{PROG} status {path}` follows exactly these runs.\n")
    with atomic_path(path) as tmp:
        tmp.write_text(header + yaml.safe_dump(doc, sort_keys=False))
    return path


def _flat(doc, prefix: str = "") -> dict:
    flat = {}
    for k, v in doc.items():
        key = f"{prefix}{k}"
        flat.update(_flat(v, key + ".") if isinstance(v, dict) and v else {key: v})
    return flat


def cmd_design(args, spec, runs, out=print) -> int:
    """What the grid can resolve before any compute (fitting.design, docs/FITTING.md): the expected SD of alpha,
    beta and delta alpha and the smallest delta alpha detectable, from each architecture's N, D and seeds as
    expanded. Runs that differ only in learning rate are one grid cell (the fit uses the best of them)."""
    from fitting.design import DEFAULT_EFFECT, DEFAULT_NOISE, analyse, summary_lines

    groups: dict[str, dict[str, list]] = {}
    seen = set()
    for r in runs:
        key = (r.arch, r.size, r.tokens, r.seed)
        if key in seen:
            continue
        seen.add(key)
        g = groups.setdefault(r.arch, {"N": [], "D": [], "seed": [], "size": []})
        g["N"].append(r.params["params_non_embedding"])
        g["D"].append(r.tokens)
        g["seed"].append(r.seed)
        g["size"].append(r.size)
    noise = getattr(args, "noise", None) or DEFAULT_NOISE
    effect = getattr(args, "effect", None) or DEFAULT_EFFECT
    design = analyse({a: groups[a] for a in sorted(groups)}, noise=noise, effect=effect)
    out("design analysis (fitting.design; docs/FITTING.md):")
    for line in summary_lines(design):
        out("  " + line)
    return EXIT_OK


def _selected(run, only: list[str] | None) -> bool:
    from fnmatch import fnmatchcase

    return not only or any(fnmatchcase(run.run_id, p) for p in only)


def _say_tuning(states, out) -> None:
    """Where replicate seeds wait for, or were spared by, the lr tuning (training.lr_tuning_seeds)."""
    waiting = [st for st in states if st.status == "awaiting-lr"]
    spared = sum(st.status == "not-tuned" for st in states)
    if waiting:
        out(f"{len(waiting)} run(s) of replicate seeds wait for their lr to be tuned (e.g. {waiting[0].run_id}: "
            f"{waiting[0].error}); they are not launched now")
    if spared:
        out(f"{spared} run(s) of replicate seeds are not needed: another lr won the tuning (status not-tuned)")


def cmd_run(args, spec, runs, out=print) -> int:
    from sweeps import SweepError
    from sweeps.grid import check_cells, check_epochs, check_steps, data_epochs, simplicial_blocks
    from sweeps.recipe import check_rule_batch
    from simplicial.tracking import missing_packages
    from sweeps.state import run_states

    executor = args.executor or spec.executor.name
    max_parallel = args.max_parallel or spec.executor.max_parallel
    from simplicial.data import DataError, preflight

    try:
        if runs:  # the data, checked here rather than once per job after queueing (the longest seq_len decides)
            preflight(runs[0].data, max(r.model["seq_len"] for r in runs))
        epochs = data_epochs(spec, runs)
        warnings = (check_epochs(spec, runs, epochs) + check_cells(runs) + check_steps(runs)
                    + check_rule_batch(spec, runs))
    except DataError as e:  # a corpus that cannot be read: refused before anything is submitted
        print(f"{args.prog}: error: {spec.source_path}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SweepError as e:
        print(f"{args.prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    for line in warnings:
        print(line, file=sys.stderr)
    missing = missing_packages(dataclasses.asdict(spec.tracking))
    if missing:
        print(f"{args.prog}: error: {spec.source_path}: tracking: needs {', '.join(missing)}, not importable here; "
              f"pip install 'simplex-scaling[tracking]'", file=sys.stderr)
        return EXIT_USAGE
    states = run_states(runs, spec.sweep_dir)
    if args.dry_run:
        from sweeps.recipe import describe

        rows = []
        for r, st, ep in zip(runs, states, epochs):
            recipe = describe(r.training, r.steps, r.trunk)
            blocks = f"{simplicial_blocks(r.model_config)}/{r.model['n_layers']}"
            rows.append([r.run_id, r.arch, r.size, _shape(r), blocks,
                         f"{r.params['params_non_embedding']:,}", f"{r.tokens:,}", "?" if ep is None else f"{ep:.3f}",
                         f"{r.flops:.3e}", recipe["lr"], recipe["batch"], recipe["warmup"], recipe["schedule"],
                         st.status])
        out(_table(rows, ["run", "arch", "size", "shape", "2-simplicial", "params (non-emb)", "tokens", "epochs",
                          "FLOPs", "lr", "batch", "warmup", "schedule", "status"]))
        todo = sum(st.to_run for st in states)
        out(f"\n{len(runs)} runs, {todo} to submit, {sum(r.flops for r in runs):.3e} training FLOPs in all "
            f"(executor: {executor}; FLOPs = tokens x 3 x forward FLOPs/token, attention included; epochs = tokens / "
            f"unique training tokens, '?' until a BPE cache is built; 2-simplicial = such blocks / layers; "
            f"lr = peak, batch in tokens, warmup in steps)")
        for size_name, size in spec.sizes.items():  # sizes given as a parameter target: what the family reached
            if size.params is not None:
                from simplicial.counting import param_counts

                got = next(r for r in runs if r.size == size_name)
                n = param_counts(dataclasses.replace(got.model_config, arch="dot"))["params_non_embedding"]
                out(f"size {size_name}: target {size.params:,.0f} non-embedding parameters; the family's nearest "
                    f"shape {_shape(got)} has {n:,} with dot-product attention ({n / size.params - 1:+.1%}, "
                    f"tolerance {size.tolerance:g}; each run's own count is in the table)")
        if any(r.trunk for r in runs):
            from sweeps.grid import trained_flops

            out(f"wsd: the budgets of each ladder share a stable trunk, so training spends {trained_flops(runs):.3e} "
                f"FLOPs ({sum(r.flops for r in runs) / trained_flops(runs):.2f}x less than separate runs)")
        replicas = [r for r in runs if r.lr_replicate]
        if replicas:
            share = {r.run_id: 1 / len(r.training["lr_multipliers"]) for r in replicas}
            out(f"lr_tuning_seeds: {len(replicas)} runs of replicate seeds wait for the tuning seeds' runs, then "
                f"only the winning lr of each (arch, size) trains: {sum(share.values()):.0f} of "
                f"them, {sum(r.flops * share[r.run_id] for r in replicas):.3e} of their "
                f"{sum(r.flops for r in replicas):.3e} FLOPs")
        out("")
        return cmd_design(args, spec, runs, out)
    try:
        import torch  # noqa: F401 - training's one hard requirement; the analysis install has none
    except ImportError:
        print(f"{args.prog}: error: training needs torch, not importable here: pip install 'simplex-scaling[train]' "
              f"(this install can plan, follow, collect, fit and report)", file=sys.stderr)
        return EXIT_USAGE
    todo = [r for r, st in zip(runs, states)
            if st.to_run or (args.resubmit_unknown and st.status == "unknown")]
    skipped = len(runs) - len(todo)
    if args.only:
        from fnmatch import fnmatchcase

        unmatched = [p for p in args.only if not any(fnmatchcase(r.run_id, p) for r in runs)]
        if unmatched:
            print(f"{args.prog}: error: --only {unmatched[0]!r} matches no run of sweep {spec.name!r}", file=sys.stderr)
            return EXIT_USAGE
        todo = [r for r in todo if _selected(r, args.only)]
        skipped = len(runs) - len(todo)
    out(f"sweep {spec.name}: {len(runs)} runs, {skipped} done or in flight{' or not selected' if args.only else ''}, "
        f"{len(todo)} to run ({executor}) -> {spec.sweep_dir}")
    _say_tuning(states, out)
    spec.sweep_dir.mkdir(parents=True, exist_ok=True)
    save_resolved(spec, args.overrides, out)
    t0 = time.time()
    launched = bool(todo)
    if todo and executor == "slurm":
        from sweeps.executors import SubmissionError, submit_slurm

        try:
            submit_slurm(todo, spec.sweep_dir, max_parallel, spec.executor.max_array_size, log=out)
        except SubmissionError as e:
            print(f"{args.prog}: {e}", file=sys.stderr)
            return EXIT_RUN_FAILED
        out(f"queued; follow with: {PROG} status {_cli_words(args)}")
        if not args.wait:
            return EXIT_OK
        _wait_for(spec, runs, out)
    elif todo:
        from sweeps.executors import run_debug, run_local
        from sweeps.gpus import GpuAllocationError

        tried: set[str] = set()
        while todo:  # on this machine, replicates whose lr the tuning runs just settled follow in the same launch
            tried |= {r.run_id for r in todo}
            if executor == "debug":
                run_debug(todo, spec.sweep_dir, log=out)
            else:
                try:
                    run_local(todo, spec.sweep_dir, max_parallel, log=out, runs_per_gpu=spec.executor.runs_per_gpu)
                except GpuAllocationError as e:
                    print(f"{args.prog}: error: {spec.source_path}: {e}", file=sys.stderr)
                    return EXIT_USAGE
            todo = [r for r, st in zip(runs, run_states(runs, spec.sweep_dir))
                    if st.to_run and r.run_id not in tried and _selected(r, args.only)]
            if todo:
                out(f"lr tuned: {len(todo)} run(s) of replicate seeds now train at the winning lr")
    if launched:
        out(f"training finished in {time.time() - t0:.0f} s")
    final = run_states(runs, spec.sweep_dir)
    failed = [st for st in final if st.status == "failed"]
    for st in failed:
        out(f"FAILED {st.run_id}: {failure_cause(st)}")
    rc = EXIT_RUN_FAILED if failed else EXIT_OK
    if args.fit or args.report:
        results = _collect(spec, runs, None, out)
        if args.fit:
            rc = _fit(spec, results, args.bootstrap, args.bootstrap_seed) or rc
        if args.report:
            rc = _report(spec, results) or rc
    return rc


def failure_cause(st) -> str:
    """One line saying why a run failed: the exception that ended it, from result.json's traceback or, for a job
    that ended without one, the last line of its log (where the traceback landed)."""
    from sweeps.state import last_line

    cause = last_line(st.error) or "no result"
    tail = last_line(st.log_tail)
    if tail and "without writing result.json" in cause:
        cause = f"{cause}: {tail}"
    return cause


def _wait_for(spec, runs, out, poll_s: float = 10.0) -> None:
    from sweeps.state import run_states

    while True:
        states = run_states(runs, spec.sweep_dir)
        active = [s for s in states if s.active]
        if not active:
            return
        out(f"  waiting: {len(active)} run(s) queued or running")
        time.sleep(poll_s)


# ----------------------------------------------------------------------------------------------------------------
# The parser: one subparser per command, each with only its own flags.


def _is_override(text: str) -> bool:
    return not text.startswith("-") and bool(text.partition("=")[0]) and "=" in text


def _override(text: str) -> str:
    if not _is_override(text):
        raise argparse.ArgumentTypeError(f"expected a KEY=VALUE override (e.g. training.lr=1e-3), got {text!r}")
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _design_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--noise", type=_positive_float, default=None,
                   help="design: assumed SD of log(final loss) between repeat runs (default 0.01)")
    p.add_argument("--effect", type=_positive_float, default=None,
                   help="design: the difference in alpha the comparison should resolve (default 0.06)")


def _sweep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", help="the sweep YAML (or a sweep folder's resolved sweep.yaml)")
    p.add_argument("overrides", nargs="*", type=_override, metavar="KEY=VALUE",
                   help="dotted overrides of the sweep file, YAML values (training.lr=1e-3 sizes.s.n_layers=6)")


def _bootstrap_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the fit (default 200)")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        _sweep_args(sp)
        sp.set_defaults(handler=handler)
        return sp

    r = add("run", cmd_run, "train the runs that are not done (or --dry-run: list them), then optionally fit/report")
    r.add_argument("--dry-run", action="store_true", help="print the runs and their status; submit nothing")
    r.add_argument("--executor", choices=("local", "slurm", "debug"), help="overrides executor.name of the YAML")
    r.add_argument("--max-parallel", type=_positive, help="local: runs at once; slurm: array parallelism")
    r.add_argument("--fit", action="store_true", help="after training: collect and fit L(N, D) per architecture")
    r.add_argument("--report", action="store_true", help="after training: collect and write the PDF report")
    r.add_argument("--wait", action="store_true", help="slurm: wait until the queued runs end")
    r.add_argument("--only", action="append", metavar="RUN_ID_GLOB",
                   help="run only the pending runs whose id matches this glob (repeatable; e.g. 'dot-s1-*'): a "
                        "time-limited sitting takes its share of a sweep; the rest stay pending")
    r.add_argument("--resubmit-unknown", action="store_true",
                   help="also submit runs whose job neither squeue nor sacct knows (state 'unknown')")
    _bootstrap_args(r)
    _design_args(r)

    add("status", cmd_status, "where each run stands (exit 0 only when every run is finished; 3 failed/unknown; "
                              "4 still pending or running)")
    c = add("collect", cmd_collect, "write the results table (results.csv) and the training curves")
    c.add_argument("-o", "--output", help="the results CSV (default <sweep_dir>/results.csv)")
    add("cancel", cmd_cancel, "cancel the sweep's queued and running jobs")
    f = add("fit", cmd_fit, "collect, then fit L(N, D) per architecture (fits.json, fixed_budget.json)")
    f.add_argument("-o", "--output", help="the results CSV (default <sweep_dir>/results.csv)")
    _bootstrap_args(f)
    rep = add("report", cmd_report, "collect, then write report.pdf from the results and fits")
    rep.add_argument("-o", "--output", help="the results CSV (default <sweep_dir>/results.csv)")
    _design_args(add("design", cmd_design, "what the grid can resolve before any compute: expected SD of alpha, "
                                           "beta, delta alpha and the smallest delta alpha detectable"))
    return p


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Parse, dispatch, return the exit status; a bad sweep file or override is exit 2 with a message naming the
    file, the key and (for an override) the argument, before anything is submitted."""
    p = parser(prog)
    args, extra = p.parse_known_args(argv)
    args.prog = prog
    # argparse stops filling a '*' positional at the first flag: overrides given after a flag arrive here
    stray = [w for w in extra if not _is_override(w)]
    if stray:
        p.error(f"unrecognized arguments for '{args.command}': {' '.join(stray)}")
    args.overrides = [*args.overrides, *extra]
    from sweeps import expand
    from sweeps.spec import SweepError, load_sweep

    try:
        spec = load_sweep(args.sweep, args.overrides)
        runs = expand(spec)
    except (SweepError, ValueError) as e:  # ValueError: the grid expands to duplicate runs
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return args.handler(args, spec, runs)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM / SIGHUP in a launcher (executors.LauncherSignal)
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"{prog}: stopped by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
