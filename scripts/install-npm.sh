#!/usr/bin/env bash
# Installs the npm packages of the server tests (the official openai client; puppeteer-core, which drives
# Debian's chromium and downloads no browser) into tests/server/node_modules,
# exactly as locked in tests/server/package-lock.json. Idempotent: does nothing when they are already installed.
set -euo pipefail
dir="$(cd "$(dirname "$0")/../tests/server" && pwd)"
# npm ci writes node_modules/.package-lock.json: newer than the lock file means this lock is installed.
if [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then exit 0; fi
cd "$dir" && npm ci --no-audit --no-fund
