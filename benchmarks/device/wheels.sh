#!/usr/bin/env bash
# Wheels the lent GPU machine lacks (Python 3.12, x86-64, no network): tree-sitter and the bundled grammars.
# Everything else the training run needs (torch, transformers, tokenizers, safetensors, numpy) is in its image.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "tree-sitter==$(python3 -c 'import importlib.metadata as m; print(m.version("tree-sitter"))')" \
  tree-sitter-python tree-sitter-javascript tree-sitter-typescript tree-sitter-go tree-sitter-rust \
  tree-sitter-java tree-sitter-c tree-sitter-cpp tree-sitter-lua
ls -la .whl && du -sh .whl
