"""Every manifest the roles can render: role defaults plus the loop and mode variables the tasks set."""
from rendering import render

ROUTE_HOST = "api-istio-system.apps.lab.local"
BOOKINFO_APPS = ["details", "ratings", "reviews", "productpage"]
BOOKINFO_WORKLOADS = [("details", "v1"), ("ratings", "v1"), ("reviews", "v1"), ("reviews", "v2"),
                      ("reviews", "v3"), ("productpage", "v1")]
MODES = {"PERMISSIVE": "ISTIO_MUTUAL", "DISABLE": "DISABLE", "STRICT": "ISTIO_MUTUAL"}


def rendered_cases():
    """(case id, role, template, manifest) for every template and variant."""
    cases = []

    def add(case_id, role, template, **task_vars):
        cases.append((case_id, role, template, render(role, template, **task_vars)))

    for approval in ("Automatic", "Manual"):
        add("subscription-" + approval.lower(), "operators", "subscription.yaml.j2",
            operators_package="servicemeshoperator", operators_package_channel="stable",
            operators_package_csv="servicemeshoperator.v2.6.5", operators_approval_normalised=approval)
    add("cp-namespace", "control_plane", "namespace.yaml.j2")
    add("smcp", "control_plane", "smcp.yaml.j2")
    add("route-router-host", "control_plane", "route.yaml.j2")
    add("route-fixed-host", "control_plane", "route.yaml.j2", control_plane_route_host_override=ROUTE_HOST)
    add("bookinfo-namespace", "bookinfo", "namespace.yaml.j2")
    add("smm", "bookinfo", "service_mesh_member.yaml.j2")
    for app in BOOKINFO_APPS:
        add("service-" + app, "bookinfo", "service.yaml.j2", bookinfo_app=app)
        add("sa-" + app, "bookinfo", "service_account.yaml.j2", bookinfo_app=app)
        for tls in ("ISTIO_MUTUAL", "DISABLE"):
            add("dr-%s-%s" % (app, tls), "bookinfo", "destination_rule_subsets.yaml.j2", bookinfo_app=app,
                bookinfo_subset_tls_mode_effective=tls)
    for app, version in BOOKINFO_WORKLOADS:
        add("deployment-%s-%s" % (app, version), "bookinfo", "deployment.yaml.j2",
            bookinfo_workload={"app": app, "version": version})
    add("gateway", "bookinfo", "gateway.yaml.j2", bookinfo_gateway_host=ROUTE_HOST)
    add("virtualservice", "bookinfo", "virtual_service.yaml.j2", bookinfo_gateway_host=ROUTE_HOST)
    for name, inject in (("inside-mesh", True), ("outside-mesh", False)):
        add("test-pod-" + name, "test_pods", "deployment.yaml.j2", test_pod={"name": name, "inject": inject})
    for mode in MODES:
        add("pa-" + mode.lower(), "mtls_mode", "peer_authentication.yaml.j2", mtls_mode_effective=mode)
    add("dr-bookinfo-mtls", "mtls_mode", "destination_rule_mtls.yaml.j2")
    add("dr-bookinfo-mtls-disable", "mtls_mode", "destination_rule_disable.yaml.j2")
    return cases
