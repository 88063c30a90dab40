#!/usr/bin/env bash
# Debian packages the local lab needs (idempotent). Also adds a deb-src entry for the Debian mirror,
# which `build-kube.sh` needs for `apt-get source kubernetes`.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "install-deps.sh: run as root" >&2; exit 1; }

PKGS=(golang-go rsync etcd-server iproute2 iptables tcpdump nginx-light haproxy dpkg-dev curl util-linux openssl
      golang-github-modern-go-reflect2-dev conntrack procps make gcc python3)
SRC_LIST=/etc/apt/sources.list.d/meshlab-deb-src.sources

if [ ! -e "$SRC_LIST" ] && ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  base=/etc/apt/sources.list.d/debian.sources
  if [ -f "$base" ]; then
    awk '/^Types:/{print "Types: deb-src"; next} {print}' "$base" > "$SRC_LIST"
  else
    grep -h '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' > /etc/apt/sources.list.d/meshlab-deb-src.list
  fi
  NEED_UPDATE=1
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] || [ -n "${NEED_UPDATE:-}" ]; then
  apt-get update -qq
fi
if [ "${#missing[@]}" -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
echo "lab deps: ok"
