"""Rendered role templates validated against the real upstream CRDs and Kubernetes' own schemas."""
import pytest

from cases import BOOKINFO_WORKLOADS, MODES, ROUTE_HOST, rendered_cases
from crd_schemas import crd_errors, crd_validator, shared_dir
from rendering import all_templates, render

CORE_KINDS = {"Namespace", "Service", "ServiceAccount", "Deployment"}
# kubernetes-validate has no schemas before 1.25; the lab's API server is 1.20 and these kinds are GA in both.
K8S_SCHEMA_VERSION = "1.25.0"

CASES = rendered_cases()
needs_shared = pytest.mark.skipif(not (shared_dir() / "crds").is_dir(),
                                  reason="../shared/crds (upstream CRDs) not present; set MESHLAB_SHARED")


def test_every_template_has_a_case():
    covered = {(case[1], case[2]) for case in CASES}
    assert covered == set(all_templates())


@needs_shared
@pytest.mark.parametrize("case_id,manifest", [(c[0], c[3]) for c in CASES if c[3]["kind"] not in CORE_KINDS])
def test_custom_resource_matches_upstream_crd(case_id, manifest):
    assert crd_errors(manifest) == []


@pytest.mark.parametrize("case_id,manifest", [(c[0], c[3]) for c in CASES if c[3]["kind"] in CORE_KINDS])
def test_core_object_matches_kubernetes_schema(case_id, manifest):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(manifest, K8S_SCHEMA_VERSION, strict=True)


@needs_shared
def test_smcp_uses_served_version_with_mtls_off_and_tracing_none():
    smcp = render("control_plane", "smcp.yaml.j2")
    crd_validator(smcp["apiVersion"], smcp["kind"])
    assert smcp["spec"]["version"] == "v2.6"
    assert smcp["spec"]["security"] == {"dataPlane": {"mtls": False, "automtls": False},
                                        "controlPlane": {"mtls": False}}
    assert smcp["spec"]["tracing"]["type"] == "None"
    assert smcp["spec"]["addons"]["kiali"]["enabled"] is True
    assert smcp["spec"]["addons"]["prometheus"]["enabled"] is True


def test_route_has_no_host_unless_asked():
    assert "host" not in render("control_plane", "route.yaml.j2")["spec"]
    fixed = render("control_plane", "route.yaml.j2", control_plane_route_host_override=ROUTE_HOST)
    assert fixed["spec"]["host"] == ROUTE_HOST
    assert fixed["spec"]["tls"] == {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"}
    assert fixed["spec"]["port"] == {"targetPort": "http2"}


def test_virtual_service_routes_static_and_the_article_paths():
    vs = render("bookinfo", "virtual_service.yaml.j2", bookinfo_gateway_host=ROUTE_HOST)
    matches = [m["uri"] for m in vs["spec"]["http"][0]["match"]]
    assert matches == [{"exact": "/productpage"}, {"prefix": "/static"}, {"exact": "/login"},
                       {"exact": "/logout"}, {"prefix": "/api/v1/products"}]
    assert vs["spec"]["hosts"] == [ROUTE_HOST] and vs["spec"]["gateways"] == ["default"]


def test_bookinfo_deployments_request_injection_and_default_images():
    for app, version in BOOKINFO_WORKLOADS:
        dep = render("bookinfo", "deployment.yaml.j2", bookinfo_workload={"app": app, "version": version})
        template = dep["spec"]["template"]
        assert template["metadata"]["annotations"]["sidecar.istio.io/inject"] == "true"
        assert template["metadata"]["labels"] == {"app": app, "version": version}
        container = template["spec"]["containers"][0]
        assert container["image"] == "quay.io/maistra/examples-bookinfo-%s-%s:2.6.0" % (app, version)
        assert container["ports"] == [{"containerPort": 9080}]


def test_outside_mesh_opts_out_of_injection():
    outside = render("test_pods", "deployment.yaml.j2", test_pod={"name": "outside-mesh", "inject": False})
    inside = render("test_pods", "deployment.yaml.j2", test_pod={"name": "inside-mesh", "inject": True})
    assert outside["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    assert inside["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "true"


@pytest.mark.parametrize("mode", sorted(MODES))
def test_mode_objects_carry_the_mode_client_tls(mode):
    pa = render("mtls_mode", "peer_authentication.yaml.j2", mtls_mode_effective=mode)
    assert pa["spec"] == {"mtls": {"mode": mode}}
    subset = render("bookinfo", "destination_rule_subsets.yaml.j2", bookinfo_app="reviews",
                    bookinfo_subset_tls_mode_effective=MODES[mode])
    assert subset["spec"]["trafficPolicy"]["tls"]["mode"] == MODES[mode]
    assert [s["name"] for s in subset["spec"]["subsets"]] == ["v1", "v2", "v3"]


def test_disable_rule_really_disables_tls():
    """The article's chart rendered ISTIO_MUTUAL in its DISABLE step; ours must not."""
    disable = render("mtls_mode", "destination_rule_disable.yaml.j2")
    assert disable["spec"] == {"host": "*", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}
    mtls = render("mtls_mode", "destination_rule_mtls.yaml.j2")
    assert mtls["spec"]["host"] == "*.bookinfo.svc.cluster.local"
    assert mtls["spec"]["trafficPolicy"]["tls"]["mode"] == "ISTIO_MUTUAL"
