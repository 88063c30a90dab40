"""Standalone data-plane tests: real Envoy 1.40 sidecars, real netns, iptables, TLS, curl/openssl/tcpdump.

Three pods on a private bridge: ``srv`` (bookinfo details + sidecar), ``cli`` (sidecar only, curl as the
app) and ``out`` (no sidecar). The test plays istiod: it writes the proxies' xDS files with the lab's own
translation (xds.py), and Envoy, not the lab, decides what each connection gets.
"""
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

LAB = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(LAB))

from meshlab_lab.mesh import testbed, xds  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "iptables", "curl")),
                                reason="needs root with ip, iptables and curl (network namespaces)")

FQDN = "details.bookinfo.svc.cluster.local"
CLUSTER = f"outbound|9080||{FQDN}"
VIP = "198.19.250.10"
RESET_503 = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
_versions = itertools.count(1)


def shared_dir() -> Path:
    return Path(os.environ.get("MESHLAB_SHARED") or Path(__file__).resolve().parents[2] / ".." / "shared")


def node(pod, workload, app, service_account):
    return {"namespace": "bookinfo", "pod": pod.name, "ip": pod.ip, "service_account": service_account,
            "workload": workload, "app": app, "version": "v1"}


def server_config(bed, mode, ports=None):
    return {"kind": "sidecar", "node": node(bed.pods["srv"], "details-v1", "details", "default"),
            "inbound": {"default": "PERMISSIVE", "ports": ports or {"9080": mode, "9090": "PERMISSIVE"},
                        "protocols": {"9080": "HTTP", "9090": "TCP"}},
            "clusters": [], "vips": {}, "access_log_file": "/dev/stdout"}


def client_config(bed, tls, pod="cli"):
    srv = bed.pods["srv"]
    return {"kind": "sidecar", "node": node(bed.pods[pod], "sleep", "sleep", "sleep"),
            "inbound": {"default": "PERMISSIVE", "ports": {}, "protocols": {}},
            "clusters": [{"name": CLUSTER, "host": FQDN, "port": 9080, "subset": "", "tls": tls, "protocol": "HTTP",
                          "endpoints": [{"address": srv.ip, "port": 9080, "mtls": True}]}],
            "vips": {f"{VIP}:9080": CLUSTER}}


STATS_ANNOTATIONS = {"sidecar.istio.io/statsInclusionPrefixes": "cluster.outbound,listener.0.0.0.0_15006"}


@pytest.fixture(scope="module")
def bed():
    net = testbed.Testbed()
    try:
        srv, cli = net.add_pod("srv"), net.add_pod("cli")
        net.add_pod("out")
        counted = net.add_pod("counted")  # a client sidecar whose pod asks for Envoy's TLS counters
        net.start_app(srv, "details")
        probers = {"/app-health/details/readyz": {"httpGet": {"path": "/health", "port": 9080}}}
        for pod, config, env in (
                (srv, server_config(net, "PERMISSIVE"), {"ISTIO_KUBE_APP_PROBERS": json.dumps(probers),
                                                         "ISTIO_METAJSON_ANNOTATIONS": json.dumps(STATS_ANNOTATIONS)}),
                (cli, client_config(net, "ISTIO_MUTUAL"), {}),
                (counted, client_config(net, "ISTIO_MUTUAL", "counted"),
                 {"ISTIO_METAJSON_ANNOTATIONS": json.dumps(STATS_ANNOTATIONS)})):
            config["version"] = f"t{next(_versions)}"
            net.start_sidecar(pod, config, env=env)
        yield net
    finally:
        net.close()


def push(bed, name, config):
    config["version"] = f"t{next(_versions)}"
    bed.pods[name].push(config)
    bed.pods[name].wait_loaded(config["version"])


def configure(bed, server_mode, client_tls):
    push(bed, "srv", server_config(bed, server_mode))
    push(bed, "cli", client_config(bed, client_tls))
    push(bed, "counted", client_config(bed, client_tls, "counted"))


def curl_from(bed, pod, target, *extra):
    done = bed.pods[pod].curl(f"http://{target}/details/0", *extra)
    body, _, code = done.stdout.rpartition("\n")
    return done.returncode, code, body


def wait_for_log(bed, pod, text, timeout=5.0) -> bool:
    """The proxy's container log (Envoy flushes its access log every 100 ms)."""
    deadline = time.monotonic() + timeout
    while text not in (bed.root / f"{pod}-proxy.log").read_text():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def agent(bed, pod, *args) -> str:
    done = bed.pods[pod].agent(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def stats(bed, pod) -> dict:
    counters = {}
    for line in agent(bed, pod, "GET", "stats").splitlines():
        name, _, value = line.rpartition(": ")
        if value.isdigit():
            counters[name] = int(value)
    return counters


def config_dump(bed, pod) -> dict:
    return json.loads(agent(bed, pod, "GET", "config_dump"))


def by_type(dump, suffix):
    return next(c for c in dump["configs"] if c["@type"].endswith(suffix))


def inbound_chains(dump, port):
    listeners = {e["name"]: e["active_state"]["listener"] for e in by_type(dump, "ListenersConfigDump")
                 ["dynamic_listeners"] if "active_state" in e}
    return [c for c in listeners["virtualInbound"]["filter_chains"]
            if c["filter_chain_match"].get("destination_port") == port]


def istio_requests(bed, pod) -> dict:
    """``{(source_workload, connection_security_policy, response_code): n}`` at reporter=destination."""
    found = {}
    for line in agent(bed, pod, "GET", "stats/prometheus").splitlines():
        if line.startswith("istio_requests_total{") and 'reporter="destination"' in line:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            key = (labels["source_workload"], labels["connection_security_policy"], labels["response_code"])
            found[key] = found.get(key, 0) + int(line.rsplit(" ", 1)[1])
    return found


def delta(after: dict, before: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def test_sidecars_are_envoy_1_40(bed):
    info = json.loads(agent(bed, "srv", "GET", "server_info"))
    assert info["version"].split("/")[1] == "1.40.0"
    assert info["state"] == "LIVE"
    assert info["command_line_options"]["disable_hot_restart"] is True
    assert info["command_line_options"]["concurrency"] == 1


def test_strict_refuses_plaintext_and_accepts_sidecar_mtls(bed):
    configure(bed, "STRICT", "ISTIO_MUTUAL")
    srv_ip = bed.pods["srv"].ip
    rc, _code, _ = curl_from(bed, "out", f"{srv_ip}:9080")
    assert rc == 56
    rc, code, body = curl_from(bed, "cli", f"{VIP}:9080")
    assert (rc, code) == (0, "200")
    assert json.loads(body)["author"] == "William Shakespeare"


def test_permissive_accepts_both(bed):
    configure(bed, "PERMISSIVE", "ISTIO_MUTUAL")
    assert curl_from(bed, "out", f"{bed.pods['srv'].ip}:9080")[:2] == (0, "200")
    assert curl_from(bed, "cli", f"{VIP}:9080")[:2] == (0, "200")


def test_disable_accepts_plain_and_refuses_mtls_with_envoy_503_uf(bed):
    configure(bed, "DISABLE", "ISTIO_MUTUAL")
    assert curl_from(bed, "out", f"{bed.pods['srv'].ip}:9080")[:2] == (0, "200")
    rc, code, body = curl_from(bed, "cli", f"{VIP}:9080", "-D", "-")
    assert (rc, code) == (0, "503")
    assert "reset reason: remote connection failure" in body
    # the server decoded the ClientHello as HTTP: a protocol error (Istio's access log: 400 DPE)
    assert wait_for_log(bed, "srv", '" 400 DPE http1.codec_error')


def test_destination_rule_disable_towards_strict_gives_503_uc(bed):
    configure(bed, "STRICT", "DISABLE")
    assert curl_from(bed, "cli", f"{VIP}:9080") == (0, "503", RESET_503)
    assert wait_for_log(bed, "srv", " 0 NR filter_chain_not_found ")


def test_destination_rule_disable_towards_disable_is_plain_and_works(bed):
    configure(bed, "DISABLE", "DISABLE")
    assert curl_from(bed, "cli", f"{VIP}:9080")[:2] == (0, "200")


def test_auto_mtls_follows_endpoint_sidecar_label(bed):
    configure(bed, "STRICT", "AUTO")
    assert curl_from(bed, "cli", f"{VIP}:9080")[:2] == (0, "200")
    config = client_config(bed, "AUTO")
    config["clusters"][0]["endpoints"][0]["mtls"] = False  # as if the server pod had no sidecar label
    config["version"] = f"t{next(_versions)}"
    bed.pods["cli"].push(config)
    bed.pods["cli"].wait_loaded(config["version"])
    assert curl_from(bed, "cli", f"{VIP}:9080") == (0, "503", RESET_503)


def test_default_stats_inclusion_drops_tls_counters(bed):
    """Istio's default stats_matcher: no cluster.outbound|... or listener.0.0.0.0_15006 counters."""
    configure(bed, "STRICT", "ISTIO_MUTUAL")
    assert curl_from(bed, "cli", f"{VIP}:9080")[:2] == (0, "200")
    names = stats(bed, "cli")
    assert not [n for n in names if n.startswith(("cluster.outbound|", "listener.0.0.0.0_15006."))]
    assert "listener_manager.lds.update_success" in names and "server.live" in names
    assert any(n.startswith("cluster_manager.") for n in names)


def test_stats_inclusion_annotation_brings_real_counters(bed):
    configure(bed, "STRICT", "ISTIO_MUTUAL")
    before_cli, before_srv = stats(bed, "counted"), stats(bed, "srv")
    for _ in range(3):
        assert curl_from(bed, "counted", f"{VIP}:9080")[:2] == (0, "200")
    curl_from(bed, "out", f"{bed.pods['srv'].ip}:9080")
    cli, srv = delta(stats(bed, "counted"), before_cli), delta(stats(bed, "srv"), before_srv)
    assert cli.get(f"cluster.{CLUSTER}.upstream_rq_200") == 3
    # Envoy pools: three requests went over fewer connections than requests (usually one)
    assert 1 <= cli.get(f"cluster.{CLUSTER}.upstream_cx_total", 0) <= cli.get(f"cluster.{CLUSTER}.ssl.handshake", 0)
    assert cli.get(f"cluster.{CLUSTER}.upstream_cx_total", 0) < 3
    assert srv.get("listener.0.0.0.0_15006.no_filter_chain_match") == 1  # the plaintext outsider


def test_istio_requests_total_says_mutual_tls_or_none(bed):
    configure(bed, "PERMISSIVE", "ISTIO_MUTUAL")
    before = istio_requests(bed, "srv")
    for _ in range(2):
        assert curl_from(bed, "cli", f"{VIP}:9080")[:2] == (0, "200")
    assert curl_from(bed, "out", f"{bed.pods['srv'].ip}:9080")[:2] == (0, "200")
    configure(bed, "PERMISSIVE", "DISABLE")
    assert curl_from(bed, "cli", f"{VIP}:9080")[:2] == (0, "200")
    assert delta(istio_requests(bed, "srv"), before) == {
        ("sleep", "mutual_tls", "200"): 2, ("unknown", "none", "200"): 1, ("sleep", "none", "200"): 1}
    text = agent(bed, "srv", "GET", "stats/prometheus")
    assert "# TYPE istio_requests_total counter" in text
    assert 'source_principal="spiffe://cluster.local/ns/bookinfo/sa/sleep"' in text
    assert 'destination_principal="spiffe://cluster.local/ns/bookinfo/sa/default"' in text


def test_agent_port_merges_envoy_and_istio_metrics(bed):
    configure(bed, "PERMISSIVE", "ISTIO_MUTUAL")
    assert curl_from(bed, "cli", f"{VIP}:9080")[:2] == (0, "200")
    done = bed.pods["out"].curl(f"http://{bed.pods['srv'].ip}:15020/stats/prometheus")
    assert done.stdout.endswith("\n200")
    assert "envoy_server_live" in done.stdout and "istio_requests_total{" in done.stdout


def test_presented_cert_carries_spiffe_san(bed):
    configure(bed, "STRICT", "ISTIO_MUTUAL")
    client = bed.ca.issue_workload("bookinfo", "outsider")
    folder = bed.root / "outsider"
    folder.mkdir(exist_ok=True)
    (folder / "c.pem").write_bytes(client.cert_pem)
    (folder / "k.pem").write_bytes(client.key_pem)
    (folder / "ca.pem").write_bytes(bed.ca.cert_pem)
    done = bed.pods["out"].run(["openssl", "s_client", "-connect", f"{bed.pods['srv'].ip}:9080", "-showcerts",
                                "-cert", str(folder / "c.pem"), "-key", str(folder / "k.pem"),
                                "-CAfile", str(folder / "ca.pem"), "-alpn", "istio-peer-exchange,istio"],
                               input="", timeout=30)
    pem = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", done.stdout, re.S)
    assert pem, done.stdout + done.stderr
    cert = x509.load_pem_x509_certificate(pem.group(0).encode())
    uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier)
    assert uris == ["spiffe://cluster.local/ns/bookinfo/sa/default"]
    assert "Verify return code: 0 (ok)" in done.stdout


def _capture(bed, action) -> str:
    """tcpdump on the switch port of the server pod (the wire between the two pods), until it has settled."""
    pcap = bed.root / f"cap{time.monotonic_ns()}.pcap"
    argv = ["ip", "netns", "exec", bed.switch, "tcpdump", "-Z", "root", "-i", bed.pods["srv"].switch_port, "-U",
            "--immediate-mode", "-n", "-w", str(pcap), "tcp port 9080"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    read, seen = None, -1
    try:
        assert "listening on" in proc.stderr.readline()
        action()  # curl has its whole answer when this returns: wait until tcpdump has written it all
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.2)
            read = subprocess.run(["tcpdump", "-r", str(pcap), "-n", "-A"], capture_output=True, text=True)
            if read.stdout.count("\n") == seen:
                break
            seen = read.stdout.count("\n")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert read is not None and read.returncode == 0, read and read.stderr
    return read.stdout


def fresh_client(bed, tls):
    """A client config whose cluster differs from the last one (a new DestinationRule name), so that Envoy
    replaces the cluster and its connection pool: the next request opens a new connection."""
    config = client_config(bed, tls)
    config["clusters"][0]["destination_rule"] = f"bookinfo/capture-{next(_versions)}"
    push(bed, "cli", config)


@pytest.mark.skipif(not shutil.which("tcpdump"), reason="tcpdump not installed")
def test_wire_shows_tls_for_mtls_and_plain_http_otherwise(bed):
    configure(bed, "STRICT", "ISTIO_MUTUAL")
    fresh_client(bed, "ISTIO_MUTUAL")
    wire = _capture(bed, lambda: curl_from(bed, "cli", f"{VIP}:9080"))
    assert f"outbound_.9080_._.{FQDN}" in wire  # SNI in the ClientHello
    assert "istio-http/1.1" in wire  # ALPN
    assert "GET /details/0 HTTP/1.1" not in wire and "William Shakespeare" not in wire
    configure(bed, "DISABLE", "DISABLE")
    fresh_client(bed, "DISABLE")
    wire = _capture(bed, lambda: curl_from(bed, "cli", f"{VIP}:9080"))
    assert "GET /details/0 HTTP/1.1" in wire
    assert "William Shakespeare" in wire


def test_config_dump_shape_follows_modes(bed):
    configure(bed, "STRICT", "ISTIO_MUTUAL")
    cluster = next(c["cluster"] for c in by_type(config_dump(bed, "cli"), "ClustersConfigDump")
                   ["dynamic_active_clusters"] if c["cluster"]["name"] == CLUSTER)
    tls = cluster["transport_socket"]
    assert tls["name"] == "envoy.transport_sockets.tls"
    assert tls["typed_config"]["@type"].endswith("UpstreamTlsContext")
    assert tls["typed_config"]["sni"] == f"outbound_.9080_._.{FQDN}"
    dump = config_dump(bed, "srv")
    listeners = {entry["name"]: entry["active_state"]["listener"]
                 for entry in by_type(dump, "ListenersConfigDump")["dynamic_listeners"]}
    assert listeners["virtualOutbound"]["address"]["socket_address"]["port_value"] == 15001
    chains = [c for c in listeners["virtualInbound"]["filter_chains"]
              if c["filter_chain_match"].get("destination_port") == 9080]
    assert [c["filter_chain_match"]["transport_protocol"] for c in chains] == ["tls"]
    downstream = chains[0]["transport_socket"]["typed_config"]
    assert downstream["require_client_certificate"] is True
    assert downstream["common_tls_context"]["tls_certificate_sds_secret_configs"][0]["name"] == "default"
    secrets = {s["name"]: s for s in by_type(dump, "SecretsConfigDump")["dynamic_active_secrets"]}
    certificate = secrets["default"]["secret"]["tls_certificate"]
    assert "BEGIN CERTIFICATE" in certificate["certificate_chain"]["inline_string"]
    assert "PRIVATE KEY" not in json.dumps(certificate)  # Envoy redacts the key in its dump
    assert set(secrets) == {"default", "ROOTCA"}
    configure(bed, "PERMISSIVE", "DISABLE")
    listeners = {entry["name"]: entry["active_state"]["listener"] for entry in
                 by_type(config_dump(bed, "srv"), "ListenersConfigDump")["dynamic_listeners"]}
    protocols = sorted(c["filter_chain_match"]["transport_protocol"] for c in listeners["virtualInbound"]
                       ["filter_chains"] if c["filter_chain_match"].get("destination_port") == 9080)
    assert protocols == ["raw_buffer", "tls"]
    cluster = next(c["cluster"] for c in by_type(config_dump(bed, "cli"), "ClustersConfigDump")
                   ["dynamic_active_clusters"] if c["cluster"]["name"] == CLUSTER)
    assert "transport_socket" not in cluster and "transport_socket_matches" not in cluster


def test_config_dump_matches_real_istio_downstream_tls_shape(bed):
    real = shared_dir() / "fixtures" / "envoy" / "istio-1.19plus" / "configdump.json"
    if not real.is_file():
        pytest.skip(f"shared fixtures not found at {real} (set MESHLAB_SHARED)")
    configure(bed, "STRICT", "ISTIO_MUTUAL")

    def tls_chain(dump):
        listeners = by_type(dump, "ListenersConfigDump")["dynamic_listeners"]
        inbound = next(entry for entry in listeners if entry["name"] == "virtualInbound")
        return next(c for c in inbound["active_state"]["listener"]["filter_chains"]
                    if c["filter_chain_match"].get("destination_port") and "transport_socket" in c)

    ours, theirs = tls_chain(config_dump(bed, "srv")), tls_chain(json.loads(real.read_text()))
    for key in ("name", "typed_config.@type", "typed_config.require_client_certificate"):
        get = lambda d, k=key: [d := d[p] for p in k.split(".")][-1]  # noqa: E731
        assert get(ours["transport_socket"]) == get(theirs["transport_socket"]), key
    assert set(ours["filter_chain_match"]) <= set(theirs["filter_chain_match"])


def test_bad_listener_is_rejected_by_envoy_and_old_one_kept(bed):
    configure(bed, "STRICT", "ISTIO_MUTUAL")
    srv = bed.pods["srv"]
    kept = srv.served_version()
    rejected = stats(bed, "srv")["listener_manager.lds.update_rejected"]
    listeners = xds.resources(server_config(bed, "PERMISSIVE"), str(srv.folder))[xds.LDS_FILE]
    listeners[1]["filter_chains"].append(dict(listeners[1]["filter_chains"][-1]))  # a duplicate chain match
    body = json.dumps(xds.discovery_response("broken", listeners)).encode()
    testbed.proxy_config.write_atomic(srv.folder / xds.LDS_FILE, body)
    deadline = time.monotonic() + 10
    while stats(bed, "srv")["listener_manager.lds.update_rejected"] == rejected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stats(bed, "srv")["listener_manager.lds.update_rejected"] == rejected + 1
    assert srv.served_version() == kept
    assert curl_from(bed, "out", f"{srv.ip}:9080")[0] == 56  # still STRICT


def test_istio_chains_are_installed(bed):
    rules = bed.pods["cli"].run(["iptables", "-t", "nat", "-S"]).stdout
    for chain in ("ISTIO_INBOUND", "ISTIO_IN_REDIRECT", "ISTIO_OUTPUT", "ISTIO_REDIRECT"):
        assert f"-N {chain}" in rules
    assert "--to-ports 15001" in rules and "--to-ports 15006" in rules
    assert "--uid-owner 1337 -j RETURN" in rules
    assert "--dport 15021 -j RETURN" in rules


def test_gateway_routes_by_host_and_uri_with_mtls_upstream(bed):
    configure(bed, "STRICT", "ISTIO_MUTUAL")
    if "gw" not in bed.pods:
        gw = bed.add_pod("gw")
        gw.namespace = "istio-system"
        config = {"version": f"t{next(_versions)}", "kind": "router",
                  "node": dict(node(gw, "istio-ingressgateway", "istio-ingressgateway",
                                    "istio-ingressgateway-service-account"), namespace="istio-system"),
                  "clusters": client_config(bed, "ISTIO_MUTUAL")["clusters"], "vips": {},
                  "gateway": {"servers": [{"port": 8080, "hosts": ["*"]}],
                              "routes": [{"port": 8080, "hosts": ["bookinfo.example"],
                                          "match": [{"exact": "/details/0"}], "cluster": CLUSTER}]}}
        bed.start_sidecar(gw, config)
        gw.wait_port(8080)
    gw_ip = bed.pods["gw"].ip
    out = bed.pods["out"]
    done = out.curl(f"http://{gw_ip}:8080/details/0", "-H", "Host: bookinfo.example")
    assert done.stdout.endswith("\n200") and "William Shakespeare" in done.stdout
    assert out.curl(f"http://{gw_ip}:8080/details/1", "-H", "Host: bookinfo.example").stdout.endswith("\n404")
    assert out.curl(f"http://{gw_ip}:8080/details/0", "-H", "Host: other.example").stdout.endswith("\n404")
    source = [line for line in agent(bed, "gw", "GET", "stats/prometheus").splitlines()
              if line.startswith("istio_requests_total{") and 'response_code="200"' in line]
    assert source and 'reporter="source"' in source[0]
    assert 'destination_principal="spiffe://cluster.local/ns/bookinfo/sa/default"' in source[0]  # mTLS upstream


def test_rewritten_app_probe_passes_under_strict(bed):
    configure(bed, "STRICT", "ISTIO_MUTUAL")
    srv_ip = bed.pods["srv"].ip
    out = bed.pods["out"]
    assert out.curl(f"http://{srv_ip}:9080/health").returncode == 56  # the plain probe path is refused
    assert out.curl(f"http://{srv_ip}:15020/app-health/details/readyz").stdout.endswith("\n200")
    assert out.curl(f"http://{srv_ip}:15020/app-health/nope/readyz").stdout.endswith("\n404")
    assert out.curl(f"http://{srv_ip}:15021/healthz/ready").stdout.endswith("\n200")


ECHO_SERVER = """
import socket
srv = socket.create_server(("0.0.0.0", 9090))
while True:
    conn, _ = srv.accept()
    conn.sendall(b"echo:" + conn.recv(100))
    conn.close()
"""
ECHO_CLIENT = """
import socket, sys
conn = socket.create_connection((sys.argv[1], 9090), timeout=10)
conn.sendall(b"ping")
print(conn.recv(100).decode())
"""


def test_client_first_tcp_protocol_passes_through(bed):
    """A non-HTTP protocol where the client speaks first must not wait for the server's first bytes."""
    configure(bed, "PERMISSIVE", "ISTIO_MUTUAL")
    srv = bed.pods["srv"]
    if not getattr(srv, "echo_started", False):
        srv.start([sys.executable, "-c", ECHO_SERVER], uid=testbed.APP_UID, log_name="echo")
        srv.wait_port(9090)
        srv.echo_started = True
    done = bed.pods["cli"].run([sys.executable, "-c", ECHO_CLIENT, srv.ip], timeout=30)
    assert done.stdout.strip() == "echo:ping", done.stderr


def established(bed, pod) -> list[str]:
    return bed.pods[pod].run(["ss", "-Htn", "state", "established", "( dport = :9080 )"]).stdout.split("\n")[:-1]


def test_envoy_pools_upstream_connections(bed):
    configure(bed, "STRICT", "ISTIO_MUTUAL")
    fresh_client(bed, "ISTIO_MUTUAL")
    for _ in range(5):
        assert curl_from(bed, "cli", f"{VIP}:9080")[:2] == (0, "200")
    assert len(established(bed, "cli")) == 1  # one worker, one pooled connection kept open for the next request


def test_mode_switch_leaves_pooled_connections_on_the_draining_chain(bed):
    """After PERMISSIVE -> STRICT a pooled plaintext connection is still served by the old chain until Envoy
    drains it; only new connections meet STRICT. This is real Envoy, and what a verifier must wait out."""
    configure(bed, "PERMISSIVE", "DISABLE")
    fresh_client(bed, "DISABLE")
    assert curl_from(bed, "cli", f"{VIP}:9080")[:2] == (0, "200")
    push(bed, "srv", server_config(bed, "STRICT"))
    assert stats(bed, "srv")["listener_manager.total_filter_chains_draining"] >= 1
    codes = [curl_from(bed, "cli", f"{VIP}:9080")[1] for _ in range(3)]
    assert codes[0] == "200"  # the old connection, on the draining PERMISSIVE chain
    assert codes[-1] == "503"  # the drained connection was closed: a new one meets STRICT
