#!/usr/bin/env bash
# The GPU path, measured, in one short run (about 5-8 minutes on one GPU).
#
#   scripts/gpu_check.sh              # on a CUDA machine: CUDA tests, then scripts/gpu_check.py
#   scripts/gpu_check.sh --dry-run    # anywhere: the same steps on the CPU with small sizes
#
# Figures go to stdout and to $OUT/gpu_check.json (or ./gpu_check.json when OUT is unset).
# PYTHON selects the interpreter (default: .venv/bin/python if present, else python).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"
elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
else PY=python; fi
OUTDIR="${OUT:-.}"
mkdir -p "$OUTDIR"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

MODE=gpu
if [[ "${1:-}" == "--dry-run" || "${1:-}" == "--cpu" ]]; then MODE=cpu; fi

echo "== environment"
"$PY" - <<'PY'
import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}, "
      f"CUDA {torch.version.cuda}, devices: {torch.cuda.device_count()}")
PY
if [[ "$MODE" == gpu ]]; then
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "CUDA is not available to torch here: run '$0 --dry-run' to check the script on the CPU" >&2
    exit 2
  fi
fi

echo "== CUDA tests (skipped without CUDA)"
# the tests that exercise the CUDA path: device choice, autocast, fit/classify_map/probability_map on cuda
timeout 300 "$PY" -m pytest -q -p no:cacheprovider -rs tests/core/nn/test_cuda.py -x
if [[ "$MODE" == cpu ]]; then
  # and the device tests that run everywhere
  timeout 300 "$PY" -m pytest -q -p no:cacheprovider tests/core/nn/test_device_modelio.py -x
fi

echo "== throughput and peak GPU memory"
ARGS=(--json "$OUTDIR/gpu_check.json")
LIMIT=540
if [[ "$MODE" == cpu ]]; then ARGS+=(--cpu); LIMIT=1800; fi
timeout "$LIMIT" "$PY" scripts/gpu_check.py "${ARGS[@]}"
