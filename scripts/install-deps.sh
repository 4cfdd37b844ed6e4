#!/usr/bin/env bash
# Installs the Debian packages phinfer needs to build and test. Idempotent: does nothing when all are present.
set -euo pipefail
# libcpp-httplib-dev: the HTTP server of `phinfer serve` (header only); nodejs/npm: the server's tests
# drive it with the official openai client (scripts/install-npm.sh). python3-jsonschema: the independent
# validator of constrained-decoding outputs (tests/grammar/validate_json_outputs.py).
# pybind11-dev, python3-dev: the Python module (bindings/python); python3-numpy, python3-pytest: its tests.
packages=(cmake g++ make pkg-config nlohmann-json3-dev libcli11-dev libpcre2-dev libedit-dev libgtest-dev tmux
          libcpp-httplib-dev pybind11-dev python3-dev python3-numpy python3-pytest python3-jsonschema)
# libjansson-dev: the C API test (tests/c_api) reads the goldens' JSON from C.
packages+=(libjansson-dev)
# chromium: the chat page's test runs it headless (puppeteer-core from npm drives it; no browser download).
packages+=(chromium)
# The Vulkan backend: headers and glslc to build it; the loader and Mesa's lavapipe (a Vulkan device on the
# CPU) to test it here, where there is no GPU.
packages+=(libvulkan-dev glslc libvulkan1 mesa-vulkan-drivers)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A node from elsewhere (e.g. nodesource, which bundles npm) is fine; only install Debian's when none is there.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
