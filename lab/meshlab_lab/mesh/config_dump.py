"""Render a proxy config as an Envoy ``/config_dump`` in the shape a modern Istio sidecar returns.

Only the parts the lab's behaviour really follows are rendered (listeners, clusters, secrets, bootstrap
node); the field names and nesting are Envoy's v3 admin API.
"""
import base64
import time

T = "type.googleapis.com/"
DOWNSTREAM_TLS = T + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
UPSTREAM_TLS = T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
INBOUND_LISTENER = "0.0.0.0_15006"
OUTBOUND_LISTENER = "0.0.0.0_15001"
TLS_PARAMS = {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"}
INBOUND_ALPN = ["istio-peer-exchange", "h2", "http/1.1"]
OUTBOUND_ALPN = ["istio-peer-exchange", "istio"]


def _sds(name: str) -> dict:
    return {"name": name, "sds_config": {"api_config_source": {
        "api_type": "GRPC", "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}],
        "set_node_on_first_message_only": True, "transport_api_version": "V3"},
        "initial_fetch_timeout": "0s", "resource_api_version": "V3"}}


def _stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + "Z"


def downstream_tls() -> dict:
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": DOWNSTREAM_TLS,
        "common_tls_context": {
            "tls_params": TLS_PARAMS, "alpn_protocols": INBOUND_ALPN,
            "tls_certificate_sds_secret_configs": [_sds("default")],
            "combined_validation_context": {
                "default_validation_context": {"match_subject_alt_names": [{"prefix": "spiffe://cluster.local/"}]},
                "validation_context_sds_secret_config": _sds("ROOTCA")}},
        "require_client_certificate": True}}


def upstream_tls(cluster: dict) -> dict:
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": UPSTREAM_TLS,
        "common_tls_context": {
            "tls_params": TLS_PARAMS, "alpn_protocols": OUTBOUND_ALPN,
            "tls_certificate_sds_secret_configs": [_sds("default")],
            "combined_validation_context": {
                "default_validation_context": {},
                "validation_context_sds_secret_config": _sds("ROOTCA")}},
        "sni": sni(cluster)}}


def sni(cluster: dict) -> str:
    return f"outbound_.{cluster['port']}_.{cluster.get('subset') or ''}_.{cluster['host']}"


def _inbound_chains(mode: str, port: int | None) -> list[dict]:
    if port is None:
        match = {"prefix_ranges": [{"address_prefix": "0.0.0.0", "prefix_len": 0}]}
        name = "virtualInbound"
    else:
        match = {"destination_port": port}
        name = f"0.0.0.0_{port}"
    filters = [{"name": "istio_authn"}, {"name": "istio.metadata_exchange"},
               {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                   "@type": T + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                   "stat_prefix": f"inbound|{port or 0}||", "cluster": f"inbound|{port or 0}||"}}]
    chains = []
    if mode in ("STRICT", "PERMISSIVE"):
        chains.append({"filter_chain_match": dict(match, transport_protocol="tls"), "filters": filters,
                       "transport_socket": downstream_tls(), "name": name})
    if mode in ("PERMISSIVE", "DISABLE"):
        chains.append({"filter_chain_match": dict(match, transport_protocol="raw_buffer"), "filters": filters,
                       "name": name})
    return chains


def _listener(name: str, port: int, version: str, updated: str, **fields) -> dict:
    listener = {"@type": T + "envoy.config.listener.v3.Listener", "name": name,
                "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}}}
    listener.update(fields)
    return {"name": name, "active_state": {"version_info": version, "listener": listener, "last_updated": updated}}


def listeners(config: dict, version: str, updated: str) -> dict:
    if config["kind"] == "router":
        ports = sorted({s["port"] for s in config.get("gateway", {}).get("servers", [])})
        dynamic = [_listener(f"0.0.0.0_{p}", p, version, updated, traffic_direction="OUTBOUND", filter_chains=[{
            "filters": [{"name": "envoy.filters.network.http_connection_manager"}]}]) for p in ports]
        return {"@type": T + "envoy.admin.v3.ListenersConfigDump", "version_info": version,
                "dynamic_listeners": dynamic}
    inbound = config["inbound"]
    chains = [{"filter_chain_match": {"destination_port": 15006}, "name": "virtualInbound-blackhole",
               "filters": [{"name": "envoy.filters.network.tcp_proxy"}]}]
    chains += _inbound_chains(inbound["default"], None)
    for port, mode in sorted(inbound.get("ports", {}).items(), key=lambda item: int(item[0])):
        chains += _inbound_chains(mode, int(port))
    dynamic = [
        _listener("virtualOutbound", 15001, version, updated, use_original_dst=True, traffic_direction="OUTBOUND",
                  filter_chains=[{"name": "virtualOutbound-catchall-tcp", "filters": [
                      {"name": "envoy.filters.network.tcp_proxy"}]}]),
        _listener("virtualInbound", 15006, version, updated, traffic_direction="INBOUND", filter_chains=chains,
                  listener_filters=[{"name": "envoy.filters.listener.original_dst"},
                                    {"name": "envoy.filters.listener.tls_inspector"}]),
    ]
    return {"@type": T + "envoy.admin.v3.ListenersConfigDump", "version_info": version,
            "dynamic_listeners": dynamic}


def _cluster(cluster: dict) -> dict:
    body = {"@type": T + "envoy.config.cluster.v3.Cluster", "name": cluster["name"], "type": "EDS",
            "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"},
                                   "service_name": cluster["name"]},
            "connect_timeout": "10s"}
    if cluster["tls"] == "ISTIO_MUTUAL":
        body["transport_socket"] = upstream_tls(cluster)
    elif cluster["tls"] == "AUTO":
        # auto mTLS: TLS only towards endpoints labelled tlsMode=istio (those with a sidecar)
        body["transport_socket_matches"] = [
            {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": upstream_tls(cluster)},
            {"name": "tlsMode-disabled", "match": {},
             "transport_socket": {"name": "envoy.transport_sockets.raw_buffer", "typed_config": {
                 "@type": T + "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}}]
    return body


def clusters(config: dict, version: str, updated: str) -> dict:
    dynamic = [{"version_info": version, "cluster": _cluster(c), "last_updated": updated}
               for c in config.get("clusters", [])]
    static = [{"cluster": {"@type": T + "envoy.config.cluster.v3.Cluster", "name": name, "type": "STATIC"},
               "last_updated": updated} for name in ("prometheus_stats", "agent", "sds-grpc", "xds-grpc")]
    return {"@type": T + "envoy.admin.v3.ClustersConfigDump", "version_info": version,
            "static_clusters": static, "dynamic_active_clusters": dynamic}


def secrets(cert_pem: bytes, root_pem: bytes, version: str, updated: str) -> dict:
    def entry(name, secret):
        return {"name": name, "version_info": version, "last_updated": updated,
                "secret": dict({"@type": T + "envoy.extensions.transport_sockets.tls.v3.Secret", "name": name},
                               **secret)}
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    return {"@type": T + "envoy.admin.v3.SecretsConfigDump", "dynamic_active_secrets": [
        entry("default", {"tls_certificate": {"certificate_chain": {"inline_bytes": b64(cert_pem)},
                                              "private_key": {"inline_bytes": b64(b"[redacted]")}}}),
        entry("ROOTCA", {"validation_context": {"trusted_ca": {"inline_bytes": b64(root_pem)}}})]}


def bootstrap(config: dict, updated: str) -> dict:
    node = config.get("node", {})
    kind = "router" if config["kind"] == "router" else "sidecar"
    ns = node.get("namespace", "")
    return {"@type": T + "envoy.admin.v3.BootstrapConfigDump", "last_updated": updated, "bootstrap": {
        "node": {"id": f"{kind}~{node.get('ip', '')}~{node.get('pod', '')}.{ns}~{ns}.svc.cluster.local",
                 "cluster": f"{node.get('pod', '')}.{ns}",
                 "metadata": {"NAMESPACE": ns, "NAME": node.get("pod", ""), "INSTANCE_IPS": node.get("ip", ""),
                              "SERVICE_ACCOUNT": node.get("service_account", ""), "CLUSTER_ID": "Kubernetes"}},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15000}}}}}


def config_dump(config: dict, cert_pem: bytes, root_pem: bytes, loaded_at: float) -> dict:
    version = config.get("version", "")
    updated = _stamp(loaded_at)
    return {"configs": [bootstrap(config, updated), clusters(config, version, updated),
                        listeners(config, version, updated), secrets(cert_pem, root_pem, version, updated)]}
