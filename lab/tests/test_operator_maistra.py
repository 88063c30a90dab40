"""The emulated Service Mesh 2 operator through a real kube-apiserver 1.20 (bare: no controller-manager, no nodes).

No controller-manager runs here, so Deployments never report status by themselves: the readiness
test patches ``status`` of the component Deployments (as the Deployment controller would) and checks
that the operator reacts. The lab's end-to-end tests cover real rollouts.
"""
import pytest

from meshlab_lab.k8s import wait_for
from meshlab_lab.operators import testing
from meshlab_lab.operators.rest import ApiError, path

pytestmark = [pytest.mark.skipif(testing.missing_binaries() is not None, reason=str(testing.missing_binaries())),
              pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]

V1A1 = "operators.coreos.com/v1alpha1"
CP = "istio-system"
SMCP = "maistra.io/v2"
COMPONENTS = ["istio-egressgateway", "istio-ingressgateway", "istiod", "kiali", "prometheus"]


@pytest.fixture(scope="module")
def rest():
    server = testing.apiserver()
    testing.operators_addon(server)
    rest = testing.client(server)
    sub_path = path(V1A1, "subscriptions", "openshift-operators")
    if rest.get(f"{sub_path}/servicemeshoperator") is None:
        rest.create(sub_path, {"apiVersion": V1A1, "kind": "Subscription",
                               "metadata": {"name": "servicemeshoperator"},
                               "spec": {"name": "servicemeshoperator", "channel": "stable",
                                        "source": "redhat-operators", "sourceNamespace": "openshift-marketplace"}})
    wait_for(lambda: rest.get("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/"
                              "openshift-operators.servicemesh-resources.maistra.io"), 90,
             "the SMCP validating webhook (registered once the CSV Succeeded)")
    for ns in (CP, "bookinfo", "old-mesh"):
        rest.ensure(path("v1", "namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    return rest


def smcp_body(name="basic", version="v2.6", ns=CP):
    return {"apiVersion": SMCP, "kind": "ServiceMeshControlPlane", "metadata": {"name": name, "namespace": ns},
            "spec": {"version": version, "tracing": {"type": "None"},
                     "security": {"dataPlane": {"mtls": False}},
                     "addons": {"kiali": {"enabled": True}, "prometheus": {"enabled": True},
                                "grafana": {"enabled": False}},
                     "gateways": {"ingress": {"enabled": True}, "egress": {"enabled": True}}}}


def smcp(rest, name="basic"):
    return rest.get(path(SMCP, "servicemeshcontrolplanes", CP, name))


def test_webhook_rejects_an_unsupported_version(rest):
    with pytest.raises(ApiError) as err:
        rest.create(path(SMCP, "servicemeshcontrolplanes", "old-mesh"), smcp_body(version="v2.0", ns="old-mesh"))
    assert err.value.status == 400
    message = str(err.value)
    assert 'admission webhook "smcp.validation.maistra.io" denied the request' in message
    assert "Only '[v2.4 v2.5 v2.6]' versions are supported" in message
    assert rest.list(path(SMCP, "servicemeshcontrolplanes", "old-mesh"))["items"] == []


def test_smcp_renders_components_and_becomes_ready_when_deployments_are_available(rest):
    rest.create(path(SMCP, "servicemeshcontrolplanes", CP), smcp_body())
    deployments = path("apps/v1", "deployments", CP)

    def rendered():
        names = {d["metadata"]["name"] for d in rest.list(deployments)["items"]}
        return names >= {"istiod-basic", "istio-ingressgateway", "istio-egressgateway", "kiali", "prometheus"}

    wait_for(rendered, 30, "component Deployments")
    assert rest.get(f"{deployments}/grafana") is None and rest.get(f"{deployments}/jaeger") is None
    gateway = rest.get(f"{deployments}/istio-ingressgateway")
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("registry.redhat.io/openshift-service-mesh/proxyv2-rhel8:2.6.")
    assert container["args"][:2] == ["proxy", "router"]
    assert gateway["spec"]["template"]["metadata"]["labels"]["istio"] == "ingressgateway"
    istiod = rest.get(f"{deployments}/istiod-basic")
    assert istiod["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
        "registry.redhat.io/openshift-service-mesh/pilot-rhel8:2.6.")
    service = rest.get(path("v1", "services", CP, "istio-ingressgateway"))
    assert {(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        ("http2", 80, 8080), ("https", 443, 8443), ("status-port", 15021, 15021)}

    status = wait_for(lambda: (smcp(rest).get("status") or {}).get("readiness") and smcp(rest)["status"], 30,
                      "SMCP status")
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ComponentsNotReady")
    assert status["readiness"]["components"]["pending"] == COMPONENTS
    assert status["annotations"]["readyComponentCount"] == "0/5"

    for i, name in enumerate(["istiod-basic", "istio-ingressgateway", "istio-egressgateway", "kiali", "prometheus"]):
        if i == 4:  # before the last one turns Available the control plane is still not Ready
            partial = smcp(rest)["status"]
            assert {c["type"]: c["status"] for c in partial["conditions"]}["Ready"] == "False"
        rest.merge_patch(f"{deployments}/{name}/status", {"status": {
            "replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1,
            "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                            "message": "Deployment has minimum availability."}]}})

    def is_ready():
        current = smcp(rest)
        conditions = {c["type"]: c for c in current["status"]["conditions"]}
        return conditions["Ready"]["status"] == "True" and current

    current = wait_for(is_ready, 30, "SMCP Ready")
    status = current["status"]
    assert {c["type"]: c["reason"] for c in status["conditions"]} == {
        "Installed": "InstallSuccessful", "Reconciled": "InstallSuccessful", "Ready": "ComponentsReady"}
    assert status["readiness"]["components"] == {"ready": COMPONENTS, "pending": [], "unready": []}
    assert status["annotations"]["readyComponentCount"] == "5/5"
    assert status["observedGeneration"] == current["metadata"]["generation"]
    assert status["operatorVersion"].startswith("2.6.") and status["chartVersion"].startswith("2.6.")
    assert status["appliedSpec"]["version"] == "v2.6"


def test_webhook_rejects_a_second_smcp_in_the_namespace(rest):
    with pytest.raises(ApiError) as err:
        rest.create(path(SMCP, "servicemeshcontrolplanes", CP), smcp_body(name="second"))
    assert "only one service mesh may be installed per project/namespace" in str(err.value)


def test_mesh_wide_peer_authentication_follows_data_plane_mtls(rest):
    pa_path = path("security.istio.io/v1beta1", "peerauthentications", CP, "default")
    dr_path = path("networking.istio.io/v1alpha3", "destinationrules", CP, "default")
    pa = wait_for(lambda: rest.get(pa_path), 30, "mesh-wide PeerAuthentication")
    assert pa["spec"]["mtls"]["mode"] == "PERMISSIVE"
    assert rest.get(dr_path) is None

    updated = rest.merge_patch(path(SMCP, "servicemeshcontrolplanes", CP, "basic"),
                               {"spec": {"security": {"dataPlane": {"mtls": True}}}})
    wait_for(lambda: rest.get(pa_path)["spec"]["mtls"]["mode"] == "STRICT", 30, "PA STRICT")
    dr = wait_for(lambda: rest.get(dr_path), 30, "mesh-wide DestinationRule")
    assert dr["spec"] == {"host": "*.local", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}
    wait_for(lambda: smcp(rest)["status"]["observedGeneration"] == updated["metadata"]["generation"], 30,
             "observedGeneration to follow the new generation")

    rest.merge_patch(path(SMCP, "servicemeshcontrolplanes", CP, "basic"),
                     {"spec": {"security": {"dataPlane": {"mtls": False}}}})
    wait_for(lambda: rest.get(pa_path)["spec"]["mtls"]["mode"] == "PERMISSIVE", 30, "PA back to PERMISSIVE")
    wait_for(lambda: rest.get(dr_path) is None, 30, "mesh-wide DestinationRule removed")


def test_member_joins_and_leaves_the_mesh(rest):
    smm_path = path("maistra.io/v1", "servicemeshmembers", "bookinfo")
    rest.create(smm_path, {"apiVersion": "maistra.io/v1", "kind": "ServiceMeshMember",
                           "metadata": {"name": "default", "namespace": "bookinfo"},
                           "spec": {"controlPlaneRef": {"name": "basic", "namespace": CP}}})
    smmr_path = path("maistra.io/v1", "servicemeshmemberrolls", CP, "default")

    def configured():
        roll = rest.get(smmr_path)
        return roll and "bookinfo" in (roll.get("status") or {}).get("configuredMembers", []) and roll

    roll = wait_for(configured, 30, "bookinfo configured in SMMR default")
    assert roll["status"]["members"] == ["bookinfo"]
    assert roll["status"]["annotations"]["configuredMemberCount"] == "1/1"
    assert {c["type"]: c["status"] for c in roll["status"]["conditions"]}["Ready"] == "True"
    namespace = rest.get(path("v1", "namespaces", None, "bookinfo"))
    assert namespace["metadata"]["labels"]["maistra.io/member-of"] == CP
    member = wait_for(lambda: (rest.get(f"{smm_path}/default").get("status") or {}).get("conditions"), 30,
                      "SMM status")
    assert {c["type"]: c["status"] for c in member}["Ready"] == "True"

    rest.delete(f"{smm_path}/default")
    wait_for(lambda: "maistra.io/member-of" not in
             rest.get(path("v1", "namespaces", None, "bookinfo"))["metadata"].get("labels", {}), 30,
             "member-of label removed")
    wait_for(lambda: rest.get(smmr_path)["status"]["members"] == [], 30, "SMMR members emptied")


def test_deleting_the_smcp_removes_what_it_created(rest):
    rest.delete(path(SMCP, "servicemeshcontrolplanes", CP, "basic"))
    wait_for(lambda: smcp(rest) is None, 30, "SMCP deleted (finalizer released)")
    selector = "maistra.io/owner-name=basic"
    for api, plural in (("apps/v1", "deployments"), ("v1", "services"),
                        ("security.istio.io/v1beta1", "peerauthentications")):
        assert rest.list(path(api, plural, CP), labelSelector=selector)["items"] == [], plural
