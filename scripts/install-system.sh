#!/usr/bin/env bash
# Installs the system tools weft's lab and tests use (Debian/Ubuntu). Idempotent: does nothing
# when every tool is already present, and runs `apt-get update` at most once.
set -euo pipefail
cd "$(dirname "$0")/.."

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
for cmd in ip bridge nft conntrack dig iperf3 tcpdump ethtool curl ping dnsperf dnsmasq haproxy wrk etcd etcdctl; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    echo "install-system.sh: $cmd is missing"
    missing=yes
  fi
done
if [ "$missing" = yes ]; then
  # iputils-ping: the lab's e2e tests check underlay reachability with ping.
  # dnsperf and dnsmasq: bench/dns.ts. dnsmasq-base is the binary alone; the `dnsmasq` package would
  # also install and start a system service holding port 53 on the host.
  # haproxy and wrk: bench/lb.ts (the L4 balancer the routing mesh is compared with, and the
  # new-connection-rate client). haproxy's packaged config binds no port; bench/lb.ts runs its own.
  # etcd-server and etcd-client (3.4 on bookworm): bench/control-plane.ts's reference for the
  # manager's committed changes per second; it runs its own member on 127.0.0.1 inside a lab
  # namespace, its data in a temporary directory. On a host with systemd the package also enables
  # and starts a service of its own on localhost:2379, which weft does not use.
  apt_install iproute2 nftables conntrack bind9-dnsutils iperf3 tcpdump ethtool curl ca-certificates iputils-ping \
    dnsperf dnsmasq-base haproxy wrk etcd-server etcd-client
fi

# redis-server: the Swarm walkthrough's redis service (test/e2e/swarm.test.ts) runs the host's
# redis-server inside tasks. On a host with systemd the package also enables its own service on
# 127.0.0.1:6379, which weft does not use.
if ! command -v redis-server >/dev/null 2>&1; then
  apt_install redis-server
fi

if ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
fi

# g++, make and python3: node-gyp builds the native addons (scripts/build-native.sh) with them;
# Debian's nodejs package brings the Node-API headers it compiles against.
for cmd in g++ make python3; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    apt_install g++ make python3
    break
  fi
done
if [ ! -f /usr/include/node/node_api.h ] && ! ls node_modules/node/node_modules/node-*/include/node/node_api.h >/dev/null 2>&1; then
  apt_install nodejs
fi

echo "install-system.sh: system tools present"
