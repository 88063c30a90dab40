"""An HTTPS admission-webhook server on 127.0.0.1 with its own CA, and its ValidatingWebhookConfiguration.

The real operator serves its webhooks through the Service ``istio-operator-service`` with a
certificate from OpenShift's service CA; the lab's API server runs on the host, so the lab
registers a ``url`` clientConfig pointing at 127.0.0.1 and its own CA as ``caBundle``.
"""
import base64
import datetime
import ipaddress
import json
import logging
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOG = logging.getLogger(__name__)
VWC_PATH = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_certs(directory: Path) -> tuple[Path, Path, bytes]:
    """A throw-away CA and a serving certificate for 127.0.0.1; returns (cert file, key file, CA PEM)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meshlab-operators-webhook-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "istio-operator-service")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "webhook.crt", directory / "webhook.key"
    cert_file.write_bytes(_pem(cert))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file, _pem(ca)


class WebhookServer:
    """Serves ``handlers[path](admission_request) -> (allowed, message)`` as AdmissionReview responses."""

    def __init__(self, handlers: dict, cert_dir: Path | None = None, port: int = 0):
        self.handlers = handlers
        directory = cert_dir or Path(tempfile.mkdtemp(prefix="meshlab-webhook-"))
        cert_file, key_file, self.ca_pem = make_certs(directory)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_file, key_file)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    @property
    def ca_bundle(self) -> str:
        return base64.b64encode(self.ca_pem).decode()

    def start(self):
        threading.Thread(target=self.httpd.serve_forever, name="webhook-server", daemon=True).start()
        return self

    def stop(self):
        self.httpd.shutdown()

    def _handler_class(self):
        handlers = self.handlers

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server naming
                handler = handlers.get(self.path.split("?")[0])
                if handler is None:
                    self.send_error(404)
                    return
                review = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                request = review.get("request") or {}
                try:
                    allowed, message = handler(request)
                except Exception as exc:  # noqa: BLE001 - reported to the API server as a 500
                    LOG.exception("webhook %s failed", self.path)
                    allowed, message, code = False, str(exc), 500
                else:
                    code = 200 if allowed else 400
                response = {"uid": request.get("uid", ""), "allowed": allowed}
                if not allowed:
                    response["status"] = {"code": code, "message": message,
                                          "reason": "BadRequest" if code == 400 else "InternalError"}
                body = json.dumps({"apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
                                   "kind": "AdmissionReview", "response": response}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args):
                LOG.debug("webhook: " + fmt, *args)

        return Handler
