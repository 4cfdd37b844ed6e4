#!/usr/bin/env bash
# Builds the phinfer Python module and installs it into a Python interpreter's site-packages (a venv's when one
# is active), offline, with Debian's pybind11. Usage: scripts/install-python.sh [PYTHON]  (default: python3 on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(command -v "${1:-python3}")
python=$("$python" -c 'import sys; print(sys.executable)')  # through pyenv-style shims to the interpreter itself
bash scripts/install-deps.sh
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B build-python -DCMAKE_BUILD_TYPE=Release -DPHINFER_BUILD_PYTHON=ON -DPHINFER_BUILD_TESTS=OFF \
  -DPython_EXECUTABLE="$python" -UPHINFER_PYTHON_INSTALL_DIR "${launcher[@]}" >/dev/null
cmake --build build-python -j"$(nproc)" --target phinfer_python
cmake --install build-python --component python
cd /  # import the installed package, not a folder of this checkout
"$python" -c 'import phinfer; print("phinfer installed for", __import__("sys").executable, "in", phinfer.__path__[0])'
