"""The lab's OpenShift router as real HAProxy, standalone on loopback: Routes rendered into haproxy.cfg, edge TLS
with the lab router CA, Host + longest path routing, the 503 page, reloads on change, refused configs, the
plain-HTTP redirect port, stop and leftover cleanup. Real haproxy, real curl; no cluster, no running lab needed.

HAProxy listens on 127.0.0.2 on free ports (never the lab's 8443/8080); backends run on 127.0.0.3/127.0.0.4.
"""
import json
import logging
import os
import signal
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshlab_lab.apps import bookinfo  # noqa: E402
from meshlab_lab.mesh import router as router_mod  # noqa: E402
from meshlab_lab.mesh.snapshot import Snapshot  # noqa: E402

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the router tests run HAProxy as the lab does: as root"),
    pytest.mark.skipif(not os.access(router_mod.HAPROXY, os.X_OK),
                       reason=f"{router_mod.HAPROXY} missing: apt-get install haproxy (lab/scripts/install-deps.sh)"),
    pytest.mark.skipif(not shutil.which("curl"), reason="curl not installed"),
]

ROUTER_IP = "127.0.0.2"
NS = "shop"


def meta(ns, name, created="2024-01-01T00:00:00Z", **extra):
    return dict({"namespace": ns, "name": name, "uid": f"uid-{ns}-{name}", "creationTimestamp": created}, **extra)


def free_port(ip=ROUTER_IP):
    with socket.socket() as probe:
        probe.bind((ip, 0))
        return probe.getsockname()[1]


def wait_for(cond, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Echo(BaseHTTPRequestHandler):
    """Answers JSON naming the backend (its server's ``name``), the path and the request headers."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - http.server naming
        body = json.dumps({"backend": self.server.name, "path": self.path,
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


@pytest.fixture
def backends():
    """start(name, ip) -> (ip, port) of a running HTTP backend that answers with its name."""
    servers = []

    def start(name, ip="127.0.0.3", handler=Echo):
        server = ThreadingHTTPServer((ip, 0), handler)
        server.name = name
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server.server_address
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def routers(tmp_path):
    """make(snap, plain=True) -> a started Router on 127.0.0.2 (free ports), stopped at teardown."""
    made = []

    def make(snap, plain=True, state=tmp_path, start=True, listen=None, http_listen=None):
        http = http_listen or ((ROUTER_IP, free_port()) if plain else None)
        router = router_mod.Router(snap, state, listen=listen or (ROUTER_IP, free_port()), http_listen=http)
        made.append(router)
        if start:
            router.start()
        return router
    yield make
    for router in made:
        router.stop()


def route(name, host, service, path=None, tls="edge", policy=None, annotations=None, created="2024-01-01T00:00:00Z"):
    spec = {"host": host, "to": {"kind": "Service", "name": service}, "port": {"targetPort": "http"}}
    if path:
        spec["path"] = path
    if tls:
        spec["tls"] = {"termination": tls}
        if policy:
            spec["tls"]["insecureEdgeTerminationPolicy"] = policy
    return {"metadata": meta(NS, name, created, annotations=annotations or {}), "spec": spec}


def service(name):
    return {"metadata": meta(NS, name), "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def endpoints(name, *addrs, not_ready=()):
    """Endpoints of ``name`` with ready ``addrs`` ((ip, port), ...) on one port named http."""
    subsets = [{"addresses": [{"ip": ip, "targetRef": {"kind": "Pod", "name": f"{name}-{i}"}}],
                "ports": [{"name": "http", "port": port}]} for i, (ip, port) in enumerate(addrs)]
    subsets += [{"notReadyAddresses": [{"ip": ip}], "ports": [{"name": "http", "port": port}]}
                for ip, port in not_ready]
    return {"metadata": meta(NS, name), "subsets": subsets}


def snapshot(routes, services=(), eps=()):
    snap = Snapshot()
    snap.replace("routes", list(routes))
    snap.replace("services", list(services))
    snap.replace("endpoints", list(eps))
    return snap


def curl(router, host, path="/", *args, plain=False):
    """(exit code, status, body, redirect url) of curl to ``host`` on the router, verifying with the router CA."""
    ip, port = router.plain if plain else router.listen
    url = f"{'http' if plain else 'https'}://{host}:{port}{path}"
    done = subprocess.run(["curl", "-sS", "-m", "5", "--resolve", f"{host}:{port}:{ip}",
                           "--cacert", str(router.pki_dir / "router-ca.crt"), *args, url,
                           "-w", "\n%{http_code} %{redirect_url}"], capture_output=True, text=True)
    body, _, tail = done.stdout.rpartition("\n")
    status, _, redirect = tail.partition(" ")
    return done.returncode, status, body, redirect


def answered_by(router, host, path="/", **kw):
    rc, status, body, _ = curl(router, host, path, **kw)
    assert (rc, status) == (0, "200"), (rc, status, body)
    return json.loads(body)


def listener_inodes(ip, port):
    """Inodes of the LISTEN sockets on ip:port (from /proc/net/tcp)."""
    local = "%s:%04X" % ("".join(f"{int(part):02X}" for part in reversed(ip.split("."))), port)
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return [row[9] for row in rows if row[1] == local and row[3] == "0A"]


def test_router_edge_tls_forwards_to_route_backend(tmp_path, backends, routers):
    """A Route's host through edge TLS reaches the Service endpoint; the cert is the lab router CA's wildcard."""
    ip, port = backends("details", handler=bookinfo.make_handler("details", "v1"))
    host = "api-istio-system.apps.lab.local"
    snap = Snapshot()
    snap.replace("routes", [{"metadata": meta("istio-system", "api"), "spec": {
        "host": host, "to": {"kind": "Service", "name": "details"},
        "port": {"targetPort": "http"}, "tls": {"termination": "edge"}}}])
    snap.replace("services", [{"metadata": meta("istio-system", "details"), "spec": {
        "ports": [{"name": "http", "port": 9080, "targetPort": port}]}}])
    snap.replace("endpoints", [{"metadata": meta("istio-system", "details"), "subsets": [
        {"addresses": [{"ip": ip}], "ports": [{"name": "http", "port": port}]}]}])
    router = routers(snap)
    assert (tmp_path / "pki" / "router-ca.crt").is_file() and router.cfg.parent == tmp_path / "router"
    rc, status, body, _ = curl(router, host, "/details/0")
    assert (rc, status) == (0, "200"), body
    assert json.loads(body)["id"] == 0
    assert curl(router, "nothing-here.apps.lab.local")[1] == "503"
    assert curl(router, "api.example.com")[0] == 60  # the wildcard cert does not cover other domains

    context = ssl.create_default_context(cafile=str(tmp_path / "pki" / "router-ca.crt"))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(router.listen, timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:  # verifies chain and host name
            assert tls.selected_alpn_protocol() == "http/1.1"
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            cert = tls.getpeercert()
    assert ("DNS", "*.apps.lab.local") in cert["subjectAltName"]
    assert dict(x[0] for x in cert["issuer"])["commonName"] == "meshlab router CA"


def test_route_backend_sees_forwarded_headers_and_host_port_is_ignored(backends, routers):
    ep = backends("one")
    router = routers(snapshot([route("web", "web-shop.apps.lab.local", "web")], [service("web")],
                              [endpoints("web", ep)]))
    got = answered_by(router, "WEB-shop.apps.lab.local", "/a/b?c=d")  # Host carries :port and upper case
    assert got["backend"] == "one" and got["path"] == "/a/b?c=d"
    headers = got["headers"]
    assert headers["x-forwarded-proto"] == "https" and headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-port"] == str(router.listen[1])
    assert headers["forwarded"].startswith("for=127.0.0.1;host=") and headers["forwarded"].endswith(";proto=https")


def test_unknown_host_or_no_ready_endpoint_gets_application_not_available(backends, routers):
    ep = backends("one")
    snap = snapshot([route("web", "web-shop.apps.lab.local", "web"),
                     route("idle", "idle-shop.apps.lab.local", "idle"),
                     route("gone", "gone-shop.apps.lab.local", "missing"),
                     route("pass", "pass-shop.apps.lab.local", "web", tls="passthrough")],
                    [service("web"), service("idle")],
                    [endpoints("web", ep), endpoints("idle", not_ready=[ep])])
    router = routers(snap)
    assert answered_by(router, "web-shop.apps.lab.local")["backend"] == "one"
    for host in ("nothing-here.apps.lab.local", "idle-shop.apps.lab.local", "gone-shop.apps.lab.local",
                 "pass-shop.apps.lab.local"):
        rc, status, body, _ = curl(router, host, "/x")
        assert (rc, status) == (0, "503"), host
        assert "<title>Application is not available</title>" in body, host
        assert body.encode() == router_mod.UNAVAILABLE


def test_longest_path_prefix_wins_and_the_oldest_route_keeps_a_claimed_path(backends, routers):
    root, api, v2, late = backends("root"), backends("api"), backends("v2", "127.0.0.4"), backends("late")
    host = "shop-shop.apps.lab.local"
    snap = snapshot([route("root", host, "root"), route("v2", host, "v2", path="/api/v2"),
                     route("api", host, "api", path="/api"),
                     route("late", host, "late", path="/api", created="2024-06-01T00:00:00Z"),
                     route("other", "other-shop.apps.lab.local", "v2", path="/api/v2")],
                    [service(n) for n in ("root", "api", "v2", "late")],
                    [endpoints("root", root), endpoints("api", api), endpoints("v2", v2), endpoints("late", late)])
    router = routers(snap)
    assert answered_by(router, host, "/api/v2/items")["backend"] == "v2"
    assert answered_by(router, host, "/api/v1/items")["backend"] == "api"
    assert answered_by(router, host, "/api")["backend"] == "api"
    assert answered_by(router, host, "/static/app.js")["backend"] == "root"
    assert answered_by(router, host, "/")["backend"] == "root"
    assert curl(router, "other-shop.apps.lab.local", "/api/v1")[1] == "503"  # its only path is /api/v2
    assert "be_edge_http:shop:late" not in router.cfg.read_text()


def test_endpoint_change_reloads_haproxy_without_dropping_the_listener(backends, routers):
    first, second = backends("first", "127.0.0.3"), backends("second", "127.0.0.4")
    host = "web-shop.apps.lab.local"
    snap = snapshot([route("web", host, "web")], [service("web")], [endpoints("web", first)])
    router = routers(snap)
    assert answered_by(router, host)["backend"] == "first"
    before, inodes = router.status(), listener_inodes(*router.listen)
    assert len(inodes) == 1 and before["worker"]
    assert router.sync() is False  # nothing changed: no reload
    assert router.status()["worker"] == before["worker"] and router.reloads == 0

    refused, done = [], threading.Event()

    def knock():  # connect again and again while HAProxy reloads: the port must never refuse
        while not done.is_set():
            try:
                socket.create_connection(router.listen, timeout=2).close()
            except OSError as exc:
                refused.append(exc)
    knocker = threading.Thread(target=knock, daemon=True)
    knocker.start()
    try:
        snap.replace("endpoints", [endpoints("web", second)])
        assert router.sync() is True
    finally:
        done.set()
        knocker.join(5)
    after = router.status()
    assert after["master"] == before["master"] and after["worker"] != before["worker"]
    assert after["reloads"] == before["reloads"] + 1 and router.reloads == 1
    assert listener_inodes(*router.listen) == inodes, "the listening socket was handed over, not re-created"
    assert refused == []
    assert "127.0.0.4" in router.cfg.read_text() and "127.0.0.3" not in router.cfg.read_text()
    assert answered_by(router, host)["backend"] == "second"
    wait_for(lambda: not router_mod._alive(before["worker"]), "the old worker to exit")


def test_invalid_render_is_refused_and_the_old_config_keeps_serving(backends, routers, caplog):
    ep = backends("one")
    host = "web-shop.apps.lab.local"
    snap = snapshot([route("web", host, "web")], [service("web")], [endpoints("web", ep)])
    router = routers(snap)
    running, before = router.cfg.read_text(), router.status()
    # passes the renderer's syntax check, but HAProxy refuses it (timers stop at ~24.8 days)
    snap.replace("routes", [route("web", host, "web", annotations={"haproxy.router.openshift.io/timeout": "99999d"})])
    with caplog.at_level(logging.ERROR, logger="meshlab.router"):
        assert router.sync() is False
    assert any("refused" in r.getMessage() and "timer overflow" in r.getMessage() for r in caplog.records)
    assert router.cfg.read_text() == running == router.applied
    assert router.status()["worker"] == before["worker"] and router.reloads == 0
    assert answered_by(router, host)["backend"] == "one"
    caplog.clear()
    assert router.sync() is False and not caplog.records  # the same bad render is not checked or logged again
    snap.replace("routes", [route("web", host, "web", annotations={"haproxy.router.openshift.io/timeout": "5m"})])
    assert router.sync() is True
    assert "timeout server 5m" in router.cfg.read_text()
    assert answered_by(router, host)["backend"] == "one"


def test_plain_port_redirects_allows_or_refuses_per_insecure_policy(backends, routers):
    ep = backends("one")
    names = ("redirect", "allow", "none", "plain")
    snap = snapshot([route("redirect", "redirect-shop.apps.lab.local", "web", policy="Redirect"),
                     route("allow", "allow-shop.apps.lab.local", "web", policy="Allow"),
                     route("none", "none-shop.apps.lab.local", "web", policy="None"),
                     route("plain", "plain-shop.apps.lab.local", "web", tls=None)],
                    [service("web")], [endpoints("web", ep)])
    router = routers(snap)
    assert router.plain == router.http_listen
    rc, status, body, location = curl(router, "redirect-shop.apps.lab.local", "/x/y?z=1", plain=True)
    assert (rc, status, location) == (0, "302", "https://redirect-shop.apps.lab.local/x/y?z=1")
    assert answered_by(router, "allow-shop.apps.lab.local", plain=True)["headers"]["x-forwarded-proto"] == "http"
    assert answered_by(router, "plain-shop.apps.lab.local", plain=True)["backend"] == "one"
    assert curl(router, "none-shop.apps.lab.local", plain=True)[1] == "503"
    assert curl(router, "nothing-here.apps.lab.local", plain=True)[1] == "503"
    for name in names[:3]:  # every edge Route is served over TLS, a Route without tls is not
        assert answered_by(router, f"{name}-shop.apps.lab.local")["backend"] == "one"
    assert curl(router, "plain-shop.apps.lab.local")[1] == "503"


def test_busy_plain_port_leaves_the_plain_frontend_out(backends, routers, tmp_path):
    ep = backends("one")
    snap = snapshot([route("web", "web-shop.apps.lab.local", "web", policy="Redirect")], [service("web")],
                    [endpoints("web", ep)])
    router = routers(snap, start=False)
    with socket.socket() as squatter:
        squatter.bind(router.http_listen)
        squatter.listen()
        router.start()
        assert router.plain is None and "frontend fe_http" not in router.cfg.read_text()
        assert answered_by(router, "web-shop.apps.lab.local")["backend"] == "one"


def test_stop_kills_haproxy_and_start_kills_a_leftover(backends, routers, tmp_path):
    ep = backends("one")
    snap = snapshot([route("web", "web-shop.apps.lab.local", "web")], [service("web")], [endpoints("web", ep)])
    crashed = routers(snap)
    leftover = crashed.status()
    assert router_mod._alive(leftover["master"]) and router_mod._alive(leftover["worker"])
    assert int(crashed.pid_file.read_text().split()[0]) == leftover["master"]
    orphan, crashed.proc = crashed.proc, None  # as if the addon had been killed: nobody stops this haproxy

    # same state dir and ports: start must clear the leftover first, or HAProxy could not bind
    router = routers(snap, listen=crashed.listen, http_listen=crashed.http_listen)
    assert not router_mod._alive(leftover["master"]) and not router_mod._alive(leftover["worker"])
    orphan.wait(5)
    assert answered_by(router, "web-shop.apps.lab.local")["backend"] == "one"
    running = router.status()
    router.stop()
    assert not router_mod._alive(running["master"]) and not router_mod._alive(running["worker"])
    assert not router.pid_file.exists() and not router.master_sock.exists()
    assert listener_inodes(*router.listen) == []
    assert curl(router, "web-shop.apps.lab.local")[0] == 7  # connection refused


def test_busy_tls_port_fails_start_and_a_dead_haproxy_is_restarted_by_sync(backends, routers):
    ep = backends("one")
    snap = snapshot([route("web", "web-shop.apps.lab.local", "web")], [service("web")], [endpoints("web", ep)])
    router = routers(snap, start=False)
    with socket.socket() as squatter:
        squatter.bind(router.listen)
        squatter.listen()
        with pytest.raises(router_mod.RouterError, match="cannot bind socket"):
            router.start()
    router.start()
    dead = router.status()
    os.kill(dead["master"], signal.SIGKILL)  # our own child: the haproxy master this test started
    router.proc.wait(5)
    wait_for(lambda: not router_mod._alive(dead["worker"]), "the worker to follow its master")
    assert router.sync() is True
    assert router.status()["master"] != dead["master"]
    assert answered_by(router, "web-shop.apps.lab.local")["backend"] == "one"
