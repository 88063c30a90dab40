#!/usr/bin/env bash
# ansible-test fetches a pip bootstrap script from a host these machines cannot reach; put the
# offline stand-in (scripts/get_pip_offline.py) where ansible-test looks for a cached copy.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
reqs="$here/../.venv/lib/python3.11/site-packages/ansible_test/_internal/python_requirements.py"
version=$(sed -n "s/^ *pip='\([0-9.]*\)',.*/\1/p" "$reqs" | head -n 1)
version=${version:-24.2}
mkdir -p "$HOME/.ansible/test/cache"
install -m 0644 "$here/get_pip_offline.py" "$HOME/.ansible/test/cache/get_pip_${version//./_}.py"
echo "ansible-test pip bootstrap: offline stand-in for pip ${version}"
