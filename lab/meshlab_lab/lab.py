"""`up`, `down`, `status` of the local lab."""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml
from kubernetes import client

from meshlab_lab import addons, bootstrap, control_plane, kube_proxy, kubeconfig, network, paths, pki, procs
from meshlab_lab import addresses as A
from meshlab_lab.k8s import api_client

NODE_INDEXES = (1,)
DAEMONS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "dns",
           "api-forward"] + [f"node-{i}" for i in NODE_INDEXES]


class LabError(RuntimeError):
    pass


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, veths, routes, iptables): run it with sudo")


def _say(msg: str) -> None:
    print(f"[lab {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def up(timeout: float = 90) -> None:
    require_root()
    _preflight()
    t0 = time.monotonic()
    down(quiet=True, grace=0)
    _say(f"previous run cleaned ({time.monotonic() - t0:.1f}s)")
    state = paths.state_dir()
    for sub in ("etcd", "pods", "run", "logs"):
        shutil.rmtree(state / sub, ignore_errors=True)
    for sub in ("run", "logs", "pods"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    pki.ensure_all(paths.pki_dir(), [A.node_name(i) for i in NODE_INDEXES])
    network.setup_host()
    control_plane.start_all(timeout)
    _say(f"API server ready ({time.monotonic() - t0:.1f}s)")
    api = api_client()
    for i in NODE_INDEXES:
        node_kc = state / "kubeconfigs" / f"node-{A.node_name(i)}.kubeconfig"
        kubeconfig.write(node_kc, paths.pki_dir(), f"node-{A.node_name(i)}", f"system:node:{A.node_name(i)}")
        procs.start(f"node-{i}", [sys.executable, "-m", "meshlab_lab.node", "--index", str(i), "--kubeconfig",
                                  str(node_kc), "--ready-file", str(paths.run_dir() / f"node-{i}.ready")],
                    env={"PYTHONPATH": str(paths.LAB_DIR)})
    procs.start("dns", [sys.executable, "-m", "meshlab_lab.dns", "--kubeconfig", str(paths.kubeconfig_path()),
                        "--ready-file", str(paths.run_dir() / "dns.ready")], env={"PYTHONPATH": str(paths.LAB_DIR)})
    procs.start("api-forward", [sys.executable, "-m", "meshlab_lab.api_forward", "--ready-file",
                                str(paths.run_dir() / "api-forward.ready")], env={"PYTHONPATH": str(paths.LAB_DIR)})
    kube_proxy.start(NODE_INDEXES[0])
    bootstrap.create_kube_dns(api)
    crds = _InThread(_apply_base_crds)
    for i in NODE_INDEXES:
        control_plane.wait_ready(f"node-{i}", lambda i=i: _node_ready(api, A.node_name(i)), timeout)
    for i in NODE_INDEXES:  # NodeRestriction keeps node-role labels away from the node itself
        client.CoreV1Api(api).patch_node(A.node_name(i), {"metadata": {"labels": {
            "node-role.kubernetes.io/worker": ""}}})
    control_plane.wait_ready("dns", lambda: (paths.run_dir() / "dns.ready").exists(), timeout)
    control_plane.wait_ready("kube-proxy", kube_proxy.healthy, timeout)
    control_plane.wait_ready("api-forward", lambda: (paths.run_dir() / "api-forward.ready").exists(), timeout)
    control_plane.wait_ready("kube-controller-manager", lambda: _default_service_account(api), timeout)
    control_plane.wait_ready("kube-scheduler", lambda: True, timeout)
    crds.join()
    _say(f"control plane, node, DNS, kube-proxy and base CRDs ready ({time.monotonic() - t0:.1f}s)")
    write_ansible_vars()
    addons.start_all(log=_say)
    _say(f"lab up in {time.monotonic() - t0:.1f}s; kubeconfig: {paths.kubeconfig_path()}")


class _InThread:
    """Run ``fn`` in a thread; ``join()`` re-raises its exception."""

    def __init__(self, fn):
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn) -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to join()
            self._error = exc

    def join(self) -> None:
        self._thread.join()
        if self._error:
            raise self._error


def _preflight() -> None:
    """Fail with a clear message before anything is stopped or changed."""
    from meshlab_lab.node.images import load_table

    missing = [b for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubectl")
               if not (paths.kube_bin_dir() / b).is_file()]
    if missing:
        raise LabError(f"missing {', '.join(missing)} in {paths.kube_bin_dir()}: run `make lab-build` "
                       "(or set MESHLAB_KUBE_BIN_DIR)")
    for tool in ("etcd", "ip", "iptables", "setpriv", "nginx", "curl"):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            raise LabError(f"{tool} not found: run `make lab-deps`")
    load_table()  # a broken lab/images/*.yaml is reported here, naming the file


def _node_ready(api, name: str) -> bool:
    node = client.CoreV1Api(api).read_node(name)
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def _default_service_account(api) -> bool:
    return bool(client.CoreV1Api(api).read_namespaced_service_account("default", "default"))


def _apply_base_crds(timeout: float = 60) -> None:
    base = paths.LAB_DIR / "crds" / "base"
    files = sorted(base.glob("*.yaml")) + sorted(base.glob("*.yml")) if base.is_dir() else []
    if not files:
        return
    kubectl = str(paths.kubectl_path())
    env = dict(os.environ, KUBECONFIG=str(paths.kubeconfig_path()))
    args = [a for f in files for a in ("-f", str(f))]
    proc = subprocess.run([kubectl, "apply"] + args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise LabError(f"kubectl apply of {base} failed: {proc.stderr.strip()}")
    proc = subprocess.run([kubectl, "wait", "--for=condition=Established", "crd", "--all", f"--timeout={timeout}s"],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise LabError(f"CRDs not Established: {proc.stderr.strip()}")
    _say(f"applied {len(files)} CRD file(s) from {base}")


def write_ansible_vars() -> None:
    state = paths.state_dir()
    data = {"verify_external_connect_to": "api-istio-system.apps.lab.local:443:127.0.0.1:8443",
            "verify_external_ca_file": str(paths.pki_dir() / "router-ca.crt"),
            "lab_kubeconfig": str(paths.kubeconfig_path())}
    (state / "ansible-vars.yml").write_text(yaml.safe_dump(data, sort_keys=False))


def _lab_processes() -> list[int]:
    """Pids whose environment carries this lab's MESHLAB_STATE_DIR (container processes, execs)."""
    marker = f"MESHLAB_STATE_DIR={paths.state_dir()}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def down(quiet: bool = False, grace: float | None = None) -> None:
    """Stop everything (``grace`` seconds per daemon; default: nodes 30 s to stop their pods, others 10 s)."""
    require_root()
    addons.stop_all(grace=10 if grace is None else grace)
    for name in reversed(DAEMONS):
        procs.stop(name, grace=grace if grace is not None else (30 if name.startswith("node-") else 10))
    for name in procs.recorded_names():
        procs.stop(name, grace=5 if grace is None else grace)
    for pid in _lab_processes():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    kube_proxy.cleanup()
    network.cleanup_all()
    for ready in paths.run_dir().glob("*.ready") if paths.run_dir().is_dir() else []:
        ready.unlink()
    if not quiet:
        _say("lab down: processes, namespaces, veths, routes, meshlab0 and kube-proxy rules removed")


def status() -> dict:
    result = {name: bool(procs.running_pid(name)) for name in DAEMONS + addons.listed()}
    result["apiserver-ready"] = bool(procs.running_pid("kube-apiserver")) and control_plane.apiserver_ready()
    node_ok = False
    if result["apiserver-ready"]:
        try:
            node_ok = all(_node_ready(api_client(), A.node_name(i)) for i in NODE_INDEXES)
        except Exception:  # noqa: BLE001 - status reports, never raises
            node_ok = False
    result["nodes-ready"] = node_ok
    result["healthy"] = all(result[d] for d in DAEMONS) and result["apiserver-ready"] and node_ok
    return result
