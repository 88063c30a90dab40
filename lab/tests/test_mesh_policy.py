"""The lab istiod's rule engine, without a cluster: PeerAuthentication precedence, DestinationRule choice
and TLS, per-proxy config, the injection patch, gateway routing and the istio-iptables rule set."""
import base64
import copy
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshlab_lab.mesh import injector, iptables, policy, proxy_config, pushgen, xds  # noqa: E402
from meshlab_lab.mesh.snapshot import Snapshot  # noqa: E402

ROOT = "istio-system"


def obj(kind_ns, name, spec=None, labels=None, created="2024-01-01T00:00:00Z", **extra):
    meta = {"namespace": kind_ns, "name": name, "creationTimestamp": created, "uid": f"{kind_ns}-{name}"}
    if labels:
        meta["labels"] = labels
    return dict({"metadata": meta, "spec": spec or {}}, **extra)


def pa(ns, name, mode=None, selector=None, ports=None, created="2024-01-01T00:00:00Z"):
    spec = {}
    if mode:
        spec["mtls"] = {"mode": mode}
    if selector:
        spec["selector"] = {"matchLabels": selector}
    if ports:
        spec["portLevelMtls"] = {str(p): {"mode": m} for p, m in ports.items()}
    return obj(ns, name, spec, created=created)


@pytest.mark.parametrize("pas, port, expected", [
    ([], 9080, "PERMISSIVE"),
    ([pa(ROOT, "default", "STRICT")], 9080, "STRICT"),
    ([pa(ROOT, "default", "STRICT"), pa("bookinfo", "ns", "DISABLE")], 9080, "DISABLE"),
    ([pa(ROOT, "default", "STRICT"), pa("bookinfo", "ns", "UNSET")], 9080, "STRICT"),
    ([pa("bookinfo", "ns", "STRICT"), pa("bookinfo", "wl", "PERMISSIVE", {"app": "details"})], 9080, "PERMISSIVE"),
    ([pa("bookinfo", "ns", "STRICT"), pa("bookinfo", "wl", "PERMISSIVE", {"app": "reviews"})], 9080, "STRICT"),
    ([pa("bookinfo", "ns", "STRICT"), pa("bookinfo", "wl", None, {"app": "details"}, {9080: "DISABLE"})],
     9080, "DISABLE"),
    ([pa("bookinfo", "ns", "STRICT"), pa("bookinfo", "wl", None, {"app": "details"}, {9080: "DISABLE"})],
     9090, "STRICT"),
    ([pa("other", "ns", "DISABLE")], 9080, "PERMISSIVE"),
    ([pa("bookinfo", "old", "STRICT", created="2024-01-01T00:00:00Z"),
      pa("bookinfo", "new", "DISABLE", created="2024-02-01T00:00:00Z")], 9080, "STRICT"),
])
def test_peer_authentication_precedence(pas, port, expected):
    assert policy.peer_auth_mode(pas, ROOT, "bookinfo", {"app": "details"}, port) == expected


def dr(ns, name, host, mode=None, subsets=None, port_modes=None, export=None):
    spec = {"host": host}
    policy_ = {}
    if mode:
        policy_["tls"] = {"mode": mode}
    if port_modes:
        policy_["portLevelSettings"] = [{"port": {"number": p}, "tls": {"mode": m}} for p, m in port_modes.items()]
    if policy_:
        spec["trafficPolicy"] = policy_
    if subsets:
        spec["subsets"] = subsets
    if export:
        spec["exportTo"] = export
    return obj(ns, name, spec)


HOST = "details.bookinfo.svc.cluster.local"


def test_destination_rule_most_specific_host_wins():
    rules = [dr("bookinfo", "all", "*", "DISABLE"), dr("bookinfo", "wild", "*.bookinfo.svc.cluster.local",
                                                        "DISABLE"), dr("bookinfo", "exact", "details", "ISTIO_MUTUAL")]
    assert policy.pick_destination_rule(rules, "bookinfo", HOST, ROOT)["metadata"]["name"] == "exact"
    rules = rules[:2] + [dr("bookinfo", "local", "*.local", "ISTIO_MUTUAL")]
    assert policy.pick_destination_rule(rules, "bookinfo", HOST, ROOT)["metadata"]["name"] == "wild"


def test_destination_rule_namespace_order_client_then_service_then_root():
    rules = [dr(ROOT, "mesh", "*.local", "ISTIO_MUTUAL"), dr("bookinfo", "svc", "details", "DISABLE")]
    assert policy.pick_destination_rule(rules, "client", HOST, ROOT)["metadata"]["name"] == "svc"
    rules.append(dr("client", "mine", "details.bookinfo.svc.cluster.local", "ISTIO_MUTUAL"))
    assert policy.pick_destination_rule(rules, "client", HOST, ROOT)["metadata"]["name"] == "mine"
    private = dr("bookinfo", "private", "details", "DISABLE", export=["."])
    assert policy.pick_destination_rule([rules[0], private], "client", HOST, ROOT)["metadata"]["name"] == "mesh"


def test_cluster_tls_port_and_subset_levels_and_auto():
    rule = dr("bookinfo", "d", "details", "ISTIO_MUTUAL", port_modes={9090: "DISABLE"},
              subsets=[{"name": "v1", "labels": {"version": "v1"}},
                       {"name": "v2", "labels": {"version": "v2"}, "trafficPolicy": {"tls": {"mode": "DISABLE"}}}])
    assert policy.cluster_tls(rule, 9080, "", True) == "ISTIO_MUTUAL"
    assert policy.cluster_tls(rule, 9090, "", True) == "DISABLE"
    assert policy.cluster_tls(rule, 9080, "v1", True) == "ISTIO_MUTUAL"
    assert policy.cluster_tls(rule, 9080, "v2", True) == "DISABLE"
    assert policy.cluster_tls(dr("bookinfo", "x", "details"), 9080, "", True) == "AUTO"
    assert policy.cluster_tls(None, 9080, "", False) == "DISABLE"


def mesh_snapshot(automtls=True, extra=()):
    snap = Snapshot()
    snap.replace("smcps", [obj(ROOT, "basic-install", {"security": {"dataPlane": {"mtls": False,
                                                                                  "automtls": automtls}}})])
    snap.replace("namespaces", [obj("", "bookinfo", labels={"maistra.io/member-of": ROOT}),
                                obj("", "outside")])
    snap.replace("services", [obj("bookinfo", "details", {"clusterIP": "198.19.0.50", "selector": {"app": "details"},
                                                          "ports": [{"name": "http", "port": 9080,
                                                                     "targetPort": 9080}]}),
                              obj("outside", "other", {"clusterIP": "198.19.0.51", "ports": [{"port": 80}]})])
    snap.replace("endpoints", [dict(obj("bookinfo", "details"), subsets=[{
        "addresses": [{"ip": "198.18.1.5"}, {"ip": "198.18.1.6"}], "ports": [{"name": "http", "port": 9080}]}])])
    details = lambda ip, name, labels: dict(obj("bookinfo", name, {  # noqa: E731
        "serviceAccountName": "bookinfo-details",
        "containers": [{"name": "details", "ports": [{"containerPort": 9080}]}, {"name": "istio-proxy"}]},
        labels=labels), status={"podIP": ip, "phase": "Running"})
    snap.replace("pods", [details("198.18.1.5", "details-v1", {"app": "details", "version": "v1",
                                                              "security.istio.io/tlsMode": "istio"}),
                          details("198.18.1.6", "details-v2", {"app": "details", "version": "v2"})])
    snap.replace("peerauthentications", [pa(ROOT, "default", "PERMISSIVE")])
    for kind, items in extra:
        snap.replace(kind, items)
    return snap


def test_proxy_config_auto_mtls_follows_sidecar_label():
    snap = mesh_snapshot()
    view = pushgen.MeshView(snap, snap.list("smcps")[0])
    config = pushgen.proxy_config(view, snap.get("pods", "bookinfo", "details-v1"))
    proxy_config.validate(copy.deepcopy(config))
    cluster = next(c for c in config["clusters"] if c["name"] == f"outbound|9080||{HOST}")
    assert cluster["tls"] == "AUTO"
    assert {e["address"]: e["mtls"] for e in cluster["endpoints"]} == {"198.18.1.5": True, "198.18.1.6": False}
    assert config["vips"]["198.19.0.50:9080"] == cluster["name"]
    assert not any("outside" in c["host"] for c in config["clusters"])  # not a mesh member
    assert config["inbound"] == {"default": "PERMISSIVE", "ports": {"9080": "PERMISSIVE"},
                                 "protocols": {"9080": "HTTP"}}


def test_proxy_config_strict_namespace_and_disable_endpoint_and_subsets():
    rule = dr("bookinfo", "details", "details", subsets=[{"name": "v1", "labels": {"version": "v1"}}])
    snap = mesh_snapshot(extra=[("peerauthentications", [pa(ROOT, "default", "PERMISSIVE"),
                                                         pa("bookinfo", "ns", "STRICT"),
                                                         pa("bookinfo", "v1", "DISABLE", {"version": "v1"})]),
                                ("destinationrules", [rule])])
    view = pushgen.MeshView(snap, snap.list("smcps")[0])
    config = pushgen.proxy_config(view, snap.get("pods", "bookinfo", "details-v2"))
    assert config["inbound"]["ports"] == {"9080": "STRICT"}
    clusters = {c["name"]: c for c in config["clusters"]}
    # v1's own policy is DISABLE: auto mTLS sends plaintext there even though it has a sidecar
    assert clusters[f"outbound|9080||{HOST}"]["endpoints"][0]["mtls"] is False
    assert [e["address"] for e in clusters[f"outbound|9080|v1|{HOST}"]["endpoints"]] == ["198.18.1.5"]


def test_gateway_routes_from_gateway_and_virtual_service():
    gw_pod = dict(obj(ROOT, "istio-ingressgateway-1", {"containers": [{"name": "istio-proxy", "args": [
        "proxy", "router"]}]}, labels={"app": "istio-ingressgateway", "istio": "ingressgateway"}),
        status={"podIP": "198.18.1.9"})
    snap = mesh_snapshot(extra=[
        ("gateways", [obj("bookinfo", "bookinfo-gateway", {"selector": {"istio": "ingressgateway"}, "servers": [
            {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]})]),
        ("virtualservices", [obj("bookinfo", "bookinfo", {"hosts": ["*"], "gateways": ["bookinfo-gateway"], "http": [
            {"match": [{"uri": {"exact": "/details/0"}}, {"uri": {"prefix": "/static"}}],
             "route": [{"destination": {"host": "details", "port": {"number": 9080}}}]}]})])])
    snap.replace("services", snap.list("services") + [obj(ROOT, "istio-ingressgateway", {
        "clusterIP": "198.19.0.60", "selector": {"istio": "ingressgateway"},
        "ports": [{"name": "http2", "port": 80, "targetPort": 8080}]})])
    snap.replace("pods", snap.list("pods") + [gw_pod])
    view = pushgen.MeshView(snap, snap.list("smcps")[0])
    config = pushgen.proxy_config(view, gw_pod)
    proxy_config.validate(copy.deepcopy(config))
    assert config["kind"] == "router"
    assert config["gateway"]["servers"] == [{"port": 8080, "hosts": ["*"]}]
    routes = gateway_routes(config)
    assert routes == {"*": [({"path": "/details/0"}, f"outbound|9080||{HOST}"), ({"prefix": "/static"},
                                                                                  f"outbound|9080||{HOST}")]}
    config["gateway"]["routes"][0]["server_hosts"] = ["bookinfo.apps.lab.local"]  # a server for one host only
    assert set(gateway_routes(config)) == {"bookinfo.apps.lab.local"}
    assert xds.gateway_domains(["*.example"], ["a.example", "b.other"]) == ["a.example"]
    assert xds.gateway_domains(["a.other"], ["*.example"]) == []


def gateway_routes(config) -> dict:
    """``{domain: [(path match, cluster), ...]}`` of the gateway's Envoy route configuration for port 8080."""
    listener = next(x for x in xds.resources(config, "/p")[xds.LDS_FILE] if x["name"] == "0.0.0.0_8080")
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return {domain: [(r["match"], r["route"]["cluster"]) for r in vhost["routes"]]
            for vhost in hcm["route_config"]["virtual_hosts"] for domain in vhost["domains"]}


def apply_add_patch(doc, patch):
    """Apply RFC 6902 ``add`` operations (all the injector emits) to a copy of ``doc``."""
    doc = copy.deepcopy(doc)
    for op in patch:
        assert op["op"] in ("add", "replace")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        target = doc
        for part in parts[:-1]:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if op["op"] == "replace":
            assert parts[-1] in target
            target[parts[-1]] = op["value"]
        elif isinstance(target, list):
            target.append(op["value"]) if parts[-1] == "-" else target.insert(int(parts[-1]), op["value"])
        else:
            target[parts[-1]] = op["value"]
    return doc


POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"generateName": "details-v1-", "namespace": "bookinfo",
                    "labels": {"app": "details", "version": "v1"},
                    "annotations": {"sidecar.istio.io/inject": "true"}},
       "spec": {"serviceAccountName": "bookinfo-details", "containers": [
           {"name": "details", "image": "maistra/examples-bookinfo-details-v1:2.4",
            "ports": [{"containerPort": 9080}]}]}}


def review(pod):
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "abc", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "object": pod}}


def test_injection_patch_adds_sidecar_like_istio():
    answer = injector.review_response(review(POD), image="x/proxyv2-rhel8:2.4", revision="basic-install",
                                      cp_namespace=ROOT)["response"]
    assert answer["allowed"] and answer["uid"] == "abc" and answer["patchType"] == "JSONPatch"
    pod = apply_add_patch(POD, json.loads(base64.b64decode(answer["patch"])))
    init, = pod["spec"]["initContainers"]
    assert init["name"] == "istio-init" and init["args"][:3] == ["istio-iptables", "-p", "15001"]
    assert init["securityContext"]["runAsUser"] == 0 and "NET_ADMIN" in init["securityContext"]["capabilities"]["add"]
    proxy = pod["spec"]["containers"][-1]
    assert proxy["name"] == "istio-proxy" and proxy["args"][:2] == ["proxy", "sidecar"]
    assert proxy["securityContext"]["runAsUser"] == 1337
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": 15021}
    labels = pod["metadata"]["labels"]
    assert labels["security.istio.io/tlsMode"] == "istio"
    assert labels["service.istio.io/canonical-name"] == "details"
    assert labels["service.istio.io/canonical-revision"] == "v1"
    status = json.loads(pod["metadata"]["annotations"]["sidecar.istio.io/status"])
    assert status["containers"] == ["istio-proxy"] and status["initContainers"] == ["istio-init"]
    assert not injector.wants_injection(pod)  # never twice


@pytest.mark.parametrize("change, injected", [
    (lambda p: p["metadata"].pop("annotations"), False),
    (lambda p: (p["metadata"].pop("annotations"), p["metadata"]["labels"].update({"sidecar.istio.io/inject": "true"})),
     True),
    (lambda p: p["metadata"]["annotations"].update({"sidecar.istio.io/inject": "false"}), False),
])
def test_injection_needs_opt_in(change, injected):
    pod = copy.deepcopy(POD)
    change(pod)
    answer = injector.review_response(review(pod), image="i", revision="r", cp_namespace=ROOT)["response"]
    assert ("patch" in answer) is injected and answer["allowed"]


def test_bad_admission_review_is_rejected():
    with pytest.raises(ValueError):
        injector.review_response({"request": {}}, image="i", revision="r", cp_namespace=ROOT)


def test_istio_iptables_rule_set():
    args = iptables.parse(["-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "",
                           "-b", "*", "-d", "15090,15021,15020"])
    rules = [" ".join(r[5:]) for r in iptables.rules(args)]
    assert "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in rules
    assert "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006" in rules
    assert "-A PREROUTING -p tcp -j ISTIO_INBOUND" in rules and "-A OUTPUT -p tcp -j ISTIO_OUTPUT" in rules
    for port in ("15090", "15021", "15020", "15000"):
        assert f"-A ISTIO_INBOUND -p tcp --dport {port} -j RETURN" in rules
    assert rules.index("-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN") < rules.index(
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT")
    with pytest.raises(SystemExit):
        iptables.parse(["-m", "TPROXY"])


def test_proxy_config_validation_names_the_problem():
    with pytest.raises(proxy_config.ConfigError, match="unknown cluster"):
        proxy_config.validate({"kind": "sidecar", "clusters": [], "vips": {"1.2.3.4:80": "nope"}})
    with pytest.raises(proxy_config.ConfigError, match="tls must be"):
        proxy_config.validate({"kind": "sidecar", "clusters": [{"name": "c", "tls": "SIMPLE"}]})


def test_injection_rewrites_http_probes_to_pilot_agent():
    pod = copy.deepcopy(POD)
    pod["spec"]["containers"][0]["ports"][0]["name"] = "http"
    pod["spec"]["containers"][0]["readinessProbe"] = {"httpGet": {"path": "/health", "port": "http"}}
    answer = injector.review_response(review(pod), image="i", revision="r", cp_namespace=ROOT)["response"]
    patched = apply_add_patch(pod, json.loads(base64.b64decode(answer["patch"])))
    assert patched["spec"]["containers"][0]["readinessProbe"]["httpGet"] == {
        "path": "/app-health/details/readyz", "port": 15020, "scheme": "HTTP"}
    env = {e["name"]: e.get("value") for e in patched["spec"]["containers"][-1]["env"]}
    assert json.loads(env["ISTIO_KUBE_APP_PROBERS"])["/app-health/details/readyz"]["httpGet"] == {
        "path": "/health", "port": 9080, "scheme": "HTTP"}
