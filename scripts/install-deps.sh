#!/usr/bin/env bash
# Installs the Debian packages chordkv needs to build, test and benchmark.
# Idempotent: installs only what is missing, runs `apt-get update` only when it must.
# Works as root on a fresh Debian 12 machine; uses sudo when not root.
set -euo pipefail

packages=(
    build-essential cmake pkg-config git
    libboost-dev libboost-serialization-dev libboost-program-options-dev
    librocksdb-dev libssl-dev libspdlog-dev libfmt-dev
    libgtest-dev libgmock-dev libbenchmark-dev
    clang clang-format python3 iproute2
    libclang-rt-dev llvm  # scripts/fuzz: libFuzzer and the sanitizer runtimes; llvm-symbolizer
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#packages[@]} packages present"
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has empty package lists; refresh them once before installing.
if ! $sudo apt-get install -y --no-install-recommends "${missing[@]}"; then
    $sudo apt-get update
    $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi
