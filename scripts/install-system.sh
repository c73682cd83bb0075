#!/usr/bin/env bash
# Installs the system tools weft's lab and tests use (Debian/Ubuntu). Idempotent: does nothing
# when every tool is already present, and runs `apt-get update` at most once.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "install-system.sh: must run as root (it installs packages with apt-get)" >&2
  exit 1
fi

updated=no
apt_install() {
  if [ "$updated" = no ]; then
    apt-get update
    updated=yes
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

missing=no
for cmd in ip bridge nft conntrack dig iperf3 tcpdump ethtool curl ping; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    echo "install-system.sh: $cmd is missing"
    missing=yes
  fi
done
if [ "$missing" = yes ]; then
  # iputils-ping: the lab's e2e tests check underlay reachability with ping.
  apt_install iproute2 nftables conntrack bind9-dnsutils iperf3 tcpdump ethtool curl ca-certificates iputils-ping
fi

if ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
fi

echo "install-system.sh: system tools present"
