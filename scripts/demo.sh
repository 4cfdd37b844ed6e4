#!/usr/bin/env bash
# Installs dependencies, builds phinfer (Release), makes a tiny random-weight model once, and streams a
# chat answer with its speed stats. Random weights give gibberish: point -m at a real Phi-3 folder for sense.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh -DPHINFER_BUILD_TESTS=OFF
model=models/tiny-synthetic
if [ ! -f "$model/config.json" ]; then
  ./build/phinfer make-synthetic --preset tiny --out "$model" --seed 1
fi
./build/phinfer generate -m "$model" --chat --system "You are a helpful assistant." \
  -p "Tell me a short story about a lighthouse." --max-new-tokens 64
