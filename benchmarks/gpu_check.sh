#!/usr/bin/env bash
# Device run for the Triton 2-simplicial kernels: GPU tests + benchmark, logs under $OUT (or ./gpu_out).
#   benchmarks/gpu_check.sh [tests] [target] [sweep] [grid] [ceiling]     (default: tests target)
# Run through the device tool from the repo root with carry [".whl"] so the simplicial-attention 0.1.6 wheel
# (a benchmark comparison only) can be installed into /tmp/site.
# Logs: kernels-gpu.log, attention.log, sweep.log, ceiling.log (and TTGIR dumps under ir/).
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
MODES=${*:-tests target}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
{
  echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC') git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty')"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c 'import sys, torch, triton; print("python", sys.version.split()[0], "torch", torch.__version__, "triton", triton.__version__)'
} | tee "$OUT/env.txt"
for m in $MODES; do
  case $m in
    tests)
      echo "## command: python3 -m pytest -q -rs -s -m gpu tests/test_kernels_gpu.py" | tee "$OUT/kernels-gpu.log"
      timeout 420 python3 -m pytest -q -rs -s -p no:cacheprovider -m gpu tests/test_kernels_gpu.py 2>&1 \
        | tee -a "$OUT/kernels-gpu.log" | grep -v '^\[gpu-table\]' | tail -40 ;;
    target) timeout 200 python3 benchmarks/bench_attention.py --target 2>&1 | tee "$OUT/attention-target.log" ;;
    sweep) timeout 420 python3 benchmarks/bench_attention.py --sweep --rep 50 2>&1 | tee "$OUT/sweep.log" ;;
    ceiling) timeout 200 python3 benchmarks/triton_flash_ceiling.py --rep 50 --dump-ir "$OUT/ir" 2>&1 \
        | tee "$OUT/ceiling.log" ;;
    grid) timeout 540 python3 benchmarks/bench_attention.py --rep 50 2>&1 | tee "$OUT/attention.log" ;;
  esac
done
