"""The Envoy bootstrap a sidecar or gateway starts with, as Istio's pilot-agent renders it (trimmed).

- ``node``: id ``<sidecar|router>~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`` and Istio's node metadata;
- admin on 127.0.0.1:15000; static listeners 15021 (``/healthz/ready`` -> pilot-agent 15020) and 15090
  (``/stats/prometheus`` -> admin), clusters ``agent`` and ``prometheus_stats``;
- ``dynamic_resources``: LDS and CDS from the files the lab's istiod writes (see xds.py);
- ``stats_config.stats_matcher``: Istio's default inclusion list, extended by the pod's
  ``sidecar.istio.io/statsInclusion{Prefixes,Suffixes,Regexps}`` annotations and by
  ``proxyStatsMatcher`` of ``proxy.istio.io/config`` (carried in ``PROXY_CONFIG``), read at start as Istio does.
"""
import json

from meshlab_lab.mesh import xds

T = xds.T
ADMIN_PORT, STATUS_PORT, AGENT_PORT, PROMETHEUS_PORT = 15000, 15021, 15020, 15090
# Istio's default stats inclusion (pkg/bootstrap defaults; the same from Istio 1.20 to 1.30).
DEFAULT_PREFIXES = ["reporter=", "cluster_manager", "listener_manager", "server", "cluster.xds-grpc", "wasm",
                    "component", "istio"]
DEFAULT_SUFFIXES = ["rbac.allowed", "rbac.denied", "shadow_allowed", "shadow_denied"]
DEFAULT_REGEXPS = [r"vhost\..*\.route\..*"]
ANNOTATIONS = {"prefix": "sidecar.istio.io/statsInclusionPrefixes",
               "suffix": "sidecar.istio.io/statsInclusionSuffixes",
               "safe_regex": "sidecar.istio.io/statsInclusionRegexps"}
PROXY_CONFIG_KEYS = {"prefix": "inclusionPrefixes", "suffix": "inclusionSuffixes", "safe_regex": "inclusionRegexps"}


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def stats_inclusion(annotations: dict, proxy_config: dict) -> dict:
    """``{"prefix": [...], "suffix": [...], "safe_regex": [...]}``: Istio's defaults plus what the pod asks for."""
    wanted = {"prefix": list(DEFAULT_PREFIXES), "suffix": list(DEFAULT_SUFFIXES), "safe_regex": list(DEFAULT_REGEXPS)}
    matcher = (proxy_config or {}).get("proxyStatsMatcher") or {}
    for kind in wanted:
        for value in _split(annotations.get(ANNOTATIONS[kind])) + list(matcher.get(PROXY_CONFIG_KEYS[kind]) or []):
            if value not in wanted[kind]:
                wanted[kind].append(value)
    return wanted


def stats_matcher(inclusion: dict) -> dict:
    patterns = [{"prefix": p} for p in inclusion["prefix"]] + [{"suffix": s} for s in inclusion["suffix"]]
    patterns += [{"safe_regex": {"regex": r}} for r in inclusion["safe_regex"]]
    return {"inclusion_list": {"patterns": patterns}}


def _static_http_listener(name: str, port: int, path: str, cluster: str, rewrite: str | None = None) -> dict:
    route = {"cluster": cluster, "timeout": "0s"}
    if rewrite:
        route["prefix_rewrite"] = rewrite
    return {"name": name, "address": xds._address("0.0.0.0", port), "filter_chains": [{"filters": [{
        "name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": xds.HCM, "stat_prefix": name, "codec_type": "AUTO",
            "route_config": {"virtual_hosts": [{"name": "backend", "domains": ["*"], "routes": [
                {"match": {"prefix": path}, "route": route}]}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": xds.ROUTER}}]}}]}]}


def _local_cluster(name: str, port: int) -> dict:
    return {"name": name, "type": "STATIC", "connect_timeout": "0.250s", "load_assignment": {
        "cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": xds._address("127.0.0.1", port)}}]}]}}


def bootstrap(*, kind: str, folder: str, ip: str, pod: str, namespace: str, service_account: str,
              workload: str, labels: dict, annotations: dict, proxy_config: dict) -> dict:
    folder = folder.rstrip("/")
    node_id = f"{kind}~{ip}~{pod}.{namespace}~{namespace}.svc.cluster.local"
    return {
        "node": {"id": node_id, "cluster": f"{labels.get('app') or workload}.{namespace}", "metadata": {
            "NAMESPACE": namespace, "NAME": pod, "INSTANCE_IPS": ip, "SERVICE_ACCOUNT": service_account,
            "WORKLOAD_NAME": workload, "CLUSTER_ID": "Kubernetes", "MESH_ID": "cluster.local",
            "LABELS": labels, "ANNOTATIONS": annotations, "PROXY_CONFIG": proxy_config,
            "ISTIO_VERSION": "1.20.8", "INTERCEPTION_MODE": "REDIRECT"}},
        "admin": {"address": xds._address("127.0.0.1", ADMIN_PORT),
                  "access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
                      "@type": T + "envoy.extensions.access_loggers.file.v3.FileAccessLog", "path": "/dev/null"}}]},
        "stats_config": {"use_all_default_tags": False,
                         "stats_matcher": stats_matcher(stats_inclusion(annotations, proxy_config))},
        "dynamic_resources": {
            "lds_config": {"path_config_source": {"path": f"{folder}/{xds.LDS_FILE}"}, "resource_api_version": "V3"},
            "cds_config": {"path_config_source": {"path": f"{folder}/{xds.CDS_FILE}"}, "resource_api_version": "V3"}},
        "static_resources": {
            "listeners": [_static_http_listener("0.0.0.0_15021", STATUS_PORT, "/healthz/ready", "agent"),
                          _static_http_listener("0.0.0.0_15090", PROMETHEUS_PORT, "/stats/prometheus",
                                                "prometheus_stats")],
            "clusters": [_local_cluster("agent", AGENT_PORT), _local_cluster("prometheus_stats", ADMIN_PORT)]},
    }


def render(**kwargs) -> bytes:
    return json.dumps(bootstrap(**kwargs), indent=1).encode()
