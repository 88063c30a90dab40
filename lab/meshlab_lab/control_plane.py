"""The real control plane: etcd (Debian's etcd-server), kube-apiserver, kube-controller-manager, kube-scheduler."""
import ssl
import urllib.error
import urllib.request

from meshlab_lab import addresses as A
from meshlab_lab import kubeconfig, paths, procs
from meshlab_lab.k8s import wait_for

ADMISSION = ("NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,DefaultTolerationSeconds,"
             "NodeRestriction,Priority,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ResourceQuota")


class LabStartError(RuntimeError):
    """A lab daemon died while starting."""


def _bin(name: str) -> str:
    path = paths.kube_bin_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run `make lab-build` (or set MESHLAB_KUBE_BIN_DIR)")
    return str(path)


def write_kubeconfigs() -> None:
    pki, state = paths.pki_dir(), paths.state_dir()
    kubeconfig.write(paths.kubeconfig_path(), pki, "admin", "meshlab-admin")
    for name in ("controller-manager", "scheduler", "kube-proxy"):
        kubeconfig.write(state / "kubeconfigs" / f"{name}.kubeconfig", pki, name, name)


def start_etcd() -> None:
    data = paths.state_dir() / "etcd"
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    client, peer = f"http://127.0.0.1:{A.ETCD_CLIENT_PORT}", f"http://127.0.0.1:{A.ETCD_PEER_PORT}"
    procs.start("etcd", ["etcd", "--name", "meshlab", "--data-dir", str(data),
                         "--listen-client-urls", client, "--advertise-client-urls", client,
                         "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                         "--initial-cluster", f"meshlab={peer}", "--initial-cluster-state", "new",
                         "--log-level", "warn"])


def etcd_healthy() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{A.ETCD_CLIENT_PORT}/health", timeout=2) as resp:
            return b'"true"' in resp.read()
    except (urllib.error.URLError, OSError):
        return False


# Soft Go heap limits (GOMEMLIMIT, Go >= 1.19): the garbage collector works harder instead of letting the
# heap grow to twice the live data; behaviour is unchanged, the lab's resident memory is smaller.
GO_MEMORY = {"kube-apiserver": {"GOMEMLIMIT": "256MiB"}, "kube-controller-manager": {"GOMEMLIMIT": "64MiB"}}


def start_apiserver() -> None:
    pki = paths.pki_dir()
    procs.start("kube-apiserver", [
        _bin("kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{A.ETCD_CLIENT_PORT}",
        "--bind-address=127.0.0.1", f"--secure-port={A.API_PORT}", "--insecure-port=0",
        f"--advertise-address={A.HOST_LAB_IP}",
        f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--authorization-mode=Node,RBAC", f"--enable-admission-plugins={ADMISSION}",
        f"--service-cluster-ip-range={A.SERVICE_CIDR}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--kubelet-preferred-address-types=InternalIP",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        "--allow-privileged=true", "--profiling=false", "--v=1",
    ], env=GO_MEMORY["kube-apiserver"])


def start_controller_manager() -> None:
    pki, kc = paths.pki_dir(), paths.state_dir() / "kubeconfigs" / "controller-manager.kubeconfig"
    procs.start("kube-controller-manager", [
        _bin("kube-controller-manager"), f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1", "--port=0", "--leader-elect=false",
        f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
        "--use-service-account-credentials=true",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
        f"--service-cluster-ip-range={A.SERVICE_CIDR}", f"--cluster-cidr={A.POD_CIDR}",
        "--controllers=*,-nodeipam,-cloud-node-lifecycle", "--v=1",
    ], env=GO_MEMORY["kube-controller-manager"])


def start_scheduler() -> None:
    kc = paths.state_dir() / "kubeconfigs" / "scheduler.kubeconfig"
    procs.start("kube-scheduler", [
        _bin("kube-scheduler"), f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}", "--bind-address=127.0.0.1", "--port=0", "--leader-elect=false", "--v=1",
    ])


def _https_ok(url: str) -> bool:
    pki = paths.pki_dir()
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    try:
        with urllib.request.urlopen(url, timeout=10, context=ctx) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def apiserver_ready() -> bool:
    return _https_ok(f"{A.API_URL}/readyz")


def _check_alive(name: str) -> None:
    if not procs.running_pid(name):
        tail = procs.log_file(name).read_text(errors="replace")[-3000:] if procs.log_file(name).exists() else ""
        raise LabStartError(f"{name} exited during start; log tail:\n{tail}")


def wait_ready(name: str, predicate, timeout: float) -> None:
    def check():
        _check_alive(name)
        return predicate()
    wait_for(check, timeout, f"{name} to become ready (log: {procs.log_file(name)})", fatal=(LabStartError,))


def start_all(timeout: float = 60) -> None:
    write_kubeconfigs()
    start_etcd()
    wait_ready("etcd", etcd_healthy, timeout)
    start_apiserver()
    wait_ready("kube-apiserver", apiserver_ready, timeout)
    start_controller_manager()
    start_scheduler()
