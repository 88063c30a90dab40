#!/usr/bin/env bash
# Build the collection tarball, install it into an empty collections path, and check that
# ansible-doc renders every module, filter and role from the INSTALLED copy.
set -euo pipefail
src=${1:?usage: build-check.sh <collection copy>}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ansible-galaxy collection build --output-path "$work/dist" "$src" >/dev/null
tarball=$(ls "$work"/dist/meshlab-mtls-*.tar.gz)
# kubernetes.core comes with the ansible package; --no-deps keeps this offline.
ANSIBLE_COLLECTIONS_PATH="$work/installed" ansible-galaxy collection install --force --no-deps -p "$work/installed" "$tarball" >/dev/null
export ANSIBLE_COLLECTIONS_PATH="$work/installed:$(python -c 'import ansible_collections, os; print(os.path.dirname(list(ansible_collections.__path__)[0]))')"
installed="$work/installed/ansible_collections/meshlab/mtls"
if tar -tzf "$tarball" | grep -qE '^(lab|bench|molecule|\.ci)/'; then
  echo "build-check: the tarball carries test-bed folders:" >&2
  tar -tzf "$tarball" | grep -E '^(lab|bench|molecule|\.ci)/' | head >&2
  exit 1
fi
passed=0 failed=0
check() {
  local kind=$1 name=$2
  if out=$(ansible-doc -t "$kind" "meshlab.mtls.$name" 2>&1) && [ -n "$out" ] && ! grep -q 'WARNING\|ERROR' <<<"$out"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); echo "FAILED ansible-doc -t $kind meshlab.mtls.$name"; echo "$out" | head -20
  fi
}
for f in "$installed"/plugins/modules/*.py; do check module "$(basename "$f" .py)"; done
for f in "$installed"/plugins/filter/*.yml; do check filter "$(basename "$f" .yml)"; done
for d in "$installed"/roles/*/; do check role "$(basename "$d")"; done
echo "build-check: $(basename "$tarball")"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
