#!/usr/bin/env bash
# The prepared GPU training run (issues "Train the bundled model on a lent GPU" and its sequel), one command.
# On the lent machine, through the device tool, with the tree-sitter wheels carried:
#   run(command="bash benchmarks/device/train_gpu.sh 540", carry=[".whl"], timeout_s=580)
# then here: python -m infill.train.device --unpack FILES_AT runs/gpu-weights   (see README, Training)
# On this CPU, the same code in about a minute:  bash benchmarks/device/train_gpu.sh --dry-run
# The machine has torch and transformers but no tree-sitter and no network: `bash benchmarks/device/wheels.sh`
# puts the wheels in .whl/ first. Results land in $OUT (at most 8 files of at most 16 MiB: see infill/train/device.py).
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
OUT=${OUT:-runs/device-out}
mkdir -p "$OUT"
if [ "${1:-}" = "--dry-run" ]; then
  python3 -m infill.train.device --dry-run --out "$OUT" 2>&1 | tee "$OUT/train.log"
  exit "${PIPESTATUS[0]}"
fi
deadline=${1:-540}
if ! python3 -c "import tree_sitter, tree_sitter_python" 2>/dev/null; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  else
    echo "no tree-sitter and no .whl/: holes will follow lines and indentation only" >&2
  fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
python3 -m infill.train.device --out "$OUT" --deadline-s "$deadline" "${@:2}" 2>&1 | tee "$OUT/train.log"
exit "${PIPESTATUS[0]}"
