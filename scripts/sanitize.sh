#!/usr/bin/env bash
# AddressSanitizer (LeakSanitizer on) + UBSan pass, every report fatal: builds build-asan with
# PHINFER_SANITIZE=ON at -O1, runs the test suite there (minus the tests listed below) and the fuzz
# harnesses at PHINFER_FUZZ_SCALE (default 5) times their Release inputs. Called by .ci/run.
# Usage: scripts/sanitize.sh [extra ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
start=$SECONDS

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
# -O1 with line tables: reports name the line, the suite stays fast enough; asserts stay on.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Sanitize -DCMAKE_CXX_FLAGS_SANITIZE="-O1 -g1" \
  -DPHINFER_SANITIZE=ON -DPHINFER_BUILD_TESTS=ON "${launcher[@]}" >/dev/null
cmake --build build-asan -j"$(nproc)"
echo "sanitize: build $((SECONDS - start)) s"

# Tests left out of this pass, with the reason (they still run in the Release suite):
excluded=(
  # The node tests of `phinfer serve` (merged last) have not yet been run against the ASan build; the
  # Release suite runs them. Put them here back in once a sanitizer run of the server is clean.
  server_openai_client
  # The chat page in headless Chromium: a browser-timing test of the page; the server code it reaches is
  # the same the openai-client tests reach.
  server_chat_page
)
exclude_regex=$(IFS='|'; echo "${excluded[*]:-}")

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:check_initialization_order=1:detect_stack_use_after_return=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export PHINFER_FUZZ_SCALE="${PHINFER_FUZZ_SCALE:-5}"
cd build-asan
suite_start=$SECONDS
ctest --output-on-failure -j"$(nproc)" --timeout 1500 ${exclude_regex:+-E "$exclude_regex"} "$@"
echo "sanitize: suite $((SECONDS - suite_start)) s, total $((SECONDS - start)) s (PHINFER_FUZZ_SCALE=$PHINFER_FUZZ_SCALE)"
