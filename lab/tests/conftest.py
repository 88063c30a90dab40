"""Shared fixtures of the lab tests: `lab` brings the local lab up once per session (or reuses a healthy one)."""
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

LAB_DIR = Path(__file__).resolve().parents[1]
if str(LAB_DIR) not in sys.path:
    sys.path.insert(0, str(LAB_DIR))

from meshlab_lab import paths  # noqa: E402

UP_TIMEOUT = 600


def lab_cli(*args: str, timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(LAB_DIR)] + [p for p in [os.environ.get("PYTHONPATH")]
                                                                        if p]))
    return subprocess.run([sys.executable, "-m", "meshlab_lab", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


class Lab:
    """Handles for tests: kubectl 1.20.2 against the lab, JSON reads, bounded waits."""

    kubeconfig = paths.kubeconfig_path()

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None):
        done = subprocess.run([str(paths.kubectl_path()), "--kubeconfig", str(self.kubeconfig), *args],
                              capture_output=True, text=True, timeout=timeout, input=input)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr}")
        return done

    def get(self, *args: str):
        done = self.kubectl("get", *args, "-o", "json", check=False)
        return json.loads(done.stdout) if done.returncode == 0 else None

    @staticmethod
    def wait(predicate, what: str, timeout: float = 120, interval: float = 0.5):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)

    def running_pods(self, namespace: str, selector: str, count: int = 1, timeout: float = 120) -> list:
        def ready():
            pods = (self.get("pods", "-n", namespace, "-l", selector) or {}).get("items", [])
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            ok = [p for p in live if p["status"].get("phase") == "Running"
                  and all(s.get("ready") for s in p["status"].get("containerStatuses") or [{}])]
            return ok if len(ok) >= count else None
        return self.wait(ready, f"{count} ready pod(s) {selector} in {namespace}", timeout)


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("lab tests need root (network namespaces, routes, iptables)")
    if not paths.kubectl_path().is_file():
        pytest.skip(f"{paths.kubectl_path()} missing: run `make lab-build`")


def ensure_lab_up() -> None:
    if lab_cli("status", timeout=60).returncode == 0:
        return
    done = lab_cli("up")
    if done.returncode != 0:
        raise RuntimeError(f"meshlab_lab up failed:\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="session")
def lab() -> Lab:
    require_root()
    ensure_lab_up()
    return Lab()


@pytest.fixture(scope="module")
def test_namespace(lab: Lab):
    name = f"labtest-{uuid.uuid4().hex[:6]}"
    lab.kubectl("create", "namespace", name)
    lab.wait(lambda: lab.get("serviceaccount", "default", "-n", name), f"default service account in {name}", 60)
    yield name
    lab.kubectl("delete", "namespace", name, "--wait=false", check=False)
