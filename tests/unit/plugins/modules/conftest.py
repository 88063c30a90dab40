"""Real local servers for the probe tests: an HTTPS server with a CA made here, a refused port,
a server that resets, one that closes without replying and one that never answers."""

import datetime
import http.server
import socket
import ssl
import struct
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SERVER_NAME = "api-istio-system.apps.lab.local"


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, issuer, key, signer, ca, san=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="session")
def server_name():
    return SERVER_NAME


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A CA, a server certificate for SERVER_NAME signed by it, and an unrelated CA."""
    d = tmp_path_factory.mktemp("pki")
    ca_key, other_key, srv_key = (ec.generate_private_key(ec.SECP256R1()) for _index in range(3))
    ca = _cert(_name("meshlab test CA"), _name("meshlab test CA"), ca_key, ca_key, True)
    other = _cert(_name("other CA"), _name("other CA"), other_key, other_key, True)
    srv = _cert(_name(SERVER_NAME), ca.subject, srv_key, ca_key, False, san=SERVER_NAME)
    (d / "ca.crt").write_bytes(_pem(ca))
    (d / "other-ca.crt").write_bytes(_pem(other))
    (d / "server.crt").write_bytes(_pem(srv))
    (d / "server.key").write_bytes(srv_key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return d


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers 200 with the Host header and SNI it saw, so tests can check what was sent."""

    def do_GET(self):  # noqa: N802 (http.server naming)
        sni = getattr(self.server, "last_sni", None)
        body = ("path=%s host=%s sni=%s" % (self.path, self.headers.get("Host"), sni)).encode()
        self.server.seen.append({"path": self.path, "host": self.headers.get("Host"), "sni": sni})
        code = 503 if self.path.startswith("/fail") else 200
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _serve(server):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


@pytest.fixture
def https_server(pki):
    """A real TLS server on 127.0.0.1 (random port) with a certificate for SERVER_NAME."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "server.crt", pki / "server.key")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.seen = []

    def remember_sni(sslobj, name, _ctx):
        server.last_sni = name

    ctx.sni_callback = remember_sni
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    _serve(server)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.seen = []
    _serve(server)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def refused_port():
    """A port nothing listens on (bound then closed without listen)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


class _RawServer:
    """Accepts TCP connections and does one thing with each: 'reset' after reading the request,
    'close' (empty reply) after reading it, 'reset-now' right after accept, or 'hang'."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.open = []
        self.stopped = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while not self.stopped.is_set():
            try:
                conn, _address = self.sock.accept()
            except OSError:
                return
            if self.behaviour != "reset-now":
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                except OSError:
                    pass
            if self.behaviour in ("reset", "reset-now"):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            elif self.behaviour == "close":
                conn.close()
            else:
                self.open.append(conn)

    def stop(self):
        self.stopped.set()
        self.sock.close()
        for conn in self.open:
            conn.close()


@pytest.fixture
def raw_server():
    servers = []

    def make(behaviour):
        servers.append(_RawServer(behaviour))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()
