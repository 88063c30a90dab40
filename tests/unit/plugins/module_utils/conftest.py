"""Shared fixtures for module_utils tests: the shared upstream fixtures, a test PKI and loopback captures."""

import datetime
import http.client
import http.server
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import types
from pathlib import Path

import pytest

from ansible_collections.meshlab.mtls.plugins.module_utils import pcap_tls

SNI = "outbound_.9080_._.details.bookinfo.svc.cluster.local"
ALPN = "istio-http/1.1"
SERVER_SPIFFE = "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-details"
CLIENT_SPIFFE = "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage"
CAPTURE_TIMEOUT_S = 20


def shared_dir():
    """``../shared`` next to the repository (or $MESHLAB_SHARED)."""
    if os.environ.get("MESHLAB_SHARED"):
        return Path(os.environ["MESHLAB_SHARED"])
    return Path(__file__).resolve().parents[4] / ".." / "shared"


@pytest.fixture(scope="session")
def envoy_fixtures():
    path = shared_dir() / "fixtures" / "envoy"
    if not path.is_dir():
        pytest.skip("shared Envoy fixtures not found at %s (set MESHLAB_SHARED to the shared folder)" % path)
    return path


# ---------------------------------------------------------------- PKI


def _issue(subject_cn, spiffe, issuer_key, issuer_name, is_ca, key=None):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
    if spiffe:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe)]),
                                        critical=False)
    return key, builder.sign(issuer_key or key, hashes.SHA256()), name


@pytest.fixture(scope="session")
def mesh_pki(tmp_path_factory):
    """A mesh-like CA and two workload certificates whose only SAN is a SPIFFE URI."""
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization

    folder = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert, ca_name = _issue("meshlab test root CA", None, None, None, True)
    files = {"ca": folder / "ca.pem"}
    files["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for role, spiffe in (("server", SERVER_SPIFFE), ("client", CLIENT_SPIFFE)):
        key, cert = _issue(role, spiffe, ca_key, ca_name, False)[:2]
        pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        files[role] = folder / ("%s.pem" % role)
        files[role].write_bytes(pem)
    return files


# ---------------------------------------------------------------- loopback capture


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout_s, what))


def _closed_connections(path):
    """Number of TCP connections in the capture so far that ended (a FIN from both sides, or a RST)."""
    try:
        data = path.read_bytes()
        fins, ended = {}, set()
        for src, sport, dst, dport, _seq, flags, _payload in pcap_tls.tcp_segments(data):
            connection = frozenset(((src, sport), (dst, dport)))
            if flags & 0x04:
                ended.add(connection)
            if flags & 0x01:
                fins.setdefault(connection, set()).add((src, sport))
                if len(fins[connection]) == 2:
                    ended.add(connection)
        return len(ended)
    except pcap_tls.PcapError:
        return 0  # tcpdump is mid-write


class LoopbackCapture:
    """Run tcpdump for one port while the body runs; ``.data`` holds the capture afterwards.

    Call ``expect_closed(n)`` before leaving to wait until n connections were closed in the file.
    """

    def __init__(self, path, port, interface="lo", extra_args=()):
        self.path, self.port, self.interface, self.extra_args = path, port, interface, list(extra_args)
        self.data, self.process, self._expected_closed = None, None, 0

    def __enter__(self):
        command = ["tcpdump", "-i", self.interface, "-U", "-n", *self.extra_args, "-w", str(self.path),
                   "tcp port %d" % self.port]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        lines = []

        def read_until_listening():
            for line in self.process.stderr:
                lines.append(line)
                if "listening on" in line:
                    return

        reader = threading.Thread(target=read_until_listening, daemon=True)
        reader.start()
        reader.join(CAPTURE_TIMEOUT_S)
        if not lines or "listening on" not in lines[-1]:
            self.process.kill()
            self.process.wait()
            if any("not permitted" in line or "ermission" in line for line in lines):
                pytest.skip("tcpdump may not capture here (no CAP_NET_RAW?): %s" % "".join(lines).strip())
            raise AssertionError("tcpdump did not start listening: %r" % lines)
        return self

    def expect_closed(self, count):
        self._expected_closed = count

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None and self._expected_closed:
                wait_until(lambda: _closed_connections(self.path) >= self._expected_closed, CAPTURE_TIMEOUT_S,
                           "%d closed connections in %s" % (self._expected_closed, self.path))
        finally:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(CAPTURE_TIMEOUT_S)
            self.process.stderr.close()
        self.data = self.path.read_bytes()
        return False


@pytest.fixture
def capture_ok():
    if os.geteuid() != 0:
        pytest.skip("capturing on loopback needs root (tcpdump)")
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed (see tests/unit/apt-packages.txt)")


# ---------------------------------------------------------------- traffic


def serve_http_once(port, ready):
    """A real http.server that answers one GET and returns."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"id": 0}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", port), Handler)
    ready.set()
    server.handle_request()
    server.server_close()


def plain_http_get(port, path="/details/0"):
    ready = threading.Event()
    thread = threading.Thread(target=serve_http_once, args=(port, ready), daemon=True)
    thread.start()
    ready.wait(CAPTURE_TIMEOUT_S)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=CAPTURE_TIMEOUT_S)
    connection.request("GET", path, headers={"Connection": "close"})
    response = connection.getresponse()
    response.read()
    connection.close()
    thread.join(CAPTURE_TIMEOUT_S)
    return response.status


def _tls_version(name):
    return {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[name]


def _client_over_chunks(raw, client_ctx, request, chunk):
    """TLS client that hands its bytes to TCP in ``chunk``-sized writes (Nagle off), so records span segments.

    Loopback does not segment by MSS (GSO), so small writes are how a test gets TLS records split
    over several real TCP segments.
    """
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_ctx.wrap_bio(incoming, outgoing, server_hostname=SNI)

    def flush():
        data = outgoing.read()
        for start in range(0, len(data), chunk):
            raw.sendall(data[start:start + chunk])

    def pull():
        data = raw.recv(65536)
        incoming.write(data) if data else incoming.write_eof()
        return bool(data)

    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            flush()
            if not pull():
                raise AssertionError("server closed during the handshake") from None
    tls.write(request)
    flush()
    reply = b""
    while True:
        try:
            data = tls.read(65536)
        except ssl.SSLWantReadError:
            flush()
            if pull():
                continue
            break
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            break
        if not data:
            break
        reply += data
    return tls, reply


def mutual_tls_get(port, pki, version, chunk=None, path="/details/0"):
    """Real mutual TLS over loopback like two sidecars: client cert, SPIFFE SANs, Istio ALPN and SNI.

    Returns what each side saw: negotiated ALPN, the client's SPIFFE id as the server saw it, the reply.
    ``chunk`` makes the client write its TLS bytes to TCP in pieces of that size.
    """
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.minimum_version = server_ctx.maximum_version = _tls_version(version)
    server_ctx.load_cert_chain(pki["server"])
    server_ctx.load_verify_locations(pki["ca"])
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.set_alpn_protocols([ALPN, "h2", "http/1.1"])
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.minimum_version = client_ctx.maximum_version = _tls_version(version)
    client_ctx.check_hostname = False  # workload certs carry only a SPIFFE URI, as in Istio
    client_ctx.load_verify_locations(pki["ca"])
    client_ctx.load_cert_chain(pki["client"])
    client_ctx.set_alpn_protocols([ALPN])

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1)
    seen = {}

    def serve():
        conn = listener.accept()[0]
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            seen["client_san"] = [v for k, v in tls.getpeercert().get("subjectAltName", ()) if k == "URI"]
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                request += chunk
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{\"id\": 0}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        raw = socket.socket()
        raw.settimeout(CAPTURE_TIMEOUT_S)
        raw.connect(("127.0.0.1", port))
        request = ("GET %s HTTP/1.1\r\nHost: details:9080\r\n\r\n" % path).encode()
        if chunk:
            with raw:
                tls, seen["reply"] = _client_over_chunks(raw, client_ctx, request, chunk)
                seen["alpn"], seen["version"] = tls.selected_alpn_protocol(), tls.version()
            thread.join(CAPTURE_TIMEOUT_S)
            return seen
        with client_ctx.wrap_socket(raw, server_hostname=SNI) as tls:
            seen["alpn"] = tls.selected_alpn_protocol()
            seen["version"] = tls.version()
            tls.sendall(request)
            reply = b""
            while True:
                try:
                    chunk = tls.recv(4096)
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    break  # the server closed without close_notify after the reply
                if not chunk:
                    break
                reply += chunk
            seen["reply"] = reply
        thread.join(CAPTURE_TIMEOUT_S)
    finally:
        listener.close()
    return seen


@pytest.fixture(scope="session")
def loopback():
    """The capture and traffic helpers above, for test modules (fixtures instead of importing conftest)."""
    return types.SimpleNamespace(
        SNI=SNI, ALPN=ALPN, CLIENT_SPIFFE=CLIENT_SPIFFE, Capture=LoopbackCapture, free_port=free_port,
        mutual_tls_get=mutual_tls_get, plain_http_get=plain_http_get,
    )
