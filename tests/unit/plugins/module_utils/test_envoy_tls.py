"""envoy_tls against real Envoy config dumps from istio/istio and istioctl's own golden output."""

import copy
import json

import pytest

from ansible_collections.meshlab.mtls.plugins.module_utils import envoy_tls

AUTHZ_DUMP = "istio-1.6-authz-check/productpage_config_dump.json"
AUTHZ_GOLDEN = "istio-1.6-authz-check/productpage.golden"
DESCRIBE_DUMP = "istio-1.6-describe/productpage-v1-7bbd79f8fd-k6j79.json"
DESCRIBE_TEXT = "istio-1.6-describe/productpage-v1-7bbd79f8fd-k6j79.authz-check.txt"
MODERN_DUMP = "istio-1.19plus/configdump.json"


@pytest.fixture
def load(envoy_fixtures):
    def read(name):
        return json.loads((envoy_fixtures / name).read_text())
    return read


def virtual_inbound(dump):
    listeners = [c for c in dump["configs"] if c["@type"].endswith("ListenersConfigDump")][0]
    return [entry["active_state"]["listener"] for entry in listeners["dynamic_listeners"]
            if entry["active_state"]["listener"]["name"] == "virtualInbound"][0]


@pytest.mark.parametrize("dump, expected", [(AUTHZ_DUMP, AUTHZ_GOLDEN), (DESCRIBE_DUMP, DESCRIBE_TEXT)])
def test_authz_check_output_is_reproduced_byte_for_byte(load, envoy_fixtures, dump, expected):
    assert envoy_tls.authz_check_text(load(dump)) == (envoy_fixtures / expected).read_text()


def test_render_table_is_the_golden_without_its_checked_line(load, envoy_fixtures):
    golden = (envoy_fixtures / AUTHZ_GOLDEN).read_text()
    assert envoy_tls.render_table(envoy_tls.summarize(load(AUTHZ_DUMP))) == golden.split("\n", 1)[1]


def test_rows_of_the_strict_sidecar(load):
    rows = envoy_tls.summarize(load(AUTHZ_DUMP))
    assert len(rows) == 17
    assert rows[-2] == {"listener": "10.52.2.21_9080", "filter_chain": None, "certificate": "/etc/certs/cert-chain.pem",
                        "mtls": True, "mode": "STRICT", "authz": "yes (1: service-viewer)"}
    assert [row["mtls"] for row in rows].count(True) == 1


def test_rows_of_the_permissive_sidecar(load):
    rows = {(r["listener"], r["filter_chain"]): r for r in envoy_tls.summarize(load(DESCRIBE_DUMP))}
    assert rows[("172.30.150.216_9080", 0)]["mtls"] is True
    assert rows[("172.30.150.216_9080", 0)]["mode"] == "PERMISSIVE"
    assert rows[("172.30.150.216_9080", 1)]["mtls"] is False
    assert rows[("172.30.150.216_9080", 1)]["mode"] == "PERMISSIVE"
    assert rows[("172.30.150.216_15020", None)]["mode"] == "none"


def test_inbound_modes_of_istio_16_dumps(load):
    assert envoy_tls.inbound_modes(load(AUTHZ_DUMP)) == {9080: "STRICT", 15020: "DISABLE"}
    assert envoy_tls.inbound_modes(load(DESCRIBE_DUMP)) == {9080: "PERMISSIVE", 15020: "DISABLE", "*": "DISABLE"}


def test_modern_dump_permissive_pair_on_port_80(load):
    dump = load(MODERN_DUMP)
    assert envoy_tls.inbound_modes(dump) == {80: "PERMISSIVE", "*": "PERMISSIVE"}
    chains = [r for r in envoy_tls.summarize(dump) if r["listener"] == "virtualInbound"]
    assert chains[6] == {"listener": "virtualInbound", "filter_chain": 6, "certificate": "SDS: default",
                         "mtls": True, "mode": "PERMISSIVE", "authz": "yes (1: ns[default]-policy[httpbin]-rule[0])"}
    assert (chains[7]["certificate"], chains[7]["mtls"], chains[7]["mode"]) == ("none", False, "PERMISSIVE")
    assert chains[0]["mode"] == "none"  # the 15006 blackhole chain serves no port


def _drop_port_80_chain(dump, transport):
    listener = virtual_inbound(dump)
    before = len(listener["filter_chains"])
    listener["filter_chains"] = [
        chain for chain in listener["filter_chains"]
        if (chain.get("filter_chain_match") or {}).get("destination_port") != 80
        or chain["filter_chain_match"].get("transport_protocol") != transport]
    assert len(listener["filter_chains"]) == before - 1
    return dump


def test_modern_dump_strict_and_disable_by_dropping_a_chain(load):
    dump = load(MODERN_DUMP)
    strict = _drop_port_80_chain(copy.deepcopy(dump), "raw_buffer")
    disable = _drop_port_80_chain(copy.deepcopy(dump), "tls")
    assert envoy_tls.inbound_modes(strict)[80] == "STRICT"
    assert envoy_tls.inbound_modes(disable)[80] == "DISABLE"
    assert envoy_tls.inbound_modes(dump)[80] == "PERMISSIVE"  # the original is untouched
    strict_rows = [r for r in envoy_tls.summarize(strict) if r["listener"] == "virtualInbound"]
    assert strict_rows[-1]["mode"] == "STRICT" and strict_rows[-1]["mtls"] is True


def test_mutual_tls_needs_a_required_client_certificate(load):
    dump = load(MODERN_DUMP)
    for chain in virtual_inbound(dump)["filter_chains"]:
        socket = chain.get("transport_socket")
        if socket and (chain.get("filter_chain_match") or {}).get("destination_port") == 80:
            socket["typed_config"]["require_client_certificate"] = False  # server-only TLS
    assert envoy_tls.inbound_modes(dump)[80] == "DISABLE"


def test_warming_only_listeners_and_static_listeners_are_not_checked(load):
    dump = load(MODERN_DUMP)
    listeners = [c for c in dump["configs"] if c["@type"].endswith("ListenersConfigDump")][0]
    entry = [e for e in listeners["dynamic_listeners"] if e["name"] == "virtualInbound"][0]
    entry["warming_state"] = entry.pop("active_state")
    assert envoy_tls.inbound_modes(dump) == {}
    assert not [r for r in envoy_tls.summarize(dump) if r["listener"] in ("virtualInbound", "")]


def test_outbound_tls_of_a_dump_with_clusters(load):
    result = envoy_tls.outbound_tls(load(DESCRIBE_DUMP))
    assert len(result) == 74 and all(name.startswith("outbound|") for name in result)
    assert result["outbound|9080||details.default.svc.cluster.local"] is True
    assert result["outbound|53||kube-dns.kube-system.svc.cluster.local"] is False


def test_outbound_tls_through_transport_socket_matches():
    cluster = {"name": "outbound|9080||details.bookinfo.svc.cluster.local", "transport_socket_matches": [
        {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": {
            "name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": "outbound_.9080_._.details.bookinfo.svc.cluster.local"}}},
        {"name": "tlsMode-disabled", "match": {}, "transport_socket": {"name": "envoy.transport_sockets.raw_buffer"}},
    ]}
    plain = dict(cluster, name="outbound|9080||ratings.bookinfo.svc.cluster.local",
                 transport_socket_matches=cluster["transport_socket_matches"][1:])
    dump = {"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                         "dynamic_active_clusters": [{"cluster": cluster}, {"cluster": plain},
                                                     {"cluster": {"name": "inbound|9080||"}}]}]}
    assert envoy_tls.outbound_tls(dump) == {"outbound|9080||details.bookinfo.svc.cluster.local": True,
                                            "outbound|9080||ratings.bookinfo.svc.cluster.local": False}


@pytest.mark.parametrize("bad, message", [
    ([], r"a dict with a 'configs' list; got a list"),
    ({"listeners": []}, r"a dict with a 'configs' list; got a dict with keys \['listeners'\]"),
    ({"configs": ["x"]}, r"configs\[0\] is a str"),
    ({"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"}]},
     r"no ListenersConfigDump entry"),
])
def test_bad_input_is_refused_with_a_message(bad, message):
    with pytest.raises(envoy_tls.EnvoyDumpError, match=message):
        envoy_tls.inbound_modes(bad)
    with pytest.raises(ValueError, match=message):
        envoy_tls.summarize(bad)


def test_wrong_inner_shapes_are_reported_as_dump_errors(load):
    dump = load(MODERN_DUMP)
    virtual_inbound(dump)["filter_chains"] = "tls"
    with pytest.raises(envoy_tls.EnvoyDumpError, match="does not have the shape of Envoy's admin config_dump"):
        envoy_tls.inbound_modes(dump)
    with pytest.raises(envoy_tls.EnvoyDumpError, match="does not have the shape"):
        envoy_tls.render_table([{"listener": "x", "certificate": "none", "mtls": False, "mode": "none",
                                 "filter_chain": "first"}])


def test_outbound_tls_without_clusters_says_so(load):
    with pytest.raises(envoy_tls.EnvoyDumpError, match="no ClustersConfigDump entry"):
        envoy_tls.outbound_tls(load(MODERN_DUMP))


def test_render_table_refuses_rows_it_did_not_make():
    with pytest.raises(envoy_tls.EnvoyDumpError, match="lacks the key 'certificate'"):
        envoy_tls.render_table([{"listener": "x", "mtls": True, "mode": "STRICT"}])
    with pytest.raises(envoy_tls.EnvoyDumpError, match="expected a list of rows"):
        envoy_tls.render_table({"listener": "x"})
