"""Bootstrap speed of the Approach-3 fit: 1,000 resamples of a 240-run synthetic sweep (the issue's target: < 60 s
on 2 cores).

    .venv/bin/python benchmarks/bench_fitting.py            # 1,000 resamples, published start grid, all cores
    .venv/bin/python benchmarks/bench_fitting.py --resamples 200 --jobs 1

Data: 16 sizes x 15 token budgets from the published Chinchilla law (Hoffmann et al. 2022: E 1.69, A 406.4,
B 410.7, alpha 0.34, beta 0.28) with 1% log-normal noise. Prints a markdown table: the full fit (4,500 starts) and
the bootstrap (resamples, runs, seconds, per-resample ms, converged).
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import scipy  # noqa: E402

from fitting import bootstrap as bs  # noqa: E402
from fitting.chinchilla import fit_approach3, predict_loss  # noqa: E402

TRUE = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def sweep(n_sizes=16, n_tokens=15, sigma=0.01, seed=0):
    rng = np.random.default_rng(seed)
    N, D = np.meshgrid(np.logspace(7, 9.5, n_sizes), np.logspace(9, 11.5, n_tokens), indexing="ij")
    N, D = N.ravel(), D.ravel()
    return N, D, predict_loss(TRUE, N, D) * np.exp(sigma * rng.standard_normal(N.size))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    ap.add_argument("--starts", default="published", choices=["published", "small"])
    args = ap.parse_args()
    N, D, L = sweep()
    jobs = args.jobs or bs.default_jobs()
    t0 = time.perf_counter()
    full = fit_approach3(N, D, L, starts=args.starts)
    t_full = time.perf_counter() - t0
    def cpu() -> float:  # user+sys seconds of this process and its finished workers
        return sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                   for f in ("ru_utime", "ru_stime"))

    c0, t0 = cpu(), time.perf_counter()
    b = bs.bootstrap(N, D, L, full, n_boot=args.resamples, seed=0, starts=args.starts, jobs=jobs)
    t_boot, c_boot = time.perf_counter() - t0, cpu() - c0
    ci = {k: bs.percentile_ci(v) for k, v in bs.derived_samples(b.samples).items()}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores ({jobs} jobs); python {platform.python_version()}, "
          f"numpy {np.__version__}, scipy {scipy.__version__}; load average {os.getloadavg()[0]:.2f}")
    print(f"full fit: {len(L)} runs, {full.n_starts} starts, {t_full:.2f} s, converged={full.success}, "
          f"alpha={full.params['alpha']:.4f} beta={full.params['beta']:.4f}")
    print()
    # CPU seconds / jobs is what the wall time would be on otherwise idle cores.
    print("| resamples | runs | jobs | seconds (wall) | CPU seconds | per-resample ms (wall) | converged |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {b.n} | {len(L)} | {jobs} | {t_boot:.1f} | {c_boot:.1f} | {1e3 * t_boot / b.n:.1f} | {b.n_converged} |")
    print()
    print(f"95% CI alpha {ci['alpha']}, beta {ci['beta']} (truth 0.34, 0.28)")


if __name__ == "__main__":
    main()
