"""End-to-end training speed of the product's own trainer: dot-product vs 2-simplicial models of the same shape.

    python benchmarks/bench_training.py                                   # every shape, both archs, eager
    python benchmarks/bench_training.py --modes eager,compiled            # ... and under torch.compile
    python benchmarks/bench_training.py --shapes paper --profile          # + a torch.profiler table of one step
    python benchmarks/bench_training.py --shapes small --curve 60         # eager vs compiled loss curves
    python benchmarks/bench_training.py --json out.json                   # the rows as JSON too

Each run is built the way a sweep builds it (a sweep document -> `sweeps.expand` -> RunSpec -> `Trainer`), and
timed through `Trainer.train_step`: forward, backward, gradient clipping and the fused AdamW step under bf16
autocast, with gradient accumulation over two micro-batches. Two timings per architecture and mode:
- `step`: the micro-batches already on the GPU (what the model and optimizer alone reach);
- `+data`: the trainer's real data path (python-stdlib bytes from the memory-mapped cache, windows built ahead on a
  thread into pinned memory, copied asynchronously: `Trainer.batches`).
Tokens/s is the timed steps' tokens over their wall time (one sync at the end, as `Trainer.fit` syncs only when it
logs). Model TFLOP/s = tokens/s x `simplicial.counting.flops_per_token(cfg)["train"]` (3 x forward; attention
counted by the project's conventions: 2-simplicial 4 d P/T per layer, dot-product causal 4 d (T+1)/2), the same
count for eager and compiled. `simplicial/dot` is the ratio of tokens/s of the two models measured in the same run.

Shapes: `small` (d_model 512, T 1024, 8 layers, head dim 64), `medium` (768, 2048, 12 layers, head dim 128) and
`paper`, the paper's layout (Roy et al. 2025, arXiv 2507.02754: every 4th layer 2-simplicial, (w1, w2) = (512, 32),
head dim 128) at T 2048 with 24 layers of d_model 1024: 302M non-embedding parameters (dot), 315M (2-simplicial).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from simplicial.counting import flops_per_token, param_counts  # noqa: E402

SHAPES = {
    "small": dict(n_layers=8, d_model=512, n_heads=8, seq_len=1024, micro_batch_size=16),
    "medium": dict(n_layers=12, d_model=768, n_heads=6, seq_len=2048, micro_batch_size=8),
    "paper": dict(n_layers=24, d_model=1024, n_heads=8, seq_len=2048, micro_batch_size=8),
}
ARCHS = {"dot": {"type": "dot"}, "simplicial": {"type": "simplicial", "every": 4, "w1": 512, "w2": 32}}
MICRO_BATCHES = 2  # gradient accumulation steps per optimizer step


def sweep_document(shape: str, arch: str, steps: int, output: str, compile: bool = False, lr: float = 1e-3) -> dict:
    """The sweep (one run) whose RunSpec the benchmark trains: the shape, the arch, python-stdlib bytes."""
    s = SHAPES[shape]
    batch_tokens = MICRO_BATCHES * s["micro_batch_size"] * s["seq_len"]
    return {
        "name": f"bench-{shape}", "output": output,
        "architectures": {arch: ARCHS[arch]},
        "sizes": {shape: {k: s[k] for k in ("n_layers", "d_model", "n_heads")}},
        "budgets": {"tokens": [steps * batch_tokens]},
        "data": {"source": "python-stdlib", "max_bytes": 8_000_000},
        "training": {"seq_len": s["seq_len"], "batch_tokens": batch_tokens, "micro_batch_size": s["micro_batch_size"],
                     "lr": lr, "warmup_fraction": 0.1, "eval_every": 0, "compile": compile, "device": "cuda"},
    }


def build_run(shape: str, arch: str, steps: int, output: str, compile: bool = False, lr: float = 1e-3):
    from sweeps.grid import expand
    from sweeps.spec import parse_sweep

    (run,) = expand(parse_sweep(sweep_document(shape, arch, steps, output, compile, lr), "bench_training"))
    return run


class DeviceBatches:
    """One step's micro-batches kept on the device: the `step` timing, without the data path."""

    def __init__(self, host_batches, device):
        self.batches = [(x.to(device), y.to(device)) for x, y in host_batches]

    def get(self, step):
        return self.batches


@dataclass
class Row:
    shape: str
    arch: str
    mode: str
    params: int
    tokens_per_step: int
    step_tok_s: float | None = None
    data_tok_s: float | None = None
    tflops: float | None = None  # model TFLOP/s of the `step` timing
    first_step_s: float | None = None  # the first step: kernel builds, compile
    peak_gib: float | None = None
    error: str | None = None


def _timed(trainer, batches, steps: int) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = trainer.train_step(batches)
    trainer.checked_loss(loss)  # the one sync; raises if any step's loss was not finite
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def measure(shape: str, arch: str, mode: str, steps: int, warmup: int, workdir: str, profile: int = 0) -> Row:
    from simplicial.data import load_tokens
    from simplicial.distributed import DistInfo
    from simplicial.train import Trainer

    run = build_run(shape, arch, 2 * (warmup + steps) + 2, workdir, compile=mode == "compiled")
    cfg = run.model_config
    row = Row(shape, arch, mode, param_counts(cfg)["params_non_embedding"], run.training["batch_tokens"])
    trainer = None
    try:
        data = load_tokens(run.data, Path(workdir) / "cache")
        torch.cuda.reset_peak_memory_stats()
        trainer = Trainer(run, DistInfo(), torch.device("cuda", torch.cuda.current_device()))
        with trainer.batches(data) as real:
            on_device = DeviceBatches(real.build(0), trainer.device)
            t0 = time.perf_counter()
            trainer.checked_loss(trainer.train_step(on_device))
            row.first_step_s = time.perf_counter() - t0
            for _ in range(warmup - 1):
                trainer.train_step(on_device)
            row.step_tok_s = steps * row.tokens_per_step / _timed(trainer, on_device, steps)
            for _ in range(warmup):
                trainer.train_step(real)
            row.data_tok_s = steps * row.tokens_per_step / _timed(trainer, real, steps)
            if profile:
                profile_step(trainer, on_device, profile, f"{shape} {arch} {mode}")
        row.tflops = row.step_tok_s * flops_per_token(cfg)["train"] / 1e12
        row.peak_gib = torch.cuda.max_memory_allocated() / 2**30
    except Exception as e:  # a failed mode (say compile) is a row of the table, not the end of the benchmark
        row.error = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
    finally:
        del trainer
        gc.collect()
        torch.cuda.empty_cache()
    return row


def kernel_group(name: str) -> str:
    n = name.lower()
    if "simplicial" in n:
        return "2-simplicial attention kernels"
    if "flash" in n or "fmha" in n or "attention" in n:
        return "dot-product attention (SDPA)"
    if any(k in n for k in ("gemm", "nvjet", "xmma", "cutlass", "sm90", "wgmma")):
        return "matrix products (GEMM)"
    if "adam" in n or "multi_tensor" in n or "foreach" in n:
        return "optimizer"
    return "other (element-wise, norms, softmax/loss, copies)"


def profile_step(trainer, batches, top: int, title: str) -> None:
    """torch.profiler of one optimizer step: device time by kernel group, then the top kernels."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        trainer.train_step(batches)
        torch.cuda.synchronize()
    kernels = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA
               and getattr(e, "self_device_time_total", 0) > 0]
    total = sum(e.self_device_time_total for e in kernels) or 1
    groups: dict[str, float] = {}
    for e in kernels:
        groups[kernel_group(e.key)] = groups.get(kernel_group(e.key), 0) + e.self_device_time_total
    print(f"\nprofile of one step ({title}): {total / 1e3:.1f} ms of GPU kernel time")
    print("| kernel group | ms | share |\n|---|---:|---:|")
    for g, t in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"| {g} | {t / 1e3:.2f} | {t / total:.1%} |")
    print(f"\n| top kernels ({title}) | calls | ms | share |\n|---|---:|---:|---:|")
    for e in sorted(kernels, key=lambda e: -e.self_device_time_total)[:top]:
        print(f"| `{e.key[:90]}` | {e.count} | {e.self_device_time_total / 1e3:.2f} | "
              f"{e.self_device_time_total / total:.1%} |")


def loss_curve(shape: str, arch: str, compile: bool, steps: int, workdir: str) -> list[float]:
    """Per-step training loss of a short run (same init and batches for eager and compiled)."""
    from simplicial.data import load_tokens
    from simplicial.distributed import DistInfo
    from simplicial.train import Trainer

    run = build_run(shape, arch, steps, workdir, compile=compile, lr=3e-3)
    data = load_tokens(run.data, Path(workdir) / "cache")
    trainer = Trainer(run, DistInfo(), torch.device("cuda", torch.cuda.current_device()))
    losses = []
    with trainer.batches(data) as batches:
        while trainer.step < trainer.total_steps:
            losses.append(trainer.checked_loss(trainer.train_step(batches)))
    del trainer
    gc.collect()
    torch.cuda.empty_cache()
    return losses


def compare_curves(eager: list[float], compiled: list[float]) -> dict:
    """Largest, median and final |difference| of two loss curves, the eager curve's own step-to-step noise (the
    median |loss_t - loss_{t-1}| over the last half of the curve) as the scale bf16 runs differ on, and `follows`:
    whether the compiled curve is the eager one up to that noise. The test is on the median and the final
    difference, not the largest: at this short warm-up a run can spike for a step (loss up by 1-2 nats, then back),
    and two bf16 runs whose rounding differs spike at different steps (seen on an H100: the dot model's eager curve
    spiked at step 18, its compiled one at step 26, both back on the common curve a step later), so one step's
    difference says nothing about whether compile changed the model. The bound is twice the step noise: after an
    early spike the two curves drift apart chaotically by up to about one step's noise (two H100 runs of the dot
    model: median difference 0.045 and 0.066 against a step noise of 0.088 and 0.073), while a model that learns
    worse sits off the curve for good."""
    diffs = [abs(a - b) for a, b in zip(eager, compiled)]
    tail = eager[len(eager) // 2:]
    noise = sorted(abs(a - b) for a, b in zip(tail[1:], tail[:-1]))
    step_noise = noise[len(noise) // 2] if noise else float("nan")
    median = sorted(diffs)[len(diffs) // 2]
    return {"max_abs_diff": max(diffs), "median_abs_diff": median, "final_abs_diff": diffs[-1],
            "eager_step_noise": step_noise,
            "follows": max(median, diffs[-1]) < max(0.05, 2 * step_noise),
            "eager_first_last": (eager[0], eager[-1]), "compiled_first_last": (compiled[0], compiled[-1])}


def header() -> str:
    import triton

    return (f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}, {torch.cuda.get_device_name()}, "
            f"torch {torch.__version__}, triton {triton.__version__}, CUDA {torch.version.cuda}, "
            f"Python {platform.python_version()}\ncommand: python {' '.join(sys.argv)}")


def table(rows: list[Row]) -> str:
    out = ["| shape | arch | mode | params (non-emb) | tokens/step | step tok/s | +data tok/s | model TFLOP/s | "
           "first step s | peak GiB | simplicial/dot (step, +data) |", "|" + "---|" * 4 + "---:|" * 7]
    by_key = {(r.shape, r.mode, r.arch): r for r in rows}
    for r in rows:
        if r.error:
            out.append(f"| {r.shape} | {r.arch} | {r.mode} | {r.params / 1e6:.1f}M | {r.tokens_per_step} | "
                       f"failed: {r.error} | | | | | |")
            continue
        ratio = ""
        dot = by_key.get((r.shape, r.mode, "dot"))
        if r.arch == "simplicial" and dot and not dot.error:
            ratio = f"{r.step_tok_s / dot.step_tok_s:.3f}, {r.data_tok_s / dot.data_tok_s:.3f}"
        out.append(f"| {r.shape} | {r.arch} | {r.mode} | {r.params / 1e6:.1f}M | {r.tokens_per_step} | "
                   f"{r.step_tok_s:,.0f} | {r.data_tok_s:,.0f} | {r.tflops:.1f} | {r.first_step_s:.1f} | "
                   f"{r.peak_gib:.1f} | {ratio} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="small,medium,paper", help=f"comma-separated, of {', '.join(SHAPES)}")
    p.add_argument("--archs", default="dot,simplicial")
    p.add_argument("--modes", default="eager", help="eager and/or compiled (training.compile)")
    p.add_argument("--steps", type=int, default=10, help="timed optimizer steps per measurement")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--profile", type=int, default=0, metavar="TOP",
                   help="profile one step of each eager measurement at the paper shape; print the TOP kernels")
    p.add_argument("--curve", type=int, default=0, metavar="STEPS",
                   help="train STEPS steps eager and compiled from the same init (first shape) and compare losses")
    p.add_argument("--json", help="write the rows (and curves) here")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_training.py: needs a CUDA GPU", file=sys.stderr)
        return 2
    shapes, archs, modes = args.shapes.split(","), args.archs.split(","), args.modes.split(",")
    for name, values, known in (("shape", shapes, SHAPES), ("arch", archs, ARCHS),
                                ("mode", modes, ("eager", "compiled"))):
        bad = [v for v in values if v not in known]
        if bad:
            print(f"bench_training.py: unknown {name} {bad[0]!r}; known: {', '.join(known)}", file=sys.stderr)
            return 2
    print(header(), flush=True)
    rows, curves = [], {}
    with tempfile.TemporaryDirectory() as workdir:
        for shape in shapes:
            for mode in modes:
                for arch in archs:
                    prof = args.profile if shape == "paper" and mode == "eager" else 0
                    row = measure(shape, arch, mode, args.steps, args.warmup, workdir, prof)
                    rows.append(row)
                    print(f"  {shape} {arch} {mode}: " + (f"failed: {row.error}" if row.error else
                          f"{row.step_tok_s:,.0f} tok/s ({row.tflops:.1f} TFLOP/s), +data {row.data_tok_s:,.0f}, "
                          f"first step {row.first_step_s:.1f} s"), flush=True)
        if args.curve:
            for arch in archs:
                try:
                    eager = loss_curve(shapes[0], arch, False, args.curve, workdir)
                    compiled = loss_curve(shapes[0], arch, True, args.curve, workdir)
                    curves[arch] = {"eager": eager, "compiled": compiled, **compare_curves(eager, compiled)}
                except Exception as e:
                    curves[arch] = {"error": f"{type(e).__name__}: {str(e).strip()[:300]}"}
    print("\n" + table(rows))
    for arch, c in curves.items():
        if "error" in c:
            print(f"\ncurve {arch} ({shapes[0]}, {args.curve} steps): failed: {c['error']}")
            continue
        print(f"\ncurve {arch} ({shapes[0]}, {args.curve} steps, lr 3e-3): eager {c['eager_first_last'][0]:.4f} -> "
              f"{c['eager_first_last'][1]:.4f}, compiled {c['compiled_first_last'][0]:.4f} -> "
              f"{c['compiled_first_last'][1]:.4f}; |diff| max {c['max_abs_diff']:.4f}, median "
              f"{c['median_abs_diff']:.4f}, final {c['final_abs_diff']:.4f}; eager step-to-step noise "
              f"{c['eager_step_noise']:.4f}: compiled {'follows' if c['follows'] else 'DOES NOT follow'} eager")
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header(), "rows": [r.__dict__ for r in rows],
                                               "curves": curves}, indent=1))
    failed = [r for r in rows if r.error]
    return 1 if failed and len(failed) == len(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
