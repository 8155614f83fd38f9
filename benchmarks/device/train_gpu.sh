#!/usr/bin/env bash
# Train the bundled model's `gpu` configuration on a lent GPU machine (this workplace's `device` tool).
# The machine has torch but no network: wheels for transformers and tree-sitter travel in .whl/ (see README).
# Usage there: bash benchmarks/device/train_gpu.sh SECONDS   (results land in $OUT)
set -uo pipefail
budget=${1:-450}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, tree_sitter; print('torch', torch.__version__, 'transformers', transformers.__version__)"
python3 -m infill.train --config gpu --time-budget "$budget" --out /tmp/weights --run-dir /tmp/run 2>&1 \
  | tr '\r' '\n' | grep -v "Writing model shards" | tee "$OUT/train.log"
status=${PIPESTATUS[0]}
cp /tmp/weights/model*.safetensors "$OUT/" 2>/dev/null
tar czf "$OUT/meta.tgz" -C /tmp weights/config.json weights/generation_config.json weights/training_report.json \
  weights/model.safetensors.index.json run/loss.png run/history.json run/report.json run/corpus_manifest.json 2>/dev/null
ls -la "$OUT"
exit "$status"
