"""Test support: one bare API server (+ base CRDs) and one operators addon process per test session.

Both are started on first use and stopped at interpreter exit, so several test modules share them.
"""
import atexit
import os
import subprocess
import sys
import warnings
from pathlib import Path

from meshlab_lab.k8s import api_client, wait_for
from meshlab_lab.operators import crds
from meshlab_lab.operators.__main__ import READY_NAME
from meshlab_lab.operators.bare_apiserver import BareApiServer, etcd_binary, kube_apiserver_binary
from meshlab_lab.operators.rest import Rest

LAB_DIR = Path(__file__).resolve().parents[2]
_state: dict = {}


def missing_binaries() -> str | None:
    """Why a bare API server cannot start here, or None."""
    if kube_apiserver_binary() is None:
        return "kube-apiserver 1.20 binary not found (build it: make lab-build)"
    if etcd_binary() is None:
        return "etcd not found (apt-get install etcd-server)"
    return None


def apiserver() -> BareApiServer:
    if "server" not in _state:
        server = BareApiServer()
        atexit.register(server.stop)
        server.start()
        rest = client(server)
        for crd in crds.manifests("base"):
            crds.apply(rest, crd)
        wait_for(lambda: crds.all_established(rest, [c["metadata"]["name"] for c in crds.manifests("base")]),
                 60, "base CRDs Established")
        _state["server"] = server
    return _state["server"]


def client(server: BareApiServer) -> Rest:
    warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    return Rest(api_client(str(server.kubeconfig)))


def operators_addon(server: BareApiServer, timeout: float = 60) -> subprocess.Popen:
    """Run ``python -m meshlab_lab.operators`` against ``server`` until the ready file appears."""
    if "addon" not in _state:
        state_dir = server.dir / "state"
        env = dict(os.environ, PYTHONPATH=str(LAB_DIR) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   PYTHONWARNINGS="ignore:Unverified HTTPS request")
        log = open(server.dir / "operators.log", "wb")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen([sys.executable, "-m", "meshlab_lab.operators", "--kubeconfig",
                                 str(server.kubeconfig), "--state-dir", str(state_dir)],
                                env=env, stdout=log, stderr=subprocess.STDOUT)

        def stop():
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()

        atexit.register(stop)

        wait_for(lambda: proc.poll() is not None or (state_dir / "run" / READY_NAME).is_file(), timeout,
                 "the operators addon ready file")
        if proc.poll() is not None:
            log.flush()
            tail = (server.dir / "operators.log").read_text()[-2000:]
            raise RuntimeError(f"operators addon exited {proc.returncode}:\n{tail}")
        _state["addon"] = proc
    return _state["addon"]
