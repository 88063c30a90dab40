"""The lab's certificates: one cluster CA, serving and client certificates, the service-account key pair."""
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)


def _name(cn: str, orgs=()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name(attrs + [x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _load(path: Path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def ensure_ca(pki: Path, name: str = "ca", cn: str = "meshlab-lab-ca"):
    """Create ``<name>.crt``/``<name>.key`` once; return (cert, key)."""
    crt, key_path = pki / f"{name}.crt", pki / f"{name}.key"
    if crt.exists() and key_path.exists():
        return _load(crt), serialization.load_pem_private_key(key_path.read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + 10 * VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write_key(key_path, key)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def ensure_cert(pki: Path, name: str, cn: str, *, orgs=(), ips=(), dns=(), server=False, client=False) -> None:
    """Create ``<name>.crt``/``<name>.key`` signed by the lab CA unless they already exist."""
    crt, key_path = pki / f"{name}.crt", pki / f"{name}.key"
    if crt.exists() and key_path.exists():
        return
    ca_cert, ca_key = ensure_ca(pki)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    builder = (x509.CertificateBuilder().subject_name(_name(cn, orgs)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
    sans = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips] + [x509.DNSName(d) for d in dns]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_key(key_path, key)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure_sa_keypair(pki: Path) -> None:
    """RSA key pair used by kube-apiserver and kube-controller-manager to sign service-account tokens."""
    key_path, pub = pki / "sa.key", pki / "sa.pub"
    if key_path.exists() and pub.exists():
        return
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(key_path, key)
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))


API_SANS_IPS = ("127.0.0.1", "198.19.0.1", "198.18.0.1")
API_SANS_DNS = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local")

# name -> (CN, organisations); all are client certificates signed by the lab CA.
CLIENTS = {
    "admin": ("meshlab-admin", ("system:masters",)),
    "controller-manager": ("system:kube-controller-manager", ()),
    "scheduler": ("system:kube-scheduler", ()),
    "kube-proxy": ("system:kube-proxy", ()),
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ("system:masters",)),
}


def ensure_all(pki: Path, node_names=("lab-node-1",)) -> None:
    """Everything the control plane and the nodes need; idempotent (keeps what exists)."""
    pki.mkdir(parents=True, exist_ok=True)
    ensure_ca(pki)
    ensure_sa_keypair(pki)
    ensure_cert(pki, "apiserver", "kube-apiserver", ips=API_SANS_IPS, dns=API_SANS_DNS, server=True)
    for name, (cn, orgs) in CLIENTS.items():
        ensure_cert(pki, name, cn, orgs=orgs, client=True)
    for node in node_names:
        ensure_cert(pki, f"node-{node}", f"system:node:{node}", orgs=("system:nodes",), client=True)
        ensure_cert(pki, f"kubelet-{node}", node, ips=("127.0.0.1",), dns=(node,), server=True)
