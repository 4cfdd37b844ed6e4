#!/usr/bin/env bash
# Installs the Debian packages phinfer needs to build and test. Idempotent: does nothing when all are present.
set -euo pipefail
packages=(cmake g++ make pkg-config nlohmann-json3-dev libcli11-dev libpcre2-dev libedit-dev libgtest-dev tmux)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
