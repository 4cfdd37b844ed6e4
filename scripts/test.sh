#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite (needs ../shared beside the project root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/install-npm.sh   # the openai client the server tests drive
# The Python module's tests (ctest python_bindings) run under Debian's interpreter, which has its numpy and pytest.
bash scripts/build.sh -DPHINFER_BUILD_TESTS=ON -DPHINFER_BUILD_PYTHON=ON -DPython_EXECUTABLE=/usr/bin/python3
cd build
ctest --output-on-failure -j"$(nproc)" --timeout 900
