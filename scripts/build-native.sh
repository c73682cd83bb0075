#!/usr/bin/env bash
# Builds weft's native addons with node-gyp: dnsd's sockets (dnsd/native/udp_batch.c → build/Release/udp_batch.node)
# and lb's conntrack deletions (lb/native/conntrack.c → build/Release/conntrack.node); both share native/netns.h.
# It uses only Node-API, whose ABI every Node since 18 keeps, so any Node's headers will do: Node 24's
# own when its npm package ships them, else the system's (Debian's nodejs package: /usr/include/node).
# Nothing is downloaded. npm runs this as the package's install script (`npm ci`); scripts/setup.sh
# runs it again when the C source is newer than the build.
set -euo pipefail
cd "$(dirname "$0")/.."
nodedir=""
for candidate in node_modules/node/node_modules/node-*/ /usr/ /usr/local/; do
  if [ -f "${candidate}include/node/node_api.h" ]; then
    nodedir="${candidate%/}"
    break
  fi
done
if [ -z "$nodedir" ]; then
  echo "build-native.sh: no Node headers (include/node/node_api.h) found; on Debian: apt-get install nodejs" >&2
  exit 1
fi
node_modules/.bin/node-gyp rebuild --nodedir="$nodedir" --loglevel=warn
