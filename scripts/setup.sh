#!/usr/bin/env bash
# Installs every build and test dependency of irepa from Debian packages.
# Nothing else is downloaded, at set-up, configure or build time.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config
  libeigen3-dev libfmt-dev libcli11-dev libyaml-cpp-dev nlohmann-json3-dev
  zlib1g-dev libpng-dev libturbojpeg0-dev libflatbuffers-dev libplplot-dev plplot-driver-cairo
  catch2 libbenchmark-dev
  libopenmpi-dev openmpi-bin
  libprotobuf-dev protobuf-compiler
  dataset-fashion-mnist
)
if [ "${1:-}" = "--list" ]; then printf '%s\n' "${packages[@]}"; exit 0; fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
echo "irepa: dependencies present (${#packages[@]} packages)"
