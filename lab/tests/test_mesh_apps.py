"""The lab's bookinfo apps (upstream JSON shapes, productpage error texts) and the control-plane placeholder."""
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(LAB))

from meshlab_lab.apps import bookinfo  # noqa: E402


def serve(app, version="v1"):
    server = ThreadingHTTPServer(("127.0.0.1", 0), bookinfo.make_handler(app, version))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def get(server_or_port, path):
    port = server_or_port if isinstance(server_or_port, int) else server_or_port.server_address[1]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.headers.get("Content-Type"), answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type"), exc.read().decode()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def point(monkeypatch, service, server):
    monkeypatch.setenv(f"{service.upper()}_HOSTNAME", "127.0.0.1")
    monkeypatch.setenv(f"{service.upper()}_SERVICE_PORT", str(server.server_address[1] if server else free_port()))


def test_details_and_ratings_shapes():
    details, ratings = serve("details"), serve("ratings")
    status, kind, body = get(details, "/details/0")
    assert (status, kind) == (200, "application/json")
    assert json.loads(body) == {"id": 0, "author": "William Shakespeare", "year": 1595, "type": "paperback",
                                "pages": 200, "publisher": "PublisherA", "language": "English",
                                "ISBN-10": "1234567890", "ISBN-13": "123-1234567890"}
    assert get(details, "/details/x")[0] == 400
    assert json.loads(get(ratings, "/ratings/0")[2]) == {"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}
    assert get(ratings, "/nothing")[0] == 404


def test_reviews_versions_and_ratings_failure(monkeypatch):
    ratings = serve("ratings")
    point(monkeypatch, "ratings", ratings)
    v1 = json.loads(get(serve("reviews", "v1"), "/reviews/0")[2])
    assert all("rating" not in r for r in v1["reviews"]) and len(v1["reviews"]) == 2
    v3 = json.loads(get(serve("reviews", "v3"), "/reviews/0")[2])
    assert [r["rating"] for r in v3["reviews"]] == [{"stars": 5, "color": "red"}, {"stars": 4, "color": "red"}]
    point(monkeypatch, "ratings", None)  # nothing listens there
    v2 = json.loads(get(serve("reviews", "v2"), "/reviews/0")[2])
    assert v2["reviews"][0]["rating"] == {"error": "Ratings service is currently unavailable"}


def test_productpage_includes_details_and_reviews_or_error_texts(monkeypatch):
    point(monkeypatch, "details", serve("details"))
    point(monkeypatch, "reviews", serve("reviews", "v1"))
    page = serve("productpage")
    status, kind, html = get(page, "/productpage")
    assert status == 200 and kind.startswith("text/html")
    assert "William Shakespeare" in html and "Reviewer1" in html and "Error fetching" not in html
    assert json.loads(get(page, "/api/v1/products")[2])[0]["title"] == "The Comedy of Errors"
    assert get(page, "/health")[:2] == (200, "text/plain")
    assert get(page, "/static/bootstrap.css")[0] == 200
    point(monkeypatch, "details", None)
    point(monkeypatch, "reviews", None)
    html = get(page, "/productpage")[2]
    assert "Error fetching product details!" in html and "Error fetching product reviews!" in html
    assert get(page, "/api/v1/products/0")[0] == 503


def test_placeholder_answers_only_its_readiness_paths():
    http_port, tcp_port = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "meshlab_lab.apps.placeholder", "--http", f"{http_port}:/ready",
                             "--tcp", str(tcp_port)], env={"PYTHONPATH": str(LAB), "PATH": "/usr/bin:/bin"})
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                status = get(http_port, "/ready")[0]
                break
            except OSError:
                assert time.monotonic() < deadline, "placeholder did not start"
                time.sleep(0.1)
        assert status == 200
        assert get(http_port, "/other")[0] == 404
        socket.create_connection(("127.0.0.1", tcp_port), timeout=5).close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_placeholder_rejects_bad_arguments():
    done = subprocess.run([sys.executable, "-m", "meshlab_lab.apps.placeholder", "--http", "abc"],
                          env={"PYTHONPATH": str(LAB)}, capture_output=True, text=True)
    assert done.returncode == 2 and "PORT:/path" in done.stderr


@pytest.mark.parametrize("name", ["details.bookinfo.svc.cluster.local"])
def test_dns_fallback_reports_unresolvable_names(name, monkeypatch):
    from meshlab_lab.apps import dns
    monkeypatch.setattr(dns, "CLUSTER_DNS", "127.0.0.1")  # nothing answers DNS there
    monkeypatch.setattr(dns, "QUERY_TIMEOUT", 0.2)
    monkeypatch.setattr(dns.socket, "getaddrinfo", lambda *a, **k: (_ for _ in ()).throw(OSError("no")))
    with pytest.raises(OSError, match="cannot resolve"):
        dns.resolve(name)
