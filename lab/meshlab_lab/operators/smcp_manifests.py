"""What an OSSM 2.6 ServiceMeshControlPlane turns into: defaults, component Deployments/Services, mesh-wide policy.

Names, labels, images, ports and the mesh-wide mTLS objects follow what the real operator renders
from its 2.6 charts; resources, volumes, probes' timings, RBAC and ConfigMaps are left out.
"""
import copy

OPERATOR_VERSION = "2.6.4"
CHART_VERSION = "2.6.4"
REGISTRY = "registry.redhat.io/openshift-service-mesh"
KNOWN_VERSIONS = ("v1.0", "v1.1", "v2.0", "v2.1", "v2.2", "v2.3", "v2.4", "v2.5", "v2.6")
SUPPORTED_VERSIONS = ("v2.4", "v2.5", "v2.6")
DEFAULT_VERSION = "v2.6"
MANAGED_BY = "maistra-istio-operator"


def applied_spec(spec: dict) -> dict:
    """The spec with the defaults of the ``default`` profile filled in (tracing off, as in this lab)."""
    out = copy.deepcopy(spec or {})
    out.setdefault("version", DEFAULT_VERSION)
    out.setdefault("profiles", ["default"])
    out.setdefault("mode", "MultiTenant")
    tracing = out.setdefault("tracing", {})
    tracing.setdefault("type", "None")
    tracing.setdefault("sampling", 10000)
    security = out.setdefault("security", {})
    data_plane = security.setdefault("dataPlane", {})
    data_plane.setdefault("mtls", False)
    data_plane.setdefault("automtls", True)
    security.setdefault("controlPlane", {}).setdefault("mtls", False)
    gateways = out.setdefault("gateways", {})
    gateways.setdefault("enabled", True)
    for gw in ("ingress", "egress"):
        gateways.setdefault(gw, {}).setdefault("enabled", True)
    gateways.setdefault("openshiftRoute", {}).setdefault("enabled", True)
    addons = out.setdefault("addons", {})
    kiali = addons.setdefault("kiali", {})
    kiali.setdefault("enabled", True)
    kiali.setdefault("name", "kiali")
    addons.setdefault("prometheus", {}).setdefault("enabled", True)
    addons.setdefault("grafana", {}).setdefault("enabled", False)
    return out


def applied_values(applied: dict) -> dict:
    """A small subset of the Helm values the real operator reports in ``status.appliedValues``."""
    addons, gateways = applied["addons"], applied["gateways"]
    return {"version": applied["version"], "profiles": applied["profiles"], "istio": {
        "global": {"mtls": {"enabled": applied["security"]["dataPlane"]["mtls"],
                            "auto": applied["security"]["dataPlane"]["automtls"]},
                   "hub": REGISTRY, "tag": OPERATOR_VERSION},
        "gateways": {"istio-ingressgateway": {"enabled": _gateway_on(gateways, "ingress")},
                     "istio-egressgateway": {"enabled": _gateway_on(gateways, "egress")}},
        "kiali": {"enabled": addons["kiali"]["enabled"]}, "prometheus": {"enabled": addons["prometheus"]["enabled"]},
        "grafana": {"enabled": addons["grafana"]["enabled"]},
        "tracing": {"enabled": applied["tracing"]["type"] == "Jaeger"}}}


def _gateway_on(gateways: dict, which: str) -> bool:
    return bool(gateways.get("enabled", True) and gateways[which].get("enabled", True))


def owner_labels(smcp: dict, component: str) -> dict:
    meta = smcp["metadata"]
    return {"maistra.io/owner": meta["namespace"], "maistra.io/owner-name": meta["name"],
            "maistra-version": OPERATOR_VERSION, "app.kubernetes.io/managed-by": MANAGED_BY,
            "app.kubernetes.io/part-of": "istio", "app.kubernetes.io/instance": meta["namespace"],
            "app.kubernetes.io/component": component}


def owner_reference(smcp: dict) -> dict:
    return {"apiVersion": "maistra.io/v2", "kind": "ServiceMeshControlPlane", "name": smcp["metadata"]["name"],
            "uid": smcp["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def _meta(smcp, name, component, extra_labels=None):
    labels = dict(owner_labels(smcp, component), **(extra_labels or {}))
    return {"name": name, "namespace": smcp["metadata"]["namespace"], "labels": labels,
            "ownerReferences": [owner_reference(smcp)]}


def _probe(path_, port):
    return {"httpGet": {"path": path_, "port": port}, "initialDelaySeconds": 1, "periodSeconds": 2,
            "failureThreshold": 30}


def _downward(name, field):
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": field}}}


def _component(smcp, component, name, pod_labels, container, service_ports, service_account):
    """(ServiceAccount, Deployment, Service) for one control-plane component."""
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(smcp, name, component, pod_labels),
        "spec": {"replicas": 1, "selector": {"matchLabels": pod_labels},
                 "template": {"metadata": {"labels": dict(pod_labels, **{"sidecar.istio.io/inject": "false"}),
                                           "annotations": {"sidecar.istio.io/inject": "false"}},
                              "spec": {"serviceAccountName": service_account, "containers": [container]}}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(smcp, name, component, pod_labels),
               "spec": {"type": "ClusterIP", "selector": pod_labels, "ports": [
                   {"name": n, "port": p, "targetPort": t, "protocol": "TCP"} for n, p, t in service_ports]}}
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(smcp, service_account, component)}
    return component, account, deployment, service


def _gateway(smcp, which: str):
    name = f"istio-{which}gateway"
    ns, cp_name = smcp["metadata"]["namespace"], smcp["metadata"]["name"]
    labels = {"app": name, "istio": f"{which}gateway"}
    container = {
        "name": "istio-proxy", "image": f"{REGISTRY}/proxyv2-rhel8:{OPERATOR_VERSION}",
        "args": ["proxy", "router", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning",
                 "--log_output_level=default:info", "--serviceCluster", name],
        "ports": [{"name": "http2", "containerPort": 8080}, {"name": "https", "containerPort": 8443},
                  {"name": "status-port", "containerPort": 15021}, {"name": "http-envoy-prom", "containerPort": 15090}],
        "env": [_downward("POD_NAME", "metadata.name"), _downward("POD_NAMESPACE", "metadata.namespace"),
                _downward("INSTANCE_IP", "status.podIP"), _downward("SERVICE_ACCOUNT", "spec.serviceAccountName"),
                {"name": "CA_ADDR", "value": f"istiod-{cp_name}.{ns}.svc:15012"},
                {"name": "ISTIO_META_WORKLOAD_NAME", "value": name},
                {"name": "ISTIO_META_ROUTER_MODE", "value": "sni-dnat"},
                {"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"}],
        "readinessProbe": _probe("/healthz/ready", 15021)}
    ports = [("status-port", 15021, 15021), ("http2", 80, 8080), ("https", 443, 8443)]
    return _component(smcp, f"istio-{which}gateway", name, labels, container, ports, f"{name}-service-account")


def components(smcp: dict, applied: dict) -> list[tuple]:
    """[(component, ServiceAccount, Deployment, Service)] for everything this SMCP enables."""
    cp_name = smcp["metadata"]["name"]
    istiod = {
        "name": "discovery", "image": f"{REGISTRY}/pilot-rhel8:{OPERATOR_VERSION}",
        "args": ["discovery", "--monitoringAddr=:15014", "--log_output_level=default:info", "--domain",
                 "cluster.local", "--keepaliveMaxServerConnectionAge", "30m"],
        "ports": [{"containerPort": p} for p in (8080, 15010, 15012, 15014, 15017)],
        "env": [{"name": "REVISION", "value": cp_name}, _downward("POD_NAME", "metadata.name"),
                _downward("POD_NAMESPACE", "metadata.namespace")],
        "readinessProbe": _probe("/ready", 8080)}
    out = [_component(smcp, "istiod", f"istiod-{cp_name}", {"app": "istiod", "istio.io/rev": cp_name}, istiod,
                      [("grpc-xds", 15010, 15010), ("https-dns", 15012, 15012), ("https-webhook", 443, 15017),
                       ("http-monitoring", 15014, 15014)], f"istiod-{cp_name}")]
    for which in ("ingress", "egress"):
        if _gateway_on(applied["gateways"], which):
            out.append(_gateway(smcp, which))
    addons = applied["addons"]
    simple = [  # (enabled, component, name, image, port, readiness path)
        (addons["kiali"]["enabled"], "kiali", addons["kiali"]["name"], f"{REGISTRY}/kiali-rhel8:1.73", 20001,
         "/kiali/healthz"),
        (addons["prometheus"]["enabled"], "prometheus", "prometheus", f"{REGISTRY}/prometheus-rhel8:2.6.4", 9090,
         "/-/ready"),
        (addons["grafana"]["enabled"], "grafana", "grafana", f"{REGISTRY}/grafana-rhel8:2.6.4", 3000, "/api/health"),
        (applied["tracing"]["type"] == "Jaeger", "jaeger", addons.get("jaeger", {}).get("name", "jaeger"),
         "registry.redhat.io/rhosdt/jaeger-all-in-one-rhel8:1.57", 16686, "/"),
    ]
    for enabled, component, name, image, port, ready_path in simple:
        if enabled:
            container = {"name": component, "image": image, "ports": [{"name": "http", "containerPort": port}],
                         "readinessProbe": _probe(ready_path, port)}
            out.append(_component(smcp, component, name, {"app": component}, container, [("http", port, port)],
                                  f"{component}-service-account" if component != "prometheus" else "prometheus"))
    return out


def mesh_wide_policy(smcp: dict, applied: dict) -> tuple[dict, list[dict]]:
    """(PeerAuthentication ``default``, DestinationRules) the operator keeps in the control-plane namespace.

    dataPlane.mtls false -> PERMISSIVE and no DestinationRules; true -> STRICT plus ``default``
    (``*.local``, ISTIO_MUTUAL) and ``api-server`` (the Kubernetes API, TLS DISABLE).
    """
    strict = bool(applied["security"]["dataPlane"]["mtls"])
    pa = {"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
          "metadata": _meta(smcp, "default", "mesh-config"),
          "spec": {"mtls": {"mode": "STRICT" if strict else "PERMISSIVE"}}}
    if not strict:
        return pa, []
    drs = [{"apiVersion": "networking.istio.io/v1alpha3", "kind": "DestinationRule",
            "metadata": _meta(smcp, name, "mesh-config"),
            "spec": {"host": host, "trafficPolicy": {"tls": {"mode": mode}}}}
           for name, host, mode in (("default", "*.local", "ISTIO_MUTUAL"),
                                    ("api-server", "kubernetes.default.svc.cluster.local", "DISABLE"))]
    return pa, drs
