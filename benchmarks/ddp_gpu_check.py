"""Multi-GPU check (issue 8): one 2-simplicial training run on 1 GPU and on 2 GPUs (DDP through NCCL).

    python benchmarks/ddp_gpu_check.py [--out DIR] [--steps 140]

Launches the same run three times the way the product launches runs (`launch.py SWEEP.yaml`, submitit's local
executor), each into its own output root, with the same global batch and seed:
  A: 1 task, 1 GPU, micro-batch 16;
  B: 2 tasks, 2 GPUs (DistributedDataParallel, NCCL; each rank gets half of the global batch's micro-batches);
  C: 1 task, 1 GPU, micro-batch 8: the same global batch split into twice as many accumulation steps. A vs C is
     the bf16 noise floor of summing the same gradient in another order, the perturbation DDP makes too.
Prints the loss curves side by side, max |A - B| and max |A - C| over logged steps, and steady-state tokens/s
(median of the logged windows after the first fifth of the run, so Triton's compile and autotune are excluded).
Keep NCCL_NVLS_ENABLE=0 (NVLink multicast off) as the device machine sets it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SWEEP = """\
name: ddp-check
output: {output}
architectures:
  simplicial: {{type: simplicial, every: 2, w1: 512, w2: 32}}
sizes:
  m: {{n_layers: 8, d_model: 768, n_heads: 12}}
budgets:
  tokens: [{tokens}]
data: {{source: python-stdlib, tokenizer: byte, vocab_size: 256, max_bytes: 40000000}}
training:
  seq_len: 1024
  batch_tokens: 131072
  micro_batch_size: {micro}
  lr: 1.0e-3
  warmup_fraction: 0.1
  eval_every: 0
  eval_tokens: 262144
  log_every: 5
  checkpoint_every: 100000
  device: cuda
executor:
  name: local
  max_parallel: 1
  resources: {{gpus_per_node: {gpus}, tasks_per_node: {gpus}, timeout_min: 30}}
"""


def launch(out: Path, name: str, gpus: int, micro: int, steps: int) -> dict:
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sweep.yaml"
    path.write_text(SWEEP.format(output=folder / "outputs", tokens=131072 * steps, micro=micro, gpus=gpus))
    env = dict(os.environ, NCCL_NVLS_ENABLE="0", PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(ROOT / "launch.py"), str(path)], env=env, capture_output=True, text=True)
    print(f"[{name}] launch.py exit {proc.returncode} in {time.time() - t0:.0f} s\n{proc.stdout[-1500:]}", flush=True)
    runs = list((folder / "outputs" / "ddp-check" / "runs").glob("*/result.json"))
    if proc.returncode != 0 or not runs:
        logs = sorted((folder / "outputs" / "ddp-check" / "submitit").rglob("*.err"))
        for log in logs[-2:]:
            print(f"--- {log}\n{log.read_text(errors='replace')[-3000:]}")
        raise SystemExit(f"[{name}] failed")
    result_text, metrics_text = runs[0].read_text(), (runs[0].parent / "metrics.jsonl").read_text()
    (folder / "result.json").write_text(result_text)  # kept beside the sweep file, shallow enough to bring back
    (folder / "metrics.jsonl").write_text(metrics_text)
    result = json.loads(result_text)
    rows = [json.loads(line) for line in metrics_text.splitlines()]
    rows = [r for r in rows if "train_loss" in r and "tokens_per_s" in r]
    steady = [r["tokens_per_s"] for r in rows if r["step"] > steps // 5]
    return {"result": result, "rows": rows, "tokens_per_s": statistics.median(steady)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "ddp_out"))
    ap.add_argument("--steps", type=int, default=140)
    args = ap.parse_args()
    out = Path(args.out).resolve() / "ddp_work"
    import torch

    print(f"# ddp_gpu_check: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
          f"NCCL_NVLS_ENABLE={os.environ.get('NCCL_NVLS_ENABLE')}, steps {args.steps}", flush=True)
    a = launch(out, "A_1gpu", 1, 16, args.steps)
    b = launch(out, "B_2gpu", 2, 16, args.steps)
    c = launch(out, "C_1gpu_micro8", 1, 8, args.steps)
    print("\n| step | A 1 GPU | B 2 GPUs | C 1 GPU, micro 8 | B - A | C - A |\n|---|---|---|---|---|---|")
    d_ab, d_ac = [], []
    for ra, rb, rc in zip(a["rows"], b["rows"], c["rows"]):
        assert ra["step"] == rb["step"] == rc["step"]
        la, lb, lc = ra["train_loss"], rb["train_loss"], rc["train_loss"]
        d_ab.append(abs(lb - la))
        d_ac.append(abs(lc - la))
        if ra["step"] % 10 == 0:
            print(f"| {ra['step']} | {la:.4f} | {lb:.4f} | {lc:.4f} | {lb - la:+.4f} | {lc - la:+.4f} |")
    print(f"\nfinal val loss: A {a['result']['val_loss']:.4f}  B {b['result']['val_loss']:.4f}  "
          f"C {c['result']['val_loss']:.4f}")
    print(f"max |B - A| train loss over {len(d_ab)} logged steps: {max(d_ab):.4f} (mean {statistics.mean(d_ab):.4f})")
    print(f"max |C - A| (bf16 noise floor, same global batch, other summation order): {max(d_ac):.4f} "
          f"(mean {statistics.mean(d_ac):.4f})")
    ratio = b["tokens_per_s"] / a["tokens_per_s"]
    print(f"steady tokens/s: 1 GPU {a['tokens_per_s']:,.0f}   2 GPUs {b['tokens_per_s']:,.0f}   ratio {ratio:.2f}x")
    print(f"world sizes: A {a['result'].get('world_size')} B {b['result'].get('world_size')}; "
          f"params {a['result'].get('params'):,}")
    ok = max(d_ab) <= max(2 * max(d_ac), 0.02) and ratio >= 1.8
    print("VERDICT:", "PASS" if ok else "FAIL", "(|B-A| <= max(2 x floor, 0.02) and ratio >= 1.8)")


if __name__ == "__main__":
    main()
