#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite (needs ../shared beside the project root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/install-npm.sh   # the openai client the server tests drive
bash scripts/build.sh -DPHINFER_BUILD_TESTS=ON
cd build
ctest --output-on-failure -j"$(nproc)" --timeout 900
