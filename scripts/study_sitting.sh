#!/usr/bin/env bash
# One sitting of a study on a GPU machine, through the product's CLI (scripts/study_sitting.py says how).
#
# Here, once:   scripts/study_sitting.sh --wheels      # submitit (the GPU image lacked it before) as a wheel, into .whl/
# On the GPU:   scripts/study_sitting.sh studies/dot-vs-simplicial-h100/study.yaml [SECONDS]
#               (device tool: run, carry [".whl"], timeout_s 600; SECONDS of training, default 420, fit a
#               10-minute command with the cache build, the hard-stop grace and the packing)
# Here, after:  python3 scripts/study_sitting.py unpack studies/dot-vs-simplicial-h100 <files_at>/<name>-sitting.tar.gz
#               git add studies/dot-vs-simplicial-h100 && git commit -m "study: sitting N"
set -euo pipefail
cd "$(dirname "$0")/.."

# the H100 image (studies/dot-vs-simplicial-h100/machine.md) has cloudpickle, typing_extensions and threadpoolctl
WHEELS="submitit==1.5.4"
if [ "${1:-}" = "--wheels" ]; then
  mkdir -p .whl
  grep -qx '/.whl/' .gitignore || { echo "scripts/study_sitting.sh: .whl/ must be ignored by git" >&2; exit 2; }
  python3 -m pip download --no-deps --only-binary=:all: -d .whl $WHEELS
  ls -l .whl
  exit 0
fi

STUDY=${1:?usage: scripts/study_sitting.sh STUDY.yaml [SECONDS] | --wheels}
SECS=${2:-420}
OUT=${OUT:-$PWD/sitting_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
missing=$(python3 - <<'PY'
import importlib.util
need = ["torch", "triton", "numpy", "scipy", "pandas", "matplotlib", "yaml", "submitit", "tokenizers", "threadpoolctl"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))
PY
)
if [ -n "$missing" ]; then
  echo "scripts/study_sitting.sh: missing on this machine: $missing (carry their wheels in .whl/, see --wheels)" >&2
  exit 2
fi
{
  echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC') sitting of $STUDY, $SECS s"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  python3 -c 'import sys, torch, triton; print("python", sys.version.split()[0], "torch", torch.__version__, "triton", triton.__version__)'
} | tee "$OUT/env.txt"
python3 scripts/study_sitting.py run "$STUDY" --seconds "$SECS" --out "$OUT" 2>&1 | tee "$OUT/sitting.log"
