"""A throwaway etcd + kube-apiserver 1.20.2 for tests, with a PKI made on the spot.

The API server talks to kubelets with its own client certificate (`--kubelet-client-certificate`) and
verifies their serving certificates (`--kubelet-certificate-authority`); `kubelet_tls` holds the
matching files for a test kubelet. Everything lives in one temporary directory removed by `stop()`.

    api = start_apiserver(workdir)     # raises SkipReason when binaries are missing
    ... api.kubeconfig, api.url, api.kubelet_tls ...
    api.stop()
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

STARTUP_TIMEOUT_S = 90.0
SERVICE_RANGE = "198.19.0.0/16"


class SkipReason(Exception):
    """Something this fixture needs is not on the machine (the message says what)."""


def kube_bin_dir() -> Path | None:
    """kube-apiserver 1.20.2: MESHLAB_KUBE_BIN_DIR, the lab's binary cache, else the source build output."""
    cache = Path.home() / ".cache" / "meshlab"
    candidates = [Path(os.environ["MESHLAB_KUBE_BIN_DIR"])] if os.environ.get("MESHLAB_KUBE_BIN_DIR") else []
    candidates += [cache / "kube-1.20.2" / "bin"]
    candidates += sorted(cache.glob("src/kubernetes-*1.20.2/_output/local/bin/linux/amd64"))
    return next((path for path in candidates if (path / "kube-apiserver").is_file()), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout: float, what: str, process: subprocess.Popen | None = None, log: Path | None = None):
    """Poll `check()` until it returns a truthy value; fail with the log tail if the process died."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise RuntimeError(f"{what}: process exited with {process.returncode}\n{tail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(0.2)


# ---------------------------------------------------------------- PKI
def _pki():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    return x509, hashes, serialization, ec, rsa, ExtendedKeyUsageOID, NameOID


def _write_key(path: Path, key) -> None:
    _, _, serialization, *_ = _pki()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _issue(directory: Path, name: str, common_name: str, ca=None, orgs=(), server=False, client=False,
           ips=(), dns=()) -> tuple:
    x509, hashes, serialization, ec, _rsa, eku, oid = _pki()
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(oid.COMMON_NAME, common_name)]
                        + [x509.NameAttribute(oid.ORGANIZATION_NAME, org) for org in orgs])
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer_cert, issuer_key = ca if ca else (None, key)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer_cert.subject if issuer_cert else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca is None, path_length=None), critical=True))
    if ca is None:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                        critical=True)
    else:
        usages = ([eku.SERVER_AUTH] if server else []) + ([eku.CLIENT_AUTH] if client else [])
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        names = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips] + [x509.DNSName(d) for d in dns]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(directory / f"{name}.key", key)
    return cert, key


@dataclass
class KubeletTls:
    certfile: str
    keyfile: str
    client_ca: str


@dataclass
class ApiServer:
    workdir: Path
    url: str
    kubeconfig: Path
    ca_file: Path
    kubelet_tls: KubeletTls
    bin_dir: Path
    processes: list = field(default_factory=list)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _make_pki(pki: Path):
    _, _, serialization, _, rsa, *_ = _pki()
    ca = _issue(pki, "ca", "meshlab-test-ca")
    _issue(pki, "apiserver", "kube-apiserver", ca, server=True, ips=["127.0.0.1"], dns=["localhost", "kubernetes"])
    _issue(pki, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ca, orgs=["system:masters"], client=True)
    _issue(pki, "kubelet", "system:node:lab-node", ca, orgs=["system:nodes"], server=True, ips=["127.0.0.1"])
    _issue(pki, "admin", "meshlab-admin", ca, orgs=["system:masters"], client=True)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(pki / "sa.key", sa_key)
    (pki / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def _write_kubeconfig(path: Path, url: str, pki: Path) -> None:
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {{server: "{url}", certificate-authority: "{pki / 'ca.crt'}"}}
users:
- name: admin
  user: {{client-certificate: "{pki / 'admin.crt'}", client-key: "{pki / 'admin.key'}"}}
contexts:
- name: test
  context: {{cluster: test, user: admin, namespace: default}}
current-context: test
""")


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return env


def start_apiserver(workdir: Path) -> ApiServer:
    """Start etcd + kube-apiserver under `workdir`; raise SkipReason if a binary is missing."""
    bin_dir = kube_bin_dir()
    if bin_dir is None:
        raise SkipReason("kube-apiserver 1.20.2 not built (set MESHLAB_KUBE_BIN_DIR or run the lab's build)")
    etcd = shutil.which("etcd")
    if etcd is None:
        raise SkipReason("etcd is not installed (Debian package etcd-server)")
    workdir.mkdir(parents=True, exist_ok=True)
    pki = workdir / "pki"
    pki.mkdir(exist_ok=True)
    _make_pki(pki)
    etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
    api = ApiServer(workdir, f"https://127.0.0.1:{api_port}", workdir / "kubeconfig", pki / "ca.crt",
                    KubeletTls(str(pki / "kubelet.crt"), str(pki / "kubelet.key"), str(pki / "ca.crt")), bin_dir)
    try:
        etcd_log = workdir / "etcd.log"
        etcd_proc = subprocess.Popen(
            [etcd, "--name", "test", "--data-dir", str(workdir / "etcd"),
             "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
             "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
             "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
             "--initial-cluster", f"test=http://127.0.0.1:{etcd_peer}"],
            stdout=etcd_log.open("wb"), stderr=subprocess.STDOUT, env=_clean_env())
        api.processes.append(etcd_proc)
        wait_until(lambda: _http_ok(f"http://127.0.0.1:{etcd_port}/health"), STARTUP_TIMEOUT_S, "etcd",
                   etcd_proc, etcd_log)
        api_log = workdir / "kube-apiserver.log"
        api_proc = subprocess.Popen(
            [str(bin_dir / "kube-apiserver"),
             f"--etcd-servers=http://127.0.0.1:{etcd_port}",
             "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
             f"--secure-port={api_port}", "--insecure-port=0",
             f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
             f"--client-ca-file={pki / 'ca.crt'}",
             f"--service-account-key-file={pki / 'sa.pub'}",
             f"--service-account-signing-key-file={pki / 'sa.key'}",
             "--service-account-issuer=https://kubernetes.default.svc",
             f"--service-cluster-ip-range={SERVICE_RANGE}",
             "--authorization-mode=Node,RBAC",
             "--disable-admission-plugins=ServiceAccount",
             f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
             f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
             f"--kubelet-certificate-authority={pki / 'ca.crt'}",
             "--kubelet-preferred-address-types=InternalIP",
             f"--cert-dir={workdir / 'apiserver-certs'}"],
            stdout=api_log.open("wb"), stderr=subprocess.STDOUT, env=_clean_env())
        api.processes.append(api_proc)
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        wait_until(lambda: _http_ok(f"{api.url}/readyz", context), STARTUP_TIMEOUT_S, "kube-apiserver",
                   api_proc, api_log)
        _write_kubeconfig(api.kubeconfig, api.url, pki)
    except BaseException:
        api.stop()
        raise
    return api


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status == 200
    except OSError:
        return False
