"""Standalone data-plane tests: real netns, real iptables, real TLS, real curl/openssl/tcpdump, no Kubernetes.

Three pods on a private bridge: ``srv`` (bookinfo details + sidecar), ``cli`` (sidecar only, curl as the
app) and ``out`` (no sidecar). The test plays istiod by writing the proxies' config files.
"""
import base64
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

from meshlab_lab.mesh import testbed  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "iptables", "curl")),
                                reason="needs root with ip, iptables and curl (network namespaces)")

FQDN = "details.bookinfo.svc.cluster.local"
CLUSTER = f"outbound|9080||{FQDN}"
VIP = "198.19.250.10"
ENVOY_503 = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
PILOT_AGENT = str(LAB / "meshlab_lab" / "mesh" / "bin" / "pilot-agent")
_versions = itertools.count(1)


def shared_dir() -> Path:
    return Path(os.environ.get("MESHLAB_SHARED") or Path(__file__).resolve().parents[2] / ".." / "shared")


def server_config(bed, mode):
    srv = bed.pods["srv"]
    return {"kind": "sidecar", "node": {"namespace": "bookinfo", "pod": "srv", "ip": srv.ip,
                                        "service_account": "default"},
            "inbound": {"default": "PERMISSIVE", "ports": {"9080": mode}}, "clusters": [], "vips": {}}


def client_config(bed, tls):
    srv, cli = bed.pods["srv"], bed.pods["cli"]
    return {"kind": "sidecar", "node": {"namespace": "bookinfo", "pod": "cli", "ip": cli.ip,
                                        "service_account": "sleep"},
            "inbound": {"default": "PERMISSIVE", "ports": {}},
            "clusters": [{"name": CLUSTER, "host": FQDN, "port": 9080, "subset": "", "tls": tls,
                          "endpoints": [{"address": srv.ip, "port": 9080, "mtls": True}]}],
            "vips": {f"{VIP}:9080": CLUSTER}}


@pytest.fixture(scope="module")
def bed():
    net = testbed.Testbed()
    try:
        srv, cli = net.add_pod("srv"), net.add_pod("cli")
        net.add_pod("out")
        net.start_app(srv, "details")
        probers = {"/app-health/details/readyz": {"httpGet": {"path": "/health", "port": 9080}}}
        for pod, config in ((srv, server_config(net, "PERMISSIVE")), (cli, client_config(net, "ISTIO_MUTUAL"))):
            config["version"] = f"t{next(_versions)}"
            net.start_sidecar(pod, config, env={"ISTIO_KUBE_APP_PROBERS": json.dumps(probers)})
        yield net
    finally:
        net.close()


def configure(bed, server_mode, client_tls):
    for name, config in (("srv", server_config(bed, server_mode)), ("cli", client_config(bed, client_tls))):
        config["version"] = f"t{next(_versions)}"
        bed.pods[name].push(config)
        bed.pods[name].wait_loaded(config["version"])


def curl_from(bed, pod, target):
    done = bed.pods[pod].curl(f"http://{target}/details/0")
    body, _, code = done.stdout.rpartition("\n")
    return done.returncode, code, body


def stats(bed, pod) -> dict:
    text = bed.pods[pod].run([PILOT_AGENT, "request", "GET", "stats"]).stdout
    return {k: int(v) for k, v in (line.rsplit(": ", 1) for line in text.splitlines() if ": " in line)}


def config_dump(bed, pod) -> dict:
    done = bed.pods[pod].run([PILOT_AGENT, "request", "GET", "config_dump"])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def by_type(dump, suffix):
    return next(c for c in dump["configs"] if c["@type"].endswith(suffix))


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


def test_disable_accepts_plain_and_refuses_mtls_with_envoy_503(bed):
    configure(bed, "DISABLE", "ISTIO_MUTUAL")
    assert curl_from(bed, "out", f"{bed.pods['srv'].ip}:9080")[:2] == (0, "200")
    rc, code, body = curl_from(bed, "cli", f"{VIP}:9080")
    assert (rc, code, body) == (0, "503", ENVOY_503)


def test_destination_rule_disable_towards_strict_gives_503(bed):
    configure(bed, "STRICT", "DISABLE")
    assert curl_from(bed, "cli", f"{VIP}:9080") == (0, "503", ENVOY_503)


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
    assert curl_from(bed, "cli", f"{VIP}:9080") == (0, "503", ENVOY_503)


def test_counters_really_count(bed):
    configure(bed, "STRICT", "ISTIO_MUTUAL")
    before_cli, before_srv = stats(bed, "cli"), stats(bed, "srv")
    for _ in range(3):
        assert curl_from(bed, "cli", f"{VIP}:9080")[:2] == (0, "200")
    curl_from(bed, "out", f"{bed.pods['srv'].ip}:9080")
    after_cli, after_srv = stats(bed, "cli"), stats(bed, "srv")
    delta = lambda after, before, key: after.get(key, 0) - before.get(key, 0)  # noqa: E731
    assert delta(after_cli, before_cli, f"cluster.{CLUSTER}.ssl.handshake") == 3
    assert delta(after_cli, before_cli, f"cluster.{CLUSTER}.upstream_cx_total") == 3
    assert delta(after_srv, before_srv, "listener.0.0.0.0_15006.ssl.handshake") == 3
    assert delta(after_srv, before_srv, "listener.0.0.0.0_15006.downstream_cx_total") == 4


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
    """tcpdump on the switch port of the server pod (the wire between the two pods)."""
    pcap = bed.root / f"cap{time.monotonic_ns()}.pcap"
    sw = ["ip", "netns", "exec", bed.switch]
    argv = ["tcpdump", "-Z", "root", "-i", bed.pods["srv"].switch_port, "-U", "--immediate-mode", "-n",
            "-w", str(pcap), "tcp port 9080"]
    proc = subprocess.Popen(sw + argv,
                            stderr=subprocess.PIPE, text=True)
    read = None
    try:
        assert "listening on" in proc.stderr.readline()
        action()
        # tcpdump may lag behind on a busy machine: wait until both ends closing (FIN or RST) are on file
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            read = subprocess.run(["tcpdump", "-r", str(pcap), "-n", "-A"], capture_output=True, text=True)
            if read.stdout.count("Flags [F") + read.stdout.count("Flags [R") >= 2:
                break
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert read is not None and read.returncode == 0, read and read.stderr
    return read.stdout


@pytest.mark.skipif(not shutil.which("tcpdump"), reason="tcpdump not installed")
def test_wire_shows_tls_for_mtls_and_plain_http_otherwise(bed):
    configure(bed, "STRICT", "ISTIO_MUTUAL")
    wire = _capture(bed, lambda: curl_from(bed, "cli", f"{VIP}:9080"))
    assert f"outbound_.9080_._.{FQDN}" in wire  # SNI in the ClientHello
    assert "istio-peer-exchange" in wire  # ALPN
    assert "GET /details/0 HTTP/1.1" not in wire
    configure(bed, "DISABLE", "DISABLE")
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
    pem = base64.b64decode(secrets["default"]["secret"]["tls_certificate"]["certificate_chain"]["inline_bytes"])
    assert b"BEGIN CERTIFICATE" in pem and set(secrets) == {"default", "ROOTCA"}
    configure(bed, "PERMISSIVE", "DISABLE")
    listeners = {entry["name"]: entry["active_state"]["listener"] for entry in
                 by_type(config_dump(bed, "srv"), "ListenersConfigDump")["dynamic_listeners"]}
    protocols = sorted(c["filter_chain_match"]["transport_protocol"] for c in listeners["virtualInbound"]
                       ["filter_chains"] if c["filter_chain_match"].get("destination_port") == 9080)
    assert protocols == ["raw_buffer", "tls"]
    cluster = by_type(config_dump(bed, "cli"), "ClustersConfigDump")["dynamic_active_clusters"][0]["cluster"]
    assert "transport_socket" not in cluster


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


def test_bad_config_is_rejected_and_old_one_kept(bed):
    configure(bed, "STRICT", "ISTIO_MUTUAL")
    srv = bed.pods["srv"]
    kept = srv.loaded_version()
    broken = server_config(bed, "STRICTISH")
    broken["version"] = "broken"
    srv.push(broken)
    marker = "rejected config: inbound mode for 9080"
    log = bed.root / "srv-proxy.log"
    deadline = time.monotonic() + 10
    while marker not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker in log.read_text()
    assert srv.loaded_version() == kept
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
        config = {"version": f"t{next(_versions)}", "kind": "router",
                  "node": {"namespace": "istio-system", "pod": "gw", "ip": gw.ip,
                           "service_account": "istio-ingressgateway-service-account"},
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
    assert stats(bed, "gw").get(f"cluster.{CLUSTER}.ssl.handshake", 0) >= 1


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
srv = socket.create_server(("127.0.0.1", 9090))
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


@pytest.mark.parametrize("server_mode, client_tls", [("STRICT", "ISTIO_MUTUAL"), ("DISABLE", "DISABLE")])
def test_connections_between_sidecars_are_closed_after_the_exchange(bed, server_mode, client_tls):
    configure(bed, server_mode, client_tls)
    for _ in range(3):
        assert curl_from(bed, "cli", f"{VIP}:9080")[:2] == (0, "200")
    query = ["ss", "-Htn", "state", "established", "( dport = :9080 )"]
    deadline = time.monotonic() + 10
    while (left := bed.pods["cli"].run(query).stdout.strip()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == "", f"connections left open:\n{left}"
