"""The istiod emulation's outputs without a cluster: files pushed to proxy folders (config, certs, rotation),
the HTTPS injection webhook, and the Route router's edge TLS forwarding (real TLS, real curl)."""
import asyncio
import base64
import datetime
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshlab_lab.apps import bookinfo  # noqa: E402
from meshlab_lab.mesh import istiod as istiod_mod, proxy_config, router as router_mod  # noqa: E402
from meshlab_lab.mesh.snapshot import Snapshot  # noqa: E402

ROOT = "istio-system"


def meta(ns, name, **extra):
    return dict({"namespace": ns, "name": name, "uid": f"uid-{ns}-{name}", "creationTimestamp": "2024-01-01T00:00:00Z"},
                **extra)


def snapshot(pa_mode="PERMISSIVE"):
    snap = Snapshot()
    snap.replace("smcps", [{"metadata": meta(ROOT, "basic-install"), "spec": {}}])
    snap.replace("namespaces", [{"metadata": meta("", "bookinfo", labels={"maistra.io/member-of": ROOT})}])
    snap.replace("peerauthentications", [{"metadata": meta("bookinfo", "default"),
                                          "spec": {"mtls": {"mode": pa_mode}}}])
    snap.replace("pods", [{"metadata": meta("bookinfo", "details-v1-abc", labels={"app": "details"}),
                           "spec": {"serviceAccountName": "bookinfo-details", "containers": [
                               {"name": "details", "ports": [{"containerPort": 9080}]},
                               {"name": "istio-proxy", "args": ["proxy", "sidecar"]}]},
                           "status": {"podIP": "198.18.1.7", "phase": "Running"}}])
    return snap


@pytest.fixture
def state(tmp_path):
    (tmp_path / "pods" / "bookinfo_details-v1-abc").mkdir(parents=True)
    return tmp_path


@pytest.mark.skipif(os.geteuid() != 0, reason="istiod chowns proxy files to uid 1337 (needs root)")
def test_push_writes_config_and_spiffe_cert_then_only_on_change(state):
    snap = snapshot()
    istiod = istiod_mod.Istiod(None, snap, state)
    assert istiod.push(123.0) == 1
    folder = state / "pods" / "bookinfo_details-v1-abc" / "istio-proxy"
    config = proxy_config.validate(json.loads((folder / proxy_config.CONFIG_FILE).read_text()))
    assert config["inbound"]["ports"] == {"9080": "PERMISSIVE"} and config["pushed_at"] == 123.0
    assert (folder / proxy_config.KEY_FILE).stat().st_uid == 1337
    assert oct((folder / proxy_config.KEY_FILE).stat().st_mode & 0o777) == "0o600"
    cert = x509.load_pem_x509_certificate((folder / proxy_config.CERT_FILE).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-details"]
    assert istiod.push(None) == 0  # nothing changed, nothing written
    snap.replace("peerauthentications", snapshot("STRICT").list("peerauthentications"))
    assert istiod.push(456.0) == 1
    assert json.loads((folder / proxy_config.CONFIG_FILE).read_text())["inbound"]["ports"] == {"9080": "STRICT"}


@pytest.mark.skipif(os.geteuid() != 0, reason="istiod chowns proxy files to uid 1337 (needs root)")
def test_cert_is_rotated_before_expiry(state):
    istiod = istiod_mod.Istiod(None, snapshot(), state, cert_ttl=datetime.timedelta(minutes=10))
    istiod.push(None)
    folder = state / "pods" / "bookinfo_details-v1-abc" / "istio-proxy"
    first = (folder / proxy_config.CERT_FILE).read_bytes()
    assert istiod.push(None) == 0
    uid = "uid-bookinfo-details-v1-abc"
    istiod._cert_expiry[uid] = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=4)
    assert istiod.push(None) == 1
    second = (folder / proxy_config.CERT_FILE).read_bytes()
    assert second != first
    assert x509.load_pem_x509_certificate(second).not_valid_after_utc > istiod._cert_expiry[uid] - \
        datetime.timedelta(seconds=1)


def test_injection_webhook_answers_over_verified_https(tmp_path):
    (tmp_path / "pods").mkdir()
    istiod = istiod_mod.Istiod(None, snapshot(), tmp_path, webhook_port=0)
    istiod.start_webhook()
    try:
        hook = istiod.webhook_config(snapshot().list("smcps")[0])
        assert hook["metadata"]["name"] == "istio-sidecar-injector-basic-install-istio-system"
        webhook = hook["webhooks"][0]
        assert webhook["namespaceSelector"] == {"matchLabels": {"maistra.io/member-of": ROOT}}
        context = ssl.create_default_context(cadata=base64.b64decode(webhook["clientConfig"]["caBundle"]).decode())
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u1", "kind": {"kind": "Pod"}, "object": {
                "metadata": {"labels": {"app": "x", "sidecar.istio.io/inject": "true"}},
                "spec": {"containers": [{"name": "x", "image": "x"}]}}}}
        request = urllib.request.Request(webhook["clientConfig"]["url"], data=json.dumps(review).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:
            body = json.loads(answer.read())
        patch = json.loads(base64.b64decode(body["response"]["patch"]))
        assert any(op["path"] == "/spec/containers/-" and op["value"]["name"] == "istio-proxy" for op in patch)
        bad = urllib.request.Request(webhook["clientConfig"]["url"], data=b"{}")
        with pytest.raises(urllib.error.HTTPError) as failure:
            urllib.request.urlopen(bad, context=context, timeout=10)
        assert failure.value.code == 400
    finally:
        istiod.webhook_server.shutdown()


@pytest.mark.skipif(not shutil.which("curl"), reason="curl not installed")
def test_router_edge_tls_forwards_to_route_backend(tmp_path):
    backend = ThreadingHTTPServer(("127.0.0.1", 0), bookinfo.make_handler("details", "v1"))
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    port = backend.server_address[1]
    snap = Snapshot()
    snap.replace("routes", [{"metadata": meta("istio-system", "api"), "spec": {
        "host": "api-istio-system.apps.lab.local", "to": {"kind": "Service", "name": "details"},
        "port": {"targetPort": "http"}, "tls": {"termination": "edge"}}}])
    snap.replace("services", [{"metadata": meta("istio-system", "details"), "spec": {
        "ports": [{"name": "http", "port": 9080, "targetPort": port}]}}])
    snap.replace("endpoints", [{"metadata": meta("istio-system", "details"), "subsets": [
        {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": port}]}]}])
    router = router_mod.Router(snap, tmp_path)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(router.serve("127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    listen = server.sockets[0].getsockname()[1]
    host = "api-istio-system.apps.lab.local"

    def curl(name, path):
        return subprocess.run(["curl", "-sS", "-m", "10", "--cacert", str(tmp_path / "router-ca.crt"),
                               "--connect-to", f"{name}:443:127.0.0.1:{listen}", f"https://{name}{path}",
                               "-w", "\n%{http_code}"], capture_output=True, text=True)
    try:
        done = curl(host, "/details/0")
        assert done.stdout.endswith("\n200"), done.stderr
        assert json.loads(done.stdout.rsplit("\n", 1)[0])["id"] == 0
        assert curl("nothing-here.apps.lab.local", "/").stdout.endswith("\n503")
        assert curl("api.example.com", "/").returncode == 60  # the wildcard cert does not cover other domains
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        backend.shutdown()
