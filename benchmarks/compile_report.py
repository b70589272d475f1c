"""Registers, spills and shared memory of the 2-simplicial kernels' launch configs, compiled for Hopper without a GPU.

    python benchmarks/compile_report.py                  # the default config of each kernel, D in {64, 128}, bf16
    python benchmarks/compile_report.py --variants       # every launch of the plan's table too (bench --sweep's)
    python benchmarks/compile_report.py --json           # one JSON object per kernel launch, for tests and scripts
    python benchmarks/compile_report.py --windows 128,128    # other windows (the plan depends on them)
    python benchmarks/compile_report.py --windows 256,64 --gluon-fwd '{"PAIRED": true}'   # the Gluon forward with
                                                         # these keys over its default config at each head dim

Why: register pressure decides these kernels' speed (benchmarks/kernel_notes.md), and a device hour is scarce. The
Triton wheel ships ptxas and cuobjdump, so every config can be compiled for sm_90 on any machine and its resource
usage read from the cubin: the same registers and spill bytes the GPU reports (checked against the device's
`n_regs` / `n_spills` for the v5 defaults: 165 regs, no spills, for the D=64 forward; 110 spills for the D=64 dk1).
Nothing runs: each launch compiles only (JITFunction.warmup) against a compile target that stands in for the CUDA
driver's device query, so the plan (triton_kernels/plan.py) sees sm_90 and picks what an H100 runs. Timings still
need the GPU (bench_attention.py). For the warp-specialised Gluon kernels (triton_kernels/gluon_*.py) regs is the
count at launch, which sets how many programs share an SM; their partitions then re-divide it (setmaxnreg: 24 for the
TMA producer, 232-240 for a consumer).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

if os.environ.get("TRITON_INTERPRET", "0") == "1":  # kernels decorated for the interpreter cannot be compiled
    raise SystemExit("compile_report.py compiles real kernels: run it without TRITON_INTERPRET=1")

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.runtime import driver  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from triton_kernels import attention  # noqa: E402
from triton_kernels.plan import make_plan  # noqa: E402

KINDS = ("fwd", "bwd_dq", "bwd_dk1")
CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")


class CompileOnlyTarget:
    """What Triton's launcher asks the active driver before compiling: the device, its stream and its target. Set
    as the active driver, a launch compiles for `arch` and stops there (see `compile_only`)."""

    def __init__(self, arch: int = 90):
        self.target = GPUTarget("cuda", arch, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return self.target

    def get_active_torch_device(self):
        return torch.device("cpu")


def compile_only(arch: int = 90) -> None:
    """From here on in this process, `kernel[grid](...)` compiles for sm_`arch` and returns the compiled kernel
    without launching it (JITFunction.run's warmup mode). For this script's process only: nothing can run after."""
    driver.set_active(CompileOnlyTarget(arch))
    JITFunction.__getitem__ = lambda self, grid: (lambda *a, **kw: self.run(*a, grid=grid, warmup=True, **kw))


def resource_usage(kernel) -> dict:
    """Registers per thread, spill bytes (the local-memory stack frame) and shared memory of a compiled kernel, read
    from its cubin by cuobjdump (what the driver reports as n_regs and n_spills * 4 on the device)."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as fh:
        fh.write(kernel.asm["cubin"])
        fh.flush()
        text = subprocess.run([CUOBJDUMP, "--dump-resource-usage", fh.name], capture_output=True, text=True,
                              check=True).stdout
    m = re.search(r"REG:(\d+) STACK:(\d+)", text)
    if m is None:
        raise RuntimeError(f"cuobjdump printed no resource usage for {kernel.name}: {text[:200]!r}")
    return dict(name=kernel.name, regs=int(m[1]), spills=int(m[2]) // 4, smem=int(kernel.metadata.shared))


def _zero_inputs(d: int, dtype) -> tuple[list[torch.Tensor], torch.Tensor]:
    """q, k1, k2, v1, v2 [B, N, H, d] and one [B, H, N] fp32 statistic, all zeros: compiling needs only their strides
    and alignment (B=2, N=1024, H=8)."""
    b, n, h = 2, 1024, 8
    return [torch.zeros(b, n, h, d, dtype=dtype) for _ in range(5)], torch.zeros(b, h, n, dtype=torch.float32)


def compile_kind(kind: str, d: int, launch=None, dtype=torch.bfloat16, w1: int = 512, w2: int = 32) -> dict:
    """{launch name: resource usage} for one pass at head dim d: the default plan's kernel, or `launch` (a plan.Launch:
    kernel and config, as bench_attention.py's sweep runs it). Names are the pass, then pass_1 for a second launch
    (the tl dQ kernel's SPLIT)."""
    xs, stats = _zero_inputs(d, dtype)
    plan = make_plan(*xs, w1, w2)
    if launch is not None:
        plan = plan.replace(kind, kernel=launch.kernel, config=launch.config)
    chosen = getattr(plan, kind)
    if kind == "fwd":
        *_, kernels = attention.launcher(chosen.kernel)(*xs, w1, w2, 0.125, chosen.config)
    elif kind in ("bwd_dq", "bwd_dk1"):
        *_, kernels = attention.launcher(chosen.kernel)(xs[0], *xs, stats, stats, w1, w2, 0.125, chosen.config)
    else:
        raise ValueError(f"kind {kind!r}: expected one of {KINDS}")
    return {kind if i == 0 else f"{kind}_{i}": resource_usage(k) for i, k in enumerate(kernels)}


def compile_gluon_forward(d: int, override: dict, w1: int = 512, w2: int = 32, dtype=torch.bfloat16) -> dict:
    """Resource usage of the Gluon forward (triton_kernels/gluon_fwd.py) at head dim d with `override`'s keys over the
    plan's config at window w1: a config the package does not launch by default, compiled before any device time is
    spent on it."""
    from triton_kernels import gluon_fwd

    xs, _ = _zero_inputs(d, dtype)
    plan = make_plan(*xs, w1, w2)
    if plan.fwd.kernel != "gluon_fwd":
        raise ValueError(f"the plan runs {plan.fwd.kernel} here, not the Gluon forward")
    *_, kernels = gluon_fwd.forward(*xs, w1, w2, 0.125, {**plan.fwd.config, **override})
    return resource_usage(kernels[0])


def report(variants: bool, dims=(64, 128), w1: int = 512, w2: int = 32) -> list[dict]:
    """One record per compiled launch: kind, head dim, config label, registers, spills, shared memory."""
    from benchmarks.bench_attention import sweep_variants, variant_label

    records = []
    for d in dims:
        for kind in KINDS:
            for launch in [None, *(sweep_variants(kind, d) if variants else [])]:
                label = "default" if launch is None else variant_label(launch)
                try:
                    usage = compile_kind(kind, d, launch, w1=w1, w2=w2)
                except Exception as exc:  # noqa: BLE001 - a config that does not compile is a row, not a crash
                    records.append(dict(kind=kind, D=d, config=label, error=f"{type(exc).__name__}: {exc}"[:200]))
                    continue
                for name, u in usage.items():
                    records.append(dict(kind=name, D=d, config=label, **u))
    return records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", action="store_true", help="also bench_attention.py's sweep variants")
    ap.add_argument("--json", action="store_true", help="JSON lines instead of a markdown table")
    ap.add_argument("--arch", type=int, default=90, help="compute capability to compile for (default 90: H100/H200)")
    ap.add_argument("--windows", default="512,32", metavar="W1,W2", help="the windows (w1, w2) (default 512,32)")
    ap.add_argument("--gluon-fwd", metavar="JSON", help="only the Gluon forward, with these config keys over its "
                    "default at each head dim (e.g. '{\"PAIRED\": true}')")
    args = ap.parse_args(argv)
    try:
        w1, w2 = (int(x) for x in args.windows.split(","))
    except ValueError:
        ap.error(f"--windows {args.windows!r}: expected W1,W2 (two integers, e.g. 128,128)")
    override = None
    if args.gluon_fwd is not None:
        try:
            override = json.loads(args.gluon_fwd)
        except json.JSONDecodeError as exc:
            ap.error(f"--gluon-fwd {args.gluon_fwd!r}: not JSON ({exc})")
        if not isinstance(override, dict):
            ap.error(f"--gluon-fwd {args.gluon_fwd!r}: expected a JSON object of config keys")
    compile_only(args.arch)
    if override is None:
        records = report(args.variants, w1=w1, w2=w2)
    else:
        records = []
        for d in (64, 128):
            try:
                records.append(dict(kind="fwd", D=d, config=json.dumps(override),
                                    **compile_gluon_forward(d, override, w1, w2)))
            except Exception as exc:  # noqa: BLE001 - a config that does not compile or apply is a row
                records.append(dict(kind="fwd", D=d, config=json.dumps(override),
                                    error=f"{type(exc).__name__}: {exc}"[:200]))
    if args.json:
        for r in records:
            print(json.dumps(r))
        return 0
    print(f"# sm_{args.arch}, triton {triton.__version__}, bf16, (w1, w2) = ({w1}, {w2}); "
          f"command: python benchmarks/compile_report.py "
          f"{' '.join(argv if argv is not None else sys.argv[1:])}")
    print("| kernel | D | config | compiled | regs | spills | shared KiB |")
    print("|---|---|---|---|---|---|---|")
    for r in records:
        if "error" in r:
            print(f"| {r['kind']} | {r['D']} | {r['config']} | failed: {r['error']} | | | |")
        else:
            print(f"| {r['kind']} | {r['D']} | {r['config']} | {r['name']} | {r['regs']} | {r['spills']} "
                  f"| {r['smem'] / 1024:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
