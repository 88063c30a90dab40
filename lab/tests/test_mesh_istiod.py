"""The istiod emulation's outputs without a cluster: files pushed to proxy folders (config, certs, rotation),
the HTTPS injection webhook, and the Route router's edge TLS forwarding (real TLS, real curl)."""
import base64
import datetime
import json
import os
import ssl
import sys
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshlab_lab.mesh import istiod as istiod_mod, proxy_config, xds  # noqa: E402
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


def workload_cert(folder) -> bytes:
    """The certificate istiod delivered in the SDS secret ``default``."""
    response = json.loads((folder / xds.SECRET_FILES["default"]).read_text())
    return response["resources"][0]["tls_certificate"]["certificate_chain"]["inline_string"].encode()


def inbound_protocols(folder, port) -> list[str]:
    """The transport protocols of virtualInbound's chains for ``port`` in the pushed LDS file."""
    listeners = json.loads((folder / xds.LDS_FILE).read_text())["resources"]
    inbound = next(listener for listener in listeners if listener["name"] == "virtualInbound")
    return sorted(chain["filter_chain_match"].get("transport_protocol", "any") for chain in inbound["filter_chains"]
                  if chain["filter_chain_match"].get("destination_port") == port)


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
    config = proxy_config.validate(json.loads((folder / proxy_config.INTENT_FILE).read_text()))
    assert config["inbound"]["ports"] == {"9080": "PERMISSIVE"}
    assert inbound_protocols(folder, 9080) == ["raw_buffer", "tls"]
    secret_file = folder / xds.SECRET_FILES["default"]
    assert secret_file.stat().st_uid == 1337
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    cert = x509.load_pem_x509_certificate(workload_cert(folder))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-details"]
    assert istiod.push(None) == 0  # nothing changed, nothing written
    snap.replace("peerauthentications", snapshot("STRICT").list("peerauthentications"))
    assert istiod.push(456.0) == 1
    assert json.loads((folder / proxy_config.INTENT_FILE).read_text())["inbound"]["ports"] == {"9080": "STRICT"}
    assert inbound_protocols(folder, 9080) == ["tls"]


@pytest.mark.skipif(os.geteuid() != 0, reason="istiod chowns proxy files to uid 1337 (needs root)")
def test_cert_is_rotated_before_expiry(state):
    istiod = istiod_mod.Istiod(None, snapshot(), state, cert_ttl=datetime.timedelta(minutes=10))
    istiod.push(None)
    folder = state / "pods" / "bookinfo_details-v1-abc" / "istio-proxy"
    first = workload_cert(folder)
    assert istiod.push(None) == 0
    uid = "uid-bookinfo-details-v1-abc"
    istiod._cert_expiry[uid] = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=4)
    assert istiod.push(None) == 1
    second = workload_cert(folder)
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

