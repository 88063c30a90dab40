"""curl result classification, checked against REAL curl talking to small servers started on 127.0.0.1.

Each server misbehaves in one way a mesh probe meets: nothing listening, a reset after accept
(SO_LINGER 0, what a STRICT sidecar does to plaintext), a close without reply, the wrong protocol
(TLS vs plaintext) and plain HTTP 200 / 503 answers.
"""

import datetime
import os
import shutil
import socket
import socketserver
import ssl
import struct
import subprocess
import threading

import pytest

from ansible_collections.meshlab.mtls.plugins.module_utils.curl_result import (
    CURL_EXIT_MEANINGS,
    CurlResultError,
    classify_curl,
    parse_probe_output,
    probe_shell_command,
)

CURL = shutil.which("curl")
SH = shutil.which("sh")
needs_curl = pytest.mark.skipif(not CURL or not SH, reason="real curl and sh are needed (scripts/install-test-deps.sh)")
CURL_TIMEOUT_S = 5


# ---------------------------------------------------------------- local servers


def _read_request(conn):
    """Read until the end of the request head (or the peer stops sending)."""
    data = b""
    conn.settimeout(CURL_TIMEOUT_S)
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _serve(handle):
    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            handle(self.request)

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server


@pytest.fixture
def start_server():
    started = []

    def start(handle):
        server = _serve(handle)
        started.append(server)
        return server.server_address[1]

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def reset_after_accept(conn):
    _read_request(conn)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def close_without_reply(conn):
    _read_request(conn)
    conn.close()


def answer(status, reason):
    def handle(conn):
        _read_request(conn)
        body = b"meshlab\n"
        conn.sendall(b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                     % (status, reason, len(body), body))
    return handle


def plaintext_http_answer(conn):
    """A plaintext app (like nginx on 8080): reads whatever arrives and answers 400 in plain HTTP."""
    conn.settimeout(CURL_TIMEOUT_S)
    conn.recv(4096)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    conn.close()


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory):
    crypto = pytest.importorskip("cryptography")  # noqa: F841 - only to skip cleanly without it
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(folder / "cert.pem"), str(folder / "key.pem"))
    return context


def tls_server(context):
    def handle(conn):
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                _read_request(tls)
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        except (ssl.SSLError, OSError):
            pass  # the handshake fails when the client speaks plaintext: that is the case under test
    return handle


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_curl(url, *extra):
    proc = subprocess.run([CURL, "-s", "-S", "-o", os.devnull, "-w", "%{http_code}", "--max-time",
                           str(CURL_TIMEOUT_S), *extra, url], capture_output=True, text=True, check=False)
    return classify_curl(proc.returncode, proc.stdout, proc.stderr)


def run_probe(url, count, *extra):
    script = probe_shell_command(url, count, CURL_TIMEOUT_S, extra)
    proc = subprocess.run([SH, "-c", script], capture_output=True, text=True, check=False)
    return parse_probe_output(proc.stdout)


# ---------------------------------------------------------------- real curl


@needs_curl
def test_real_curl_closed_port_is_connection_refused():
    result = run_curl("http://127.0.0.1:%d/" % closed_port())
    assert (result["result"], result["curl_exit"], result["status"]) == ("failure", 7, None)
    assert result["meaning"].startswith("connection refused")


@needs_curl
def test_real_curl_reset_after_accept_is_connection_reset(start_server):
    result = run_curl("http://127.0.0.1:%d/" % start_server(reset_after_accept))
    assert (result["result"], result["curl_exit"]) == ("failure", 56)
    assert result["meaning"].startswith("connection reset by peer")
    assert "[curl: (56)" in result["meaning"]  # curl's own stderr line is kept in brackets


@needs_curl
def test_real_curl_close_without_reply_is_empty_reply(start_server):
    result = run_curl("http://127.0.0.1:%d/" % start_server(close_without_reply))
    assert (result["result"], result["curl_exit"]) == ("failure", 52)
    assert result["meaning"].startswith("empty reply from server")


@needs_curl
def test_real_curl_https_to_a_plaintext_server_is_a_tls_handshake_failure(start_server):
    result = run_curl("https://127.0.0.1:%d/" % start_server(plaintext_http_answer), "-k")
    assert (result["result"], result["curl_exit"]) == ("failure", 35)
    assert result["meaning"].startswith("TLS handshake failed")


@needs_curl
def test_real_curl_plaintext_http_to_a_tls_server_is_a_reset(start_server, tls_context):
    # The TLS server gives up on the plaintext request and closes with the rest of it unread, so the
    # kernel sends a RST: real curl reports 56 (200 of 200 runs on curl 7.88 / OpenSSL 3.0).
    result = run_curl("http://127.0.0.1:%d/" % start_server(tls_server(tls_context)))
    assert (result["result"], result["curl_exit"], result["status"]) == ("failure", 56, None)
    assert result["meaning"].startswith("connection reset by peer")


@needs_curl
def test_real_curl_https_to_the_tls_server_succeeds(start_server, tls_context):
    result = run_curl("https://127.0.0.1:%d/" % start_server(tls_server(tls_context)), "-k")
    assert (result["result"], result["status"], result["curl_exit"]) == ("success", 200, 0)


@needs_curl
def test_real_curl_server_that_never_answers_times_out(start_server):
    def silent(conn):
        _read_request(conn)
        while conn.recv(4096):  # hold the connection open until curl gives up and closes it
            pass

    result = run_curl("http://127.0.0.1:%d/" % start_server(silent), "--max-time", "1")
    assert (result["result"], result["curl_exit"]) == ("failure", 28)
    assert result["meaning"].startswith("timed out")


@needs_curl
def test_real_curl_http_200_is_success_and_503_is_failure(start_server):
    ok = run_curl("http://127.0.0.1:%d/" % start_server(answer(200, b"OK")))
    assert (ok["result"], ok["status"], ok["curl_exit"]) == ("success", 200, 0)
    unavailable = run_curl("http://127.0.0.1:%d/" % start_server(answer(503, b"Service Unavailable")))
    assert (unavailable["result"], unavailable["status"], unavailable["curl_exit"]) == ("failure", 503, 0)
    assert "503" in unavailable["meaning"]


@needs_curl
def test_real_curl_redirect_counts_as_success(start_server):
    result = run_curl("http://127.0.0.1:%d/" % start_server(answer(302, b"Found")))
    assert (result["result"], result["status"]) == ("success", 302)


# ---------------------------------------------------------------- the probe script through sh


@needs_curl
def test_probe_script_reports_one_line_per_request(start_server):
    results = run_probe("http://127.0.0.1:%d/details/0" % start_server(answer(200, b"OK")), 3)
    assert [(r["result"], r["status"], r["curl_exit"]) for r in results] == [("success", 200, 0)] * 3


@needs_curl
def test_probe_script_reports_reset_and_refused(start_server):
    reset = run_probe("http://127.0.0.1:%d/" % start_server(reset_after_accept), 2)
    assert [r["curl_exit"] for r in reset] == [56, 56]
    refused = run_probe("http://127.0.0.1:%d/" % closed_port(), 2)
    assert [(r["curl_exit"], r["status"]) for r in refused] == [(7, None), (7, None)]


@needs_curl
def test_probe_script_sees_each_answer_of_a_flapping_server(start_server):
    answers = iter([answer(200, b"OK"), answer(503, b"Service Unavailable"), answer(200, b"OK")])
    lock = threading.Lock()

    def flapping(conn):
        with lock:
            handle = next(answers)
        handle(conn)

    results = run_probe("http://127.0.0.1:%d/" % start_server(flapping), 3)
    assert [r["status"] for r in results] == [200, 503, 200]
    assert [r["result"] for r in results] == ["success", "failure", "success"]


@needs_curl
def test_probe_script_passes_extra_args(start_server):
    port = start_server(answer(200, b"OK"))
    results = run_probe("http://example.invalid:%d/" % port, 1, "--resolve", "example.invalid:%d:127.0.0.1" % port)
    assert results[0]["status"] == 200


@needs_curl
def test_probe_script_keeps_shell_metacharacters_in_the_url_literal(tmp_path):
    marker = tmp_path / "injected"
    url = "http://127.0.0.1:%d/$(touch %s)';touch %s;'" % (closed_port(), marker, marker)
    results = run_probe(url, 1)
    assert not marker.exists()
    assert len(results) == 1 and results[0]["result"] == "failure"


# ---------------------------------------------------------------- pure classification


@pytest.mark.parametrize("code, start", [(0, "curl exited 0"), (6, "could not resolve the host"),
                                         (7, "connection refused"), (16, "HTTP/2 framing"),
                                         (18, "transfer closed"), (28, "timed out"), (35, "TLS handshake failed"),
                                         (52, "empty reply"), (56, "connection reset by peer"),
                                         (60, "server certificate not trusted"), (92, "HTTP/2 stream error")])
def test_exit_codes_have_plain_language_meanings(code, start):
    result = classify_curl(code, "000")
    assert result["meaning"].startswith(start) and result["result"] == "failure" and result["status"] is None


def test_unknown_exit_code_still_gets_a_meaning():
    assert 200 not in CURL_EXIT_MEANINGS
    assert classify_curl(200, "000")["meaning"] == "curl failed with exit code 200"


@pytest.mark.parametrize("status, result", [("200", "success"), ("399", "success"), ("400", "failure"),
                                            ("503", "failure"), ("199", "failure")])
def test_success_means_http_200_to_399(status, result):
    assert classify_curl(0, status)["result"] == result


def test_status_with_a_curl_error_is_failure():
    result = classify_curl(18, "200")
    assert (result["result"], result["status"]) == ("failure", 200)
    assert "after HTTP 200" in result["meaning"]


def test_stderr_last_line_is_kept():
    result = classify_curl(56, "000", "curl: (56) Recv failure: Connection reset by peer\n")
    assert result["meaning"].endswith("[curl: (56) Recv failure: Connection reset by peer]")


@pytest.mark.parametrize("bad", [("x", "200"), (-1, "200"), (0, "20"), (0, "abc")])
def test_bad_values_are_rejected(bad):
    with pytest.raises(CurlResultError):
        classify_curl(*bad)


def test_parse_ignores_noise_and_rejects_malformed_probe_lines():
    text = "sh: warning\nMESHLAB 0 200\n\nMESHLAB 56 000\n"
    assert [(r["curl_exit"], r["status"]) for r in parse_probe_output(text)] == [(0, 200), (56, None)]
    with pytest.raises(CurlResultError, match="malformed probe line"):
        parse_probe_output("MESHLAB zero 200\n")


@pytest.mark.parametrize("args, message", [(("details:9080", 1, 1), "absolute URL"),
                                           (("http://x/", 0, 1), "positive integer"),
                                           (("http://x/", 1, 0), "positive"),
                                           (("http://x/", 1, "soon"), "number of seconds"),
                                           (("http://x/", 1, 1, "--insecure"), "separate arguments")])
def test_probe_command_rejects_bad_input(args, message):
    with pytest.raises(CurlResultError, match=message):
        probe_shell_command(*args)
