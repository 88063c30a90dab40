"""Certificate authorities of the lab: the mesh CA (SPIFFE workload certs) and the router CA (edge certs)."""
import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRUST_DOMAIN = "cluster.local"
WORKLOAD_CERT_TTL = datetime.timedelta(hours=1)


def spiffe_id(namespace: str, service_account: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass
class IssuedCert:
    cert_pem: bytes
    key_pem: bytes
    not_after: datetime.datetime


class CertificateAuthority:
    """A self-signed root that signs leaf certificates; persisted as ``<name>.crt``/``<name>.key`` in a folder."""

    def __init__(self, cert: x509.Certificate, key):
        self.cert = cert
        self.key = key

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def load_or_create(cls, folder: Path, name: str, common_name: str) -> "CertificateAuthority":
        crt, key_file = folder / f"{name}.crt", folder / f"{name}.key"
        if crt.is_file() and key_file.is_file():
            cert = x509.load_pem_x509_certificate(crt.read_bytes())
            if cert.not_valid_after_utc > _now() + datetime.timedelta(days=1):
                return cls(cert, serialization.load_pem_private_key(key_file.read_bytes(), None))
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshlab"),
                             x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(_now() - datetime.timedelta(minutes=5))
                .not_valid_after(_now() + datetime.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                               critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        folder.mkdir(parents=True, exist_ok=True)
        key_file.write_bytes(_pem_key(key))
        key_file.chmod(0o600)
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(cert, key)

    def issue(self, *, uris=(), dns_names=(), ips=(), ttl=WORKLOAD_CERT_TTL, server=True,
              client=True) -> IssuedCert:
        if not uris and not dns_names and not ips:
            raise ValueError("a leaf certificate needs at least one URI or DNS subject alternative name")
        key = ec.generate_private_key(ec.SECP256R1())
        not_after = _now() + ttl
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
                 ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        sans = [x509.UniformResourceIdentifier(u) for u in uris] + [x509.DNSName(d) for d in dns_names] + \
            [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        # Istio workload certs carry an empty subject; the identity lives only in the URI SAN.
        common_name = (list(dns_names) + list(ips) + [""])[0]
        subject = x509.Name([]) if uris else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(_now() - datetime.timedelta(minutes=1)).not_valid_after(not_after)
                .add_extension(x509.SubjectAlternativeName(sans), critical=bool(uris))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                               critical=True)
                .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        return IssuedCert(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key), not_after)

    def issue_workload(self, namespace: str, service_account: str, ttl=WORKLOAD_CERT_TTL) -> IssuedCert:
        return self.issue(uris=[spiffe_id(namespace, service_account)], ttl=ttl)


def needs_rotation(not_after: datetime.datetime, ttl=WORKLOAD_CERT_TTL) -> bool:
    """Istio rotates at about half the lifetime; so do we."""
    return not_after - _now() < ttl / 2
