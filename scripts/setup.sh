#!/usr/bin/env bash
# Installs, idempotently, the Debian packages Switchboard needs to build, test and bench.
# Prints what it installs; does nothing when everything is already present.
set -euo pipefail

PACKAGES=(
  elixir erlang-dev erlang-nox erlang-proper erlang-dialyzer
  cmake make g++ clang clang-format libclang-rt-14-dev
  libboost-dev libmimalloc-dev catch2 zlib1g-dev pkg-config
  erlang-cowlib erlang-jiffy libzstd-dev libsimdjson-dev erlang-folsom chromium
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} required packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
