#!/usr/bin/env bash
# Debian packages the test suite needs on the controller (the lab's own are in lab/scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t wanted < <(printf '%s\n' git rsync curl openssl tcpdump; find tests -name apt-packages.txt -exec cat {} + | sed 's/#.*//' | awk 'NF')
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-test-deps: missing Debian packages ${missing[*]} and not root: install them first" >&2
    exit 1
  fi
  echo "install-test-deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
