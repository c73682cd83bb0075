#!/usr/bin/env bash
# Installs everything weft needs on a Debian host: system packages, then the
# npm dependencies (which bring Node 24 as the `node` devDependency).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-system.sh
if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund # builds the native addons too (package.json's install script)
elif [ ! -f build/Release/udp_batch.node ] || [ ! -f build/Release/conntrack.node ] ||
     [ -n "$(find binding.gyp native dnsd/native lb/native -newer build/Release/udp_batch.node -o -newer build/Release/conntrack.node)" ]; then
  scripts/build-native.sh
fi
