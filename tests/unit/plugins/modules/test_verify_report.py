"""The verify role's plan (expectations from cluster objects versus the mode's intent) and report checks,
on Kubernetes-shaped objects like those the mtls_mode, bookinfo and test_pods roles create."""

import pytest
from ansible_collections.meshlab.mtls.plugins.module_utils import report as rp
from ansible_collections.meshlab.mtls.plugins.module_utils.mtls_verdict import verdict
from kubernetes import client as k8s

SERIALIZE = k8s.ApiClient().sanitize_for_serialization
NS, ROOT = "bookinfo", "istio-system"
SOURCES = [{"name": "inside-mesh", "deployment": "inside-mesh", "container": "inside-mesh"},
           {"name": "outside-mesh", "deployment": "outside-mesh", "container": "outside-mesh"}]


def pod(name, labels, sidecar, namespace=NS):
    containers = [name.split("-")[0]] + (["istio-proxy"] if sidecar else [])
    return SERIALIZE(k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name + "-7d9f-abcde", namespace=namespace, labels=labels,
                                  creation_timestamp="2026-01-01T00:00:00Z"),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name=c, image="img") for c in containers]),
        status=k8s.V1PodStatus(phase="Running", conditions=[k8s.V1PodCondition(type="Ready", status="True")])))


def deployment(name):
    return SERIALIZE(k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name=name, namespace=NS),
        spec=k8s.V1DeploymentSpec(selector=k8s.V1LabelSelector(match_labels={"app": name}),
                                  template=k8s.V1PodTemplateSpec())))


PODS = [pod("productpage-v1", {"app": "productpage", "version": "v1"}, True),
        pod("details-v1", {"app": "details", "version": "v1"}, True),
        pod("inside-mesh", {"app": "inside-mesh"}, True),
        pod("outside-mesh", {"app": "outside-mesh"}, False)]
DEPLOYMENTS = [deployment("inside-mesh"), deployment("outside-mesh")]
GATEWAY = [pod("istio-ingressgateway", {"istio": "ingressgateway"}, False, ROOT)]
SMCP = {"kind": "ServiceMeshControlPlane", "metadata": {"name": "basic-install", "namespace": ROOT},
        "spec": {"security": {"dataPlane": {"mtls": False, "automtls": False}}}}


def objects(pa_mode, dr_mode):
    """What the mtls_mode role applies for a mode (PeerAuthentication default + the client DestinationRule)."""
    pas = [{"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": NS, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"mtls": {"mode": pa_mode}}}]
    host = "*" if dr_mode == "DISABLE" else "*.%s.svc.cluster.local" % NS
    drs = [{"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
            "metadata": {"name": "bookinfo-mtls", "namespace": NS, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"host": host, "trafficPolicy": {"tls": {"mode": dr_mode}}}}]
    return pas, drs


def plan(mode, pa_mode, dr_mode):
    pas, drs = objects(pa_mode, dr_mode)
    return rp.verify_plan(mode, NS, ROOT, pas, drs, SMCP, PODS, DEPLOYMENTS, GATEWAY, SOURCES)


@pytest.mark.parametrize("mode, dr_mode, outside, wire", [
    ("STRICT", "ISTIO_MUTUAL", "failure (reset)", "encrypted"),
    ("permissive", "ISTIO_MUTUAL", "success", "encrypted"),
    ("Disable", "DISABLE", "success", "plaintext"),
])
def test_plan_of_a_cluster_in_the_mode(mode, dr_mode, outside, wire):
    got = plan(mode, mode.upper(), dr_mode)
    assert got["expect"] == {"external": "success", "inside-mesh": "success", "outside-mesh": outside}
    assert got["listener"] == {"port": "9080", "expected": mode.upper(), "workload": "productpage"}
    assert got["wire"]["expected"] == wire
    assert got["drift"] == []
    assert got["kiali"]["intended"] == got["kiali"]["computed"]
    assert got["auto_mtls"] is False


def test_drift_is_named_with_its_reason():
    got = plan("STRICT", "PERMISSIVE", "ISTIO_MUTUAL")
    assert got["expect"]["outside-mesh"] == "success"  # what the probes wait for: what the objects will do
    assert got["intent"]["outside-mesh"] == "failure (reset)"  # what STRICT promises
    assert got["drift"] == [{"object": "PeerAuthentication bookinfo/default", "field": "spec.mtls.mode",
                             "wanted": "STRICT", "found": "PERMISSIVE",
                             "affects": ["details", "inside-mesh", "productpage"]}]


def drifted_checks(pas, drs, listener_mode="STRICT"):
    """verify STRICT on these objects, with every source observed reaching productpage (what they allow)."""
    observed = {"probes": [probe_row(name, "success", {"0": 10}, {"200": 10}, "success")
                           for name in ("external", "inside-mesh", "outside-mesh")]}
    got = rp.verify_plan("STRICT", NS, ROOT, pas, drs, SMCP, PODS, DEPLOYMENTS, GATEWAY, SOURCES)
    return {c["name"]: c for c in rp.verify_checks(got, observed, {"inbound_modes": {
        "9080": listener_mode}}, {"method": "telemetry", "verdict": "encrypted", "evidence": {}})}


def test_namespace_policy_patched_by_hand_fails_by_name_and_by_behaviour():
    """The tour done, PeerAuthentication bookinfo/default patched to PERMISSIVE, verify STRICT."""
    checks = drifted_checks(*objects("PERMISSIVE", "ISTIO_MUTUAL"), listener_mode="PERMISSIVE")
    row = checks["drift PeerAuthentication bookinfo/default spec.mtls.mode"]
    assert (row["expected"], row["observed"], row["passed"]) == ("STRICT", "PERMISSIVE", False)
    outside = checks["reachability outside-mesh"]
    assert (outside["expected"], outside["observed"], outside["passed"]) == ("failure (reset)", "success", False)
    assert "STRICT promises failure (reset), but the cluster's objects give success" in outside["detail"]
    listener = checks["listener productpage:9080"]
    assert (listener["expected"], listener["observed"], listener["passed"]) == ("STRICT", "PERMISSIVE", False)
    assert "config matches mode" not in checks
    assert verdict(list(checks.values()))["verdict"] == "FAIL"


def test_workload_level_permissive_on_productpage_is_named():
    pas, drs = objects("STRICT", "ISTIO_MUTUAL")
    pas.append({"kind": "PeerAuthentication", "metadata": {"name": "productpage-open", "namespace": NS,
                                                           "creationTimestamp": "2026-01-02T00:00:00Z"},
                "spec": {"selector": {"matchLabels": {"app": "productpage"}}, "mtls": {"mode": "PERMISSIVE"}}})
    checks = drifted_checks(pas, drs)
    row = checks["drift PeerAuthentication bookinfo/productpage-open spec.mtls.mode"]
    assert (row["expected"], row["observed"]) == ("STRICT", "PERMISSIVE")
    assert "affects productpage" in row["detail"]
    assert checks["reachability outside-mesh"]["expected"] == "failure (reset)"
    assert not checks["reachability outside-mesh"]["passed"]


def test_port_level_override_is_named_with_its_port():
    pas, drs = objects("STRICT", "ISTIO_MUTUAL")
    pas.append({"kind": "PeerAuthentication", "metadata": {"name": "details-port", "namespace": NS},
                "spec": {"selector": {"matchLabels": {"app": "details"}}, "mtls": {"mode": "STRICT"},
                         "portLevelMtls": {"9080": {"mode": "DISABLE"}}}})
    names = [c["name"] for c in drifted_checks(pas, drs).values() if c["name"].startswith("drift")]
    assert names == ["drift PeerAuthentication bookinfo/details-port spec.portLevelMtls.9080.mode"]


def test_subset_destination_rule_with_tls_disable_is_named():
    pas, drs = objects("STRICT", "ISTIO_MUTUAL")
    drs.append({"kind": "DestinationRule", "metadata": {"name": "details", "namespace": NS},
                "spec": {"host": "details", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
                         "subsets": [{"name": "v1", "labels": {"version": "v1"},
                                      "trafficPolicy": {"tls": {"mode": "DISABLE"}}},
                                     {"name": "v2", "labels": {"version": "v2"}}]}})
    checks = drifted_checks(pas, drs)
    row = checks["drift DestinationRule bookinfo/details spec.subsets[v1].trafficPolicy.tls.mode"]
    assert (row["expected"], row["observed"], row["passed"]) == ("ISTIO_MUTUAL", "DISABLE", False)
    assert "details (subset v1)" in row["detail"]
    assert [n for n in checks if n.startswith("drift")] == [row["name"]]  # v2 inherits ISTIO_MUTUAL


def test_missing_namespace_policy_names_the_mesh_wide_one():
    pas, drs = objects("STRICT", "ISTIO_MUTUAL")
    mesh = {"kind": "PeerAuthentication", "metadata": {"name": "default", "namespace": ROOT},
            "spec": {"mtls": {"mode": "PERMISSIVE"}}}
    rows = [c for c in drifted_checks([mesh], drs).values() if c["name"].startswith("drift")]
    assert [(r["name"], r["observed"]) for r in rows] == [
        ("drift PeerAuthentication bookinfo/default spec.mtls.mode", "absent (istio-system/default gives PERMISSIVE)")]


def test_plan_refuses_missing_workloads_and_bad_mode():
    pas, drs = objects("STRICT", "ISTIO_MUTUAL")
    with pytest.raises(rp.ReportError, match="Deployment nope not found"):
        rp.verify_plan("STRICT", NS, ROOT, pas, drs, SMCP, PODS, DEPLOYMENTS, GATEWAY,
                       [{"name": "x", "deployment": "nope"}])
    with pytest.raises(rp.ReportError, match="productpage"):
        rp.verify_plan("STRICT", NS, ROOT, pas, drs, SMCP, PODS[1:], DEPLOYMENTS, GATEWAY, SOURCES)
    with pytest.raises(rp.ReportError, match="ingress gateway"):
        rp.verify_plan("STRICT", NS, ROOT, pas, drs, SMCP, PODS, DEPLOYMENTS, [], SOURCES)
    with pytest.raises(rp.ReportError, match="mode must be one of"):
        rp.verify_plan("MUTUAL", NS, ROOT, pas, drs, SMCP, PODS, DEPLOYMENTS, GATEWAY, SOURCES)


def test_auto_mtls_default_is_on():
    assert rp.auto_mtls_of({"spec": {}}) is True
    assert rp.auto_mtls_of({"spec": {"security": {"dataPlane": None}}}) is True
    assert rp.auto_mtls_of(SMCP) is False


def probe_row(source, observed, exits, statuses, result):
    n = sum(exits.values())
    ok = n if result == "success" else 0
    return {"source": source, "target": "http://productpage.bookinfo.svc.cluster.local:9080/productpage",
            "count": n, "succeeded": ok, "failed": n - ok, "statuses": statuses, "curl_exits": exits,
            "result": result, "meaning": "connection reset by peer (failure receiving data)"
            if result != "success" else "HTTP 200", "samples": [], "observed": observed}


STRICT_PROBE = {"probes": [
    probe_row("inside-mesh", "success", {"0": 10}, {"200": 10}, "success"),
    probe_row("outside-mesh", "failure (reset)", {"56": 10}, {}, "failure"),
    probe_row("external", "success", {"0": 10}, {"200": 10}, "success")], "converged": True}
STRICT_LISTENER = {"pod": "productpage-v1-7d9f-abcde", "inbound_modes": {"9080": "STRICT", "*": "STRICT"}}
STRICT_WIRE = {"method": "stats", "verdict": "encrypted", "evidence": {
    "client": {"connections": 10, "handshakes": 10, "requests": 10, "verdict": "encrypted", "basis": "delta"},
    "server": {"connections": 10, "handshakes": 10, "verdict": "encrypted", "basis": "delta"}}}


def test_checks_of_a_strict_cluster_pass():
    checks = rp.verify_checks(plan("STRICT", "STRICT", "ISTIO_MUTUAL"), STRICT_PROBE, STRICT_LISTENER, STRICT_WIRE)
    assert [c["kind"] for c in checks] == ["reachability"] * 3 + ["listener", "wire", "config", "config"]
    assert [c["source"] for c in checks[:3]] == ["external", "inside-mesh", "outside-mesh"]
    outside = checks[2]
    assert outside["detail"].startswith("curl exit 56 (connection reset by peer")
    assert " 10/10 | expected because: " in outside["detail"]
    assert "+10 TLS handshakes" in checks[4]["detail"]
    judged = verdict(checks)
    assert judged["verdict"] == "PASS", [c["reason"] for c in judged["checks"] if not c["passed"]]


def test_telemetry_wire_detail_names_the_counts_and_the_plaintext_sources():
    wire = {"method": "telemetry", "verdict": "mixed", "evidence": {
        "basis": "istio_requests_total ... from productpage-v1 during the burst: +8 mutual_tls, +2 none",
        "mtls_requests": 8, "plaintext_requests": 2, "plaintext_sources": ["bookinfo/legacy", "unknown"]}}
    checks = rp.verify_checks(plan("STRICT", "STRICT", "ISTIO_MUTUAL"), STRICT_PROBE, STRICT_LISTENER, wire)
    assert checks[4]["observed"] == "mixed" and not checks[4]["passed"]
    assert "+8 mutual_tls, +2 none" in checks[4]["detail"]
    assert "plaintext arrived from: bookinfo/legacy, unknown" in checks[4]["detail"]


def test_missing_and_wrong_observations_fail_with_the_reason():
    checks = rp.verify_checks(plan("STRICT", "STRICT", "ISTIO_MUTUAL"),
                              {"failed": True, "msg": "no Running and Ready pod"},
                              dict(STRICT_LISTENER, inbound_modes={"9080": "PERMISSIVE"}),
                              {"msg": "server pod details has no istio-proxy container"})
    by_name = {c["name"]: c for c in checks}
    assert by_name["reachability outside-mesh"]["observed"] == rp.NOT_OBSERVED
    assert "no Running and Ready pod" in by_name["reachability outside-mesh"]["detail"]
    assert by_name["listener productpage:9080"]["observed"] == "PERMISSIVE"
    assert "no istio-proxy container" in by_name["wire productpage -> details"]["detail"]
    assert verdict(checks)["verdict"] == "FAIL"
