"""A throw-away mini network for data-plane tests and benchmarks, independent of the Kubernetes lab.

It builds real network namespaces (``mlt-<tag>-<pod>``) on a bridge inside its own switch namespace,
so nothing touches the host's network; each "pod" gets ``eth0`` with an address in 198.18.250.0/24
and a route for the service range so that connects to a made-up ClusterIP leave the pod (where the
sidecar's iptables catch them). Processes run with ``ip netns exec`` + ``setpriv`` like the lab's node.
Everything is removed by ``close()``. Needs root, iptables, ip, setpriv.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from meshlab_lab.mesh import ca as ca_mod, proxy_config, xds

LAB_DIR = Path(__file__).resolve().parents[2]
PILOT_AGENT = LAB_DIR / "meshlab_lab" / "mesh" / "bin" / "pilot-agent"
PROXY_UID = 1337
APP_UID = 1000
SUBNET = "198.18.250"
SERVICE_ROUTE = "198.19.0.0/16"


def _run(*argv, check=True, **kw):
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, **kw)


class Pod:
    def __init__(self, bed: "Testbed", name: str, index: int):
        self.bed, self.name = bed, name
        self.netns = f"mlt-{bed.tag}-{name}"
        self.ip = f"{SUBNET}.{10 + index}"
        self.folder = bed.root / name / "istio-proxy"
        self.folder.mkdir(parents=True)
        os.chown(self.folder, PROXY_UID, PROXY_UID)
        self.namespace = "bookinfo"
        self.extra_env: dict = {}

    def env(self) -> dict:
        """The container environment: what the lab's node gives every process, plus the pod's extras."""
        return dict(os.environ, PYTHONPATH=str(LAB_DIR), MESHLAB_POD_DIR=str(self.folder.parent),
                    MESHLAB_POD_NAME=self.name, MESHLAB_POD_NAMESPACE=self.namespace, MESHLAB_POD_IP=self.ip,
                    **self.extra_env)

    def argv(self, argv, uid=None):
        prefix = ["ip", "netns", "exec", self.netns]
        if uid:
            prefix += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
        return prefix + list(argv)

    def run(self, argv, uid=None, timeout=60, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(argv, uid), capture_output=True, text=True, timeout=timeout, **kw)

    def start(self, argv, uid=None, log_name="proc", extra_env=None) -> subprocess.Popen:
        log = open(self.bed.root / f"{self.name}-{log_name}.log", "ab")
        self.extra_env.update(extra_env or {})
        proc = subprocess.Popen(self.argv(argv, uid), stdout=log, stderr=subprocess.STDOUT, env=self.env(),
                                start_new_session=True)
        self.bed.procs.append(proc)
        return proc

    def curl(self, url, *extra, timeout=20) -> subprocess.CompletedProcess:
        return self.run(["curl", "-sS", "-m", "10", "-o", "-", "-w", "\n%{http_code}", *extra, url], timeout=timeout)

    def push(self, config: dict) -> None:
        """Act as istiod for this pod: write the SDS secrets (once, for the node's service account) and the
        xDS files for ``config``."""
        if not (self.folder / xds.SECRET_FILES["default"]).exists():
            node = config.get("node") or {}
            issued = self.bed.ca.issue_workload(node.get("namespace", "bookinfo"), node.get("service_account",
                                                                                             "default"))
            proxy_config.write_secrets(self.folder, issued.cert_pem, issued.key_pem, self.bed.ca.cert_pem,
                                       "s1", PROXY_UID)
        proxy_config.write_config(self.folder, config, config["version"])

    def agent(self, *args, timeout=30) -> subprocess.CompletedProcess:
        """``pilot-agent request ...`` inside the pod, as ``kubectl exec`` would run it."""
        return self.run([str(PILOT_AGENT), "request", *args], timeout=timeout, env=self.env())

    def served_version(self) -> str | None:
        """The LDS version Envoy accepted (``listener_manager.lds.version_text``), None before it answers."""
        done = self.run(["curl", "-s", "-m", "2", "http://127.0.0.1:15000/stats?filter=^listener_manager.lds.version_text$"])
        match = re.search(r'lds\.version_text: "([^"]*)"', done.stdout)
        return match.group(1) if match else None

    def wait_loaded(self, version: str, timeout=15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.served_version() != version:
            if time.monotonic() > deadline:
                logs = "\n".join(p.read_text()[-3000:] for p in self.bed.root.glob(f"{self.name}-*.log"))
                raise TimeoutError(f"{self.name}: Envoy does not serve {version} (has {self.served_version()})\n{logs}")
            time.sleep(0.05)

    def wait_port(self, port: int, timeout=15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            probe = self.run(["ss", "-Hltn", f"sport = :{port}"])
            if probe.stdout.strip():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: nothing listens on {port}")
            time.sleep(0.05)


class Testbed:
    def __init__(self):
        self.tag = f"{os.getpid() % 100000}"
        self.root = Path(tempfile.mkdtemp(prefix="mlt-"))
        self.root.chmod(0o755)
        self.ca = ca_mod.CertificateAuthority.load_or_create(self.root / "ca", "mesh-root", "meshlab test root")
        self.switch = f"mlt-{self.tag}-sw"
        self.pods: dict[str, Pod] = {}
        self.procs: list[subprocess.Popen] = []
        _run("ip", "netns", "add", self.switch)
        _run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.switch, "link", "set", "br0", "up")

    def add_pod(self, name: str) -> Pod:
        pod = Pod(self, name, len(self.pods))
        index = len(self.pods)
        host_end = f"mlt{self.tag}p{index}"[:15]
        pod.switch_port = host_end
        _run("ip", "netns", "add", pod.netns)
        _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", pod.netns)
        _run("ip", "link", "set", host_end, "netns", self.switch)
        _run("ip", "-n", self.switch, "link", "set", host_end, "master", "br0", "up")
        _run("ip", "-n", pod.netns, "addr", "add", f"{pod.ip}/24", "dev", "eth0")
        _run("ip", "-n", pod.netns, "link", "set", "eth0", "up")
        _run("ip", "-n", pod.netns, "link", "set", "lo", "up")
        _run("ip", "-n", pod.netns, "route", "add", SERVICE_ROUTE, "dev", "eth0")
        self.pods[name] = pod
        return pod

    def start_sidecar(self, pod: Pod, config: dict, env: dict | None = None) -> None:
        """istio-init (sidecars only) then the proxy; returns once it has loaded ``config``."""
        if config["kind"] == "sidecar":
            self.install_iptables(pod)
        pod.push(config)
        pod.start([str(PILOT_AGENT), "proxy", config["kind"], "--concurrency", "1"], uid=PROXY_UID,
                  log_name="proxy", extra_env=env)
        pod.wait_loaded(config["version"])
        pod.wait_port(15006 if config["kind"] == "sidecar" else 15000)

    def install_iptables(self, pod: Pod) -> None:
        init = pod.run([sys.executable, "-m", "meshlab_lab.mesh.iptables", "-p", "15001", "-z", "15006", "-u",
                        str(PROXY_UID), "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*", "-d",
                        "15090,15021,15020"], env=dict(os.environ, PYTHONPATH=str(LAB_DIR)))
        if init.returncode != 0:
            raise RuntimeError(f"istio-iptables failed in {pod.name}: {init.stderr}")

    def start_app(self, pod: Pod, app: str, version="v1") -> None:
        pod.start([sys.executable, "-m", "meshlab_lab.apps.bookinfo", app, "--version", version], uid=APP_UID,
                  log_name=app)
        pod.wait_port(9080)

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for pod in self.pods.values():
            _run("ip", "netns", "del", pod.netns, check=False)
        _run("ip", "netns", "del", self.switch, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
