"""Our CRDs installed in a real kube-apiserver 1.20: it accepts them as structural and enforces their schemas."""
import pytest

from meshlab_lab.k8s import wait_for
from meshlab_lab.operators import crds, testing
from meshlab_lab.operators.rest import ApiError, path

pytestmark = [pytest.mark.skipif(testing.missing_binaries() is not None, reason=str(testing.missing_binaries())),
              pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]

NS = "crd-check"
ALL_FOLDERS = ("base", "operators/servicemeshoperator", "operators/servicemeshoperator3", "operators/kiali-ossm",
               "operators/elasticsearch-operator")


@pytest.fixture(scope="module")
def rest():
    rest = testing.client(testing.apiserver())
    names = []
    for folder in ALL_FOLDERS:
        for crd in crds.manifests(folder):
            crds.apply(rest, crd)
            names.append(crd["metadata"]["name"])
    wait_for(lambda: crds.all_established(rest, names), 60, "all lab CRDs Established")
    rest.ensure(path("v1", "namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    return rest


def test_every_crd_is_structural_and_served(rest):
    for folder in ALL_FOLDERS:
        for crd in crds.manifests(folder):
            stored = rest.get(f"{crds.CRD_PATH}/{crd['metadata']['name']}")
            conditions = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
            assert conditions.get("NonStructuralSchema") is None, crd["metadata"]["name"]
            assert conditions["Established"] == "True"


def peer_authentication(mode, port_mode="PERMISSIVE"):
    return {"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
            "metadata": {"name": f"pa-{mode.lower()}", "namespace": NS},
            "spec": {"mtls": {"mode": mode}, "portLevelMtls": {"9080": {"mode": port_mode}}}}


def test_valid_peer_authentication_is_stored_as_given(rest):
    created = rest.create(path("security.istio.io/v1beta1", "peerauthentications", NS), peer_authentication("STRICT"))
    assert created["spec"] == {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"9080": {"mode": "PERMISSIVE"}}}


@pytest.mark.parametrize(("mode", "port_mode", "field"), [("STRICTER", "PERMISSIVE", "spec.mtls.mode"),
                                                          ("STRICT", "ON", "spec.portLevelMtls.9080.mode")])
def test_bad_peer_authentication_mode_is_rejected_with_422(rest, mode, port_mode, field):
    with pytest.raises(ApiError) as err:
        rest.create(path("security.istio.io/v1beta1", "peerauthentications", NS), peer_authentication(mode, port_mode))
    assert err.value.status == 422
    assert "Unsupported value" in str(err.value)
    assert field in str(err.value)


def test_destination_rule_needs_a_host_and_a_known_tls_mode(rest):
    collection = path("networking.istio.io/v1alpha3", "destinationrules", NS)
    body = {"apiVersion": "networking.istio.io/v1alpha3", "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": NS},
            "spec": {"trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}}
    with pytest.raises(ApiError) as err:
        rest.create(collection, body)
    assert err.value.status == 422 and "spec.host" in str(err.value)
    body["spec"]["host"] = "reviews"
    body["spec"]["subsets"] = [{"name": "v1", "trafficPolicy": {"tls": {"mode": "MUTUAL_TLS"}}}]
    with pytest.raises(ApiError) as err:
        rest.create(collection, body)
    assert err.value.status == 422 and "Unsupported value" in str(err.value)
    body["spec"]["subsets"][0]["trafficPolicy"]["tls"]["mode"] = "DISABLE"
    body["spec"]["trafficPolicy"]["connectionPool"] = {"tcp": {"maxConnections": 10}}
    stored = rest.create(collection, body)
    assert stored["spec"]["trafficPolicy"]["connectionPool"] == {"tcp": {"maxConnections": 10}}, "pruned"


def test_route_needs_a_target_and_gets_defaults(rest):
    collection = path("route.openshift.io/v1", "routes", NS)
    body = {"apiVersion": "route.openshift.io/v1", "kind": "Route", "metadata": {"name": "api", "namespace": NS},
            "spec": {"port": {"targetPort": "http2"}, "tls": {"termination": "edge"}}}
    with pytest.raises(ApiError) as err:
        rest.create(collection, body)
    assert err.value.status == 422 and "spec.to" in str(err.value)
    body["spec"]["to"] = {"name": "istio-ingressgateway"}
    stored = rest.create(collection, body)
    assert stored["spec"]["to"] == {"kind": "Service", "name": "istio-ingressgateway", "weight": 100}
    assert stored["spec"]["wildcardPolicy"] == "None"


def test_service_mesh_member_needs_a_control_plane_ref(rest):
    with pytest.raises(ApiError) as err:
        rest.create(path("maistra.io/v1", "servicemeshmembers", NS), {
            "apiVersion": "maistra.io/v1", "kind": "ServiceMeshMember", "metadata": {"name": "default"},
            "spec": {}})
    assert err.value.status == 422 and "spec.controlPlaneRef" in str(err.value)
