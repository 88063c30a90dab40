"""A bare, real kube-apiserver 1.20 + etcd in a temporary directory, for testing the emulated operators.

No controller-manager, scheduler or nodes: Deployments are stored but never roll out, and garbage
collection by ownerReferences does not run. Auth is a static admin token; the serving certificate is
the API server's own self-signed one, so the kubeconfig skips TLS verification (test use only).
"""
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from meshlab_lab import paths
from meshlab_lab.k8s import wait_for

TOKEN = "meshlab-operators-test-admin"


def kube_apiserver_binary() -> Path | None:
    candidates = [paths.kube_bin_dir() / "kube-apiserver"]
    src = Path.home() / ".cache" / "meshlab" / "src"
    candidates += sorted(src.glob("kubernetes-*/_output/bin/kube-apiserver"))
    return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


def etcd_binary() -> str | None:
    return shutil.which("etcd")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BareApiServer:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="meshlab-ops-api-"))
        self.api_port = _free_port()
        self.etcd_port, self.etcd_peer = _free_port(), _free_port()
        self.kubeconfig = self.dir / "kubeconfig"
        self.procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def _spawn(self, name, argv):
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - closed when the process is stopped
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        proc.log = log
        self.procs.append(proc)
        return proc

    def start(self, timeout: float = 90) -> "BareApiServer":
        apiserver, etcd = kube_apiserver_binary(), etcd_binary()
        if not apiserver or not etcd:
            raise FileNotFoundError(f"need kube-apiserver ({apiserver}) and etcd ({etcd})")
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.dir / "sa.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                            serialization.PrivateFormat.TraditionalOpenSSL,
                                                            serialization.NoEncryption()))
        (self.dir / "sa.pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        (self.dir / "tokens.csv").write_text(f"{TOKEN},admin,admin,system:masters\n")
        etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{self.etcd_peer}"
        self._spawn("etcd", [etcd, "--name", "ops-test", "--data-dir", str(self.dir / "etcd"),
                             "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                             "--initial-cluster", f"ops-test={peer_url}", "--log-level", "warn"])
        self._spawn("kube-apiserver", [
            str(apiserver), f"--etcd-servers={etcd_url}", "--bind-address=127.0.0.1",
            f"--secure-port={self.api_port}", "--insecure-port=0", "--advertise-address=127.0.0.1",
            f"--cert-dir={self.dir / 'certs'}", f"--token-auth-file={self.dir / 'tokens.csv'}",
            "--authorization-mode=AlwaysAllow", "--service-cluster-ip-range=10.250.0.0/24",
            f"--service-account-key-file={self.dir / 'sa.pub'}",
            f"--service-account-signing-key-file={self.dir / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--enable-admission-plugins=NamespaceLifecycle,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
            "--disable-admission-plugins=ServiceAccount", "--profiling=false", "--v=1"])
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url, "insecure-skip-tls-verify": True}}],
            "users": [{"name": "admin", "user": {"token": TOKEN}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}]}))
        wait_for(self._ready, timeout, "kube-apiserver /readyz")
        return self

    def _ready(self) -> bool:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}; see {self.dir}")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        req = urllib.request.Request(f"{self.url}/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
