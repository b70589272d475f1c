"""Launch a scaling sweep, follow it, collect it, fit it, report it.

    python launch.py sweeps/demo.yaml --dry-run            # the table of runs: id, arch, size, params, tokens, FLOPs, status
    python launch.py sweeps/demo.yaml                      # train what is not done (executor from the YAML; local by default)
    python launch.py sweeps/demo.yaml --fit --report       # ... then collect, fit L(N, D) per architecture, write the PDF
    python launch.py sweeps/demo.yaml --executor slurm     # queue job arrays through submitit and return
    python launch.py status  sweeps/demo.yaml              # done / running / failed / pending, with errors
    python launch.py collect sweeps/demo.yaml -o results.csv
    python launch.py cancel  sweeps/demo.yaml              # cancel the sweep's queued and running jobs

Re-launching skips runs whose result.json says done (or diverged) and runs that are queued or running; unfinished
runs resume from their last checkpoint.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

COMMANDS = ("run", "status", "collect", "cancel", "fit", "report")


def _load(path: str):
    from sweeps import expand, load_sweep

    spec = load_sweep(path)
    return spec, expand(spec)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:{'<' if i < 4 else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*header), fmt.format(*["-" * w for w in widths])]
    return "\n".join(lines + [fmt.format(*map(str, r)) for r in rows])


def _shape(run) -> str:
    m = run.model
    return f"{m['n_layers']}x{m['d_model']}/{m['n_heads']}h"


def cmd_status(spec, runs, out=print) -> int:
    from sweeps.state import run_states

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
    unknown = [st.run_id for st in states if st.status == "unknown"]
    if unknown:
        out(f"\n{len(unknown)} run(s) unknown: neither squeue nor sacct knows their job (scheduler unreachable, or "
            f"accounting off and the job aged out). A re-launch leaves them alone so no job runs twice; once you "
            f"know they are gone, `launch.py {spec.source_path or 'SWEEP.yaml'} --resubmit-unknown` submits them.")
    return 0


def cmd_collect(spec, runs, out_path: Path | None, out=print) -> Path:
    from sweeps.collect import write_results

    out_path = Path(out_path) if out_path else spec.sweep_dir / "results.csv"
    table, curves = write_results(runs, spec.sweep_dir, out_path)
    n_done = int((table["status"] == "done").sum())
    out(f"wrote {out_path} ({len(table)} runs, {n_done} done) and {curves}")
    return out_path


def cmd_fit(spec, results: Path, bootstrap: int, seed: int, out=print) -> int:
    from fitting.cli import main as fitting_main

    fits = spec.sweep_dir / "fits.json"
    # a partial sweep fits the groups it can and marks the others "not enough runs" (the report says so)
    rc = fitting_main(["chinchilla", str(results), "--bootstrap", str(bootstrap), "--seed", str(seed),
                       "--method", "both", "--insufficient", "mark", "--json", str(fits)])
    if rc == 0:
        rc = fitting_main(["fixed-budget", str(results), "--insufficient", "mark",
                           "--json", str(spec.sweep_dir / "fixed_budget.json")])
    return rc


def cmd_report(spec, results: Path, out=print) -> int:
    from reports.cli import main as reports_main

    pdf = spec.sweep_dir / "report.pdf"
    args = [str(results), "-o", str(pdf)]
    fits = spec.sweep_dir / "fits.json"
    if fits.exists():
        args += ["--fits", str(fits)]
    return reports_main(args)


def cmd_cancel(spec, runs, out=print) -> int:
    from sweeps.executors import cancel_jobs
    from sweeps.journal import latest
    from sweeps.state import run_states

    journal = latest(spec.sweep_dir)
    live = [journal[st.run_id] for st in run_states(runs, spec.sweep_dir) if st.active and st.run_id in journal]
    cancelled = cancel_jobs(live)
    out(f"cancelled {len(cancelled)} job(s): {' '.join(cancelled) or '-'}")
    return 0


def cmd_run(spec, runs, args, out=print) -> int:
    from sweeps.state import run_states

    from sweeps import SweepError
    from sweeps.grid import check_epochs, data_epochs, simplicial_blocks

    executor = args.executor or spec.executor.name
    epochs = data_epochs(spec, runs)
    try:
        warnings = check_epochs(spec, runs, epochs)
    except SweepError as e:
        print(f"launch.py: {e}", file=sys.stderr)
        return 2
    for line in warnings:
        print(line, file=sys.stderr)
    states = run_states(runs, spec.sweep_dir)
    if args.dry_run:
        rows = [[r.run_id, r.arch, r.size, _shape(r), f"{simplicial_blocks(r.model_config)}/{r.model['n_layers']}",
                 f"{r.params['params_non_embedding']:,}", f"{r.tokens:,}", "?" if ep is None else f"{ep:.3f}",
                 f"{r.flops:.3e}", st.status] for r, st, ep in zip(runs, states, epochs)]
        out(_table(rows, ["run", "arch", "size", "shape", "2-simplicial", "params (non-emb)", "tokens", "epochs",
                          "FLOPs", "status"]))
        todo = sum(not (st.finished or st.active) for st in states)
        out(f"\n{len(runs)} runs, {todo} to submit, {sum(r.flops for r in runs):.3e} training FLOPs in all "
            f"(executor: {executor}; FLOPs = tokens x 3 x forward FLOPs/token, attention included; epochs = tokens / "
            f"unique training tokens, '?' until a BPE cache is built; 2-simplicial = such blocks / layers)")
        return 0
    todo = [r for r, st in zip(runs, states)
            if not (st.finished or st.active) or (args.resubmit_unknown and st.status == "unknown")]
    skipped = len(runs) - len(todo)
    out(f"sweep {spec.name}: {len(runs)} runs, {skipped} done or in flight, {len(todo)} to run ({executor}) "
        f"-> {spec.sweep_dir}")
    spec.sweep_dir.mkdir(parents=True, exist_ok=True)
    max_parallel = args.max_parallel or spec.executor.max_parallel
    t0 = time.time()
    if todo and executor == "slurm":
        from sweeps.executors import SubmissionError, submit_slurm

        try:
            submit_slurm(todo, spec.sweep_dir, max_parallel, spec.executor.max_array_size, log=out)
        except SubmissionError as e:
            print(f"launch.py: {e}", file=sys.stderr)
            return 1
        out(f"queued; follow with: python launch.py status {args.sweep}")
        if not args.wait:
            return 0
        _wait_for(spec, runs, out)
    elif todo and executor == "debug":
        from sweeps.executors import run_debug

        run_debug(todo, spec.sweep_dir, log=out)
    elif todo:
        from sweeps.executors import run_local

        run_local(todo, spec.sweep_dir, max_parallel, log=out)
    if todo:
        out(f"training finished in {time.time() - t0:.0f} s")
    final = run_states(runs, spec.sweep_dir)
    failed = [st for st in final if st.status == "failed"]
    for st in failed:
        out(f"FAILED {st.run_id}: {(st.error or '').strip().splitlines()[-1] if st.error else 'no result'}")
    rc = 1 if failed else 0
    if args.fit or args.report:
        results = cmd_collect(spec, runs, None, out)
        if args.fit:
            rc = cmd_fit(spec, results, args.bootstrap, args.seed, out) or rc
        if args.report:
            rc = cmd_report(spec, results, out) or rc
    return rc


def _wait_for(spec, runs, out, poll_s: float = 10.0) -> None:
    from sweeps.state import run_states

    while True:
        states = run_states(runs, spec.sweep_dir)
        active = [s for s in states if s.active]
        if not active:
            return
        out(f"  waiting: {len(active)} run(s) queued or running")
        time.sleep(poll_s)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="launch.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("command", nargs="?", default="run", help=f"one of {', '.join(COMMANDS)} (default: run)")
    p.add_argument("sweep", help="the sweep YAML")
    p.add_argument("--executor", choices=("local", "slurm", "debug"), help="overrides executor.name of the YAML")
    p.add_argument("--dry-run", action="store_true", help="print the runs and their status; submit nothing")
    p.add_argument("--max-parallel", type=int, help="local: runs at once; slurm: array parallelism")
    p.add_argument("--fit", action="store_true", help="after training: collect and fit L(N, D) per architecture")
    p.add_argument("--report", action="store_true", help="after training: collect and write the PDF report")
    p.add_argument("--wait", action="store_true", help="slurm: wait until the queued runs end")
    p.add_argument("--resubmit-unknown", action="store_true",
                   help="also submit runs whose job neither squeue nor sacct knows (state 'unknown')")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the fit (default 200)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("-o", "--output", help="collect: the results CSV (default <sweep_dir>/results.csv)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "run")
    args = parser().parse_args(argv)
    if args.command not in COMMANDS:
        print(f"launch.py: unknown command {args.command!r}; one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    from sweeps import SweepError

    try:
        spec, runs = _load(args.sweep)
    except (SweepError, ValueError) as e:
        print(f"launch.py: {e}", file=sys.stderr)
        return 2
    if args.command == "status":
        return cmd_status(spec, runs)
    if args.command == "collect":
        cmd_collect(spec, runs, args.output)
        return 0
    if args.command == "cancel":
        return cmd_cancel(spec, runs)
    if args.command == "fit":
        return cmd_fit(spec, cmd_collect(spec, runs, args.output), args.bootstrap, args.seed)
    if args.command == "report":
        return cmd_report(spec, cmd_collect(spec, runs, args.output))
    return cmd_run(spec, runs, args)


if __name__ == "__main__":
    sys.exit(main())
