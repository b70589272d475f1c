"""Do two versions of the kernel package launch the same machine code? Offline, for sm_90, every default launch.

    python benchmarks/ptx_identity.py --baseline /path/to/copy/triton_kernels_old     # a renamed copy (bench_ab.py)

Why: a refactor of the host code (dispatch, file layout, dead-variant removal) should not change a single
instruction of a default launch; the GPU then has nothing to re-measure. Each version runs a forward and a whole
backward per case under the compile-only target of compile_report.py (nothing launches, no GPU needed), every
compiled kernel's PTX is normalised (kernel name, comments, .loc / .file lines and debug sections removed: they name
source files and lines, which a file split moves) and hashed, and the two lists are compared case by case. Cases:
D = 64 and 128 in bf16 at six window classes, fp16 at the target, D = 32 and 256, fp32, and bf16 with heads not
packed in rows (the tl fallback on Hopper). The baseline may be the package before the plan (its
simplicial_attention._forward / _backward) or one with attention.py.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import re
import sys

if os.environ.get("TRITON_INTERPRET", "0") == "1":
    raise SystemExit("ptx_identity.py compiles real kernels: run it without TRITON_INTERPRET=1")

import torch  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchmarks.compile_report import compile_only  # noqa: E402

# kernel renames between versions, old name -> new name
RENAMED = {"_simplicial_bwd_dq_gluon": "_simplicial_bwd_dq_dk2dv2_gluon",
           "_simplicial_bwd_dq_roles_gluon": "_simplicial_bwd_dq_dk2dv2_roles_gluon"}


def cases():
    """(D, dtype or "T" for heads not in rows, w1, w2)."""
    out = [(d, torch.bfloat16, w1, w2) for d in (64, 128)
           for w1, w2 in ((512, 32), (128, 128), (256, 64), (1024, 16), (200, 32), (300, 16))]
    out += [(d, torch.float16, 512, 32) for d in (64, 128)] + [(d, torch.bfloat16, 512, 32) for d in (32, 256)]
    out += [(d, torch.float32, 512, 32) for d in (64, 128)]
    out += [(d, "T", w1, w2) for d in (64, 128) for w1, w2 in ((512, 32), (128, 128), (1024, 16))]
    return out


def normalised_ptx(kernel) -> str:
    ptx = kernel.asm["ptx"].replace(kernel.name, "KERNEL")
    ptx = re.sub(r"^//.*$", "", ptx, flags=re.M)
    ptx = re.sub(r"^\s*\.(loc|file)\b.*$", "", ptx, flags=re.M)
    ptx = ptx.split(".section\t.debug")[0].split(".section .debug")[0]
    return re.sub(r"\n\s*\n+", "\n", ptx)


def launches(package, d, dtype, w1, w2) -> list[tuple[str, str]]:
    """[(kernel name, sha1 of its normalised PTX)] of one forward and backward of `package` at this case."""
    b, n, h = 2, 1024, 8
    if dtype == "T":
        xs = [torch.zeros(b, h, n, d, dtype=torch.bfloat16).transpose(1, 2) for _ in range(5)]
    else:
        xs = [torch.zeros(b, n, h, d, dtype=dtype) for _ in range(5)]
    compiled = []
    run = JITFunction.run

    def recording_run(self, *a, **kw):
        k = run(self, *a, **kw)
        compiled.append((RENAMED.get(k.name, k.name), hashlib.sha1(normalised_ptx(k).encode()).hexdigest()[:12]))
        return k

    JITFunction.run = recording_run
    try:
        w1, w2 = min(w1, n), min(w2, n)
        if hasattr(package, "attention"):
            plan = package.plan.make_plan(*xs, w1, w2)
            out, lse = package.attention.forward(*xs, w1, w2, 0.125, plan)
            package.attention.backward(xs[0], *xs, out, lse, w1, w2, 0.125, plan)
        else:
            sa = importlib.import_module(f"{package.__name__}.simplicial_attention")
            out, lse = sa._forward(*xs, w1, w2, 0.125)
            sa._backward(xs[0], *xs, out, lse, w1, w2, 0.125)
    finally:
        JITFunction.run = run
    return compiled


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", required=True, metavar="DIR", help="a renamed copy of the earlier package")
    args = ap.parse_args(argv)
    folder, name = os.path.split(os.path.abspath(args.baseline.rstrip("/")))
    sys.path.insert(0, folder)
    compile_only(90)
    old = importlib.import_module(name)
    new = importlib.import_module("triton_kernels")
    importlib.import_module("triton_kernels.plan")
    print("| D | dtype | (w1, w2) | launches | same PTX | kernels (new names) and PTX hashes |")
    print("|---|---|---|---|---|---|")
    differ = 0
    for d, dtype, w1, w2 in cases():
        a, b = launches(old, d, dtype, w1, w2), launches(new, d, dtype, w1, w2)
        differ += a != b
        label = "bf16, heads not in rows (tl)" if dtype == "T" else str(dtype)[6:]
        print(f"| {d} | {label} | ({w1}, {w2}) | {len(b)} | {'yes' if a == b else 'NO'} "
              f"| {', '.join(f'{k} {h}' for k, h in b)} |", flush=True)
    print(f"# {len(cases())} cases, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
