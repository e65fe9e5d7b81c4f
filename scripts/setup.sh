#!/usr/bin/env bash
# Installs, idempotently, the Debian packages Switchboard needs to build, test and bench.
# Prints what it installs; does nothing when everything is already present.
set -euo pipefail

PACKAGES=(
  elixir erlang-dev erlang-nox erlang-proper erlang-dialyzer
  cmake make g++ clang clang-format libclang-rt-14-dev
  libboost-dev libmimalloc-dev catch2 zlib1g-dev pkg-config
  erlang-cowlib erlang-jiffy libzstd-dev libsimdjson-dev erlang-folsom chromium nodejs
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

# The gateway's tests and bench drive real WebSocket clients under Node (npm's
# ws and fzstd, and an unmodified discord.js bot; pinned by
# test/js/package-lock.json).
install_js_clients() {
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/test/js"
  if [ ! -d "$dir/node_modules/ws" ] || [ ! -d "$dir/node_modules/fzstd" ] ||
    [ ! -d "$dir/node_modules/discord.js" ]; then
    echo "setup: npm ci in test/js"
    (cd "$dir" && npm ci --no-audit --no-fund --silent)
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} required packages present"
  install_js_clients
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
install_js_clients
echo "setup: done"
