#!/usr/bin/env bash
# Installs everything weft needs on a Debian host: system packages, then the
# npm dependencies (which bring Node 24 as the `node` devDependency).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-system.sh
if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund # builds dnsd's native addon too (package.json's install script)
elif [ ! build/Release/udp_batch.node -nt dnsd/native/udp_batch.c ] || [ binding.gyp -nt build/Release/udp_batch.node ]; then
  scripts/build-native.sh
fi
