"""The lab's istiod, Envoy side: turn one proxy's intent (pushgen's dict) into Envoy v3 xDS resources.

The resources follow the shapes a modern Istio (1.19-1.30) pushes to a sidecar, so the collection reads a
real Envoy's ``/config_dump`` that looks like a real cluster's:

- ``virtualInbound`` on 15006: original_dst + tls_inspector + http_inspector listener filters; per inbound
  port the chains Istio generates for the port's effective PeerAuthentication mode:
  STRICT     -> ``{destination_port, transport_protocol: tls}`` with mutual TLS;
  PERMISSIVE -> ``{destination_port, transport_protocol: tls, application_protocols: istio ALPNs}`` with
  mutual TLS, plus ``{destination_port, transport_protocol: raw_buffer}`` in plaintext;
  DISABLE    -> ``{destination_port}`` in plaintext (TLS bytes reach the plaintext chain, as in Istio);
  and the same three shapes without a port for the catch-all (``virtualInbound``) chains.
- ``virtualOutbound`` on 15001 (``use_original_dst``), per-port HTTP listeners ``0.0.0.0_<port>`` and
  ``<vip>_<port>`` TCP listeners, both ``bind_to_port: false``, routes ``<port>`` with one virtual host per
  service; ``PassthroughCluster`` / ``InboundPassthroughClusterIpv4`` (ORIGINAL_DST, 127.0.0.6 bind).
- Clusters ``outbound|<port>|<subset>|<fqdn>`` (SNI ``outbound_.<port>_.<subset>_.<fqdn>``) with an
  UpstreamTlsContext for ISTIO_MUTUAL or, with auto mTLS, ``transport_socket_matches`` on the endpoint
  metadata ``tlsMode: istio``; ``inbound|<port>||`` towards the app.
- Secrets ``default`` (workload certificate) and ``ROOTCA`` (mesh root) over SDS.

Where the lab differs from Istio (delivery only; Envoy enforces what it is given):
- xDS is file based: ``lds.json`` / ``cds.json`` / ``secret-default.json`` / ``secret-rootca.json`` in the
  proxy's folder, each a DiscoveryResponse written atomically; Envoy watches the files. SDS configs
  therefore name a ``path_config_source`` where Istio names the ``sds-grpc`` cluster.
- Outbound clusters carry their endpoints inline (``STATIC`` + ``load_assignment``) instead of EDS.
- Istio's own Envoy filters (istio.metadata_exchange, istio.stats, istio.alpn) do not exist in upstream
  Envoy: client metadata travels in the ``x-envoy-peer-metadata`` header (telemetry.py), the client ALPN
  is set on the cluster, and the telemetry comes from access logs (telemetry.py).
"""
from meshlab_lab.mesh import telemetry

T = "type.googleapis.com/"
LISTENER = T + "envoy.config.listener.v3.Listener"
CLUSTER = T + "envoy.config.cluster.v3.Cluster"
SECRET = T + "envoy.extensions.transport_sockets.tls.v3.Secret"
HCM = T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
TCP_PROXY = T + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
ROUTER = T + "envoy.extensions.filters.http.router.v3.Router"
DOWNSTREAM_TLS = T + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
UPSTREAM_TLS = T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
RAW_BUFFER = T + "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

INBOUND_PORT, OUTBOUND_PORT = 15006, 15001
TRUST_DOMAIN = "cluster.local"
# ALPN values Istio's clients announce for mTLS (istio.alpn), and what its inbound chains match on.
MTLS_ALPNS = ["istio-peer-exchange", "istio", "istio-http/1.0", "istio-http/1.1", "istio-h2"]
MTLS_TCP_ALPNS = ["istio-peer-exchange", "istio"]
CLIENT_HTTP_ALPNS = ["istio-http/1.1", "istio"]
TLS_PARAMS = {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"}
# Istio's default access log format (meshConfig.accessLogFormat unset, TEXT encoding).
ISTIO_TEXT_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% '
    '%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%" '
    '%BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" '
    '"%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    '%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% '
    '%ROUTE_NAME%\n')

LDS_FILE, CDS_FILE = "lds.json", "cds.json"
SECRET_FILES = {"default": "secret-default.json", "ROOTCA": "secret-rootca.json"}
TELEMETRY_FILE = "telemetry.log"


class Builder:
    """Builds the resources of one proxy. ``folder`` is where the proxy's xDS files live (absolute path)."""

    def __init__(self, config: dict, folder: str):
        self.config = config
        self.folder = folder.rstrip("/")
        self.kind = config["kind"]
        self.reporter_out = "source"
        node = config.get("node") or {}
        self.peer_header = telemetry.peer_metadata_header(
            node.get("workload") or node.get("pod", ""), node.get("namespace", ""), node.get("app", ""),
            node.get("version", ""), node.get("service_account", "default"))

    # ---------------------------------------------------------------- building blocks
    def sds(self, name: str) -> dict:
        return {"name": name, "sds_config": {"path_config_source": {"path": f"{self.folder}/{SECRET_FILES[name]}"},
                                             "resource_api_version": "V3", "initial_fetch_timeout": "0s"}}

    def access_logs(self, reporter: str, kind: str) -> list[dict]:
        logs = [telemetry.access_log(f"{self.folder}/{TELEMETRY_FILE}", reporter, kind)]
        path = self.config.get("access_log_file")
        if path:
            log_format = {"text_format_source": {"inline_string": ISTIO_TEXT_FORMAT}}
            if path == "/dev/stdout":  # the process's own stdout (reopening /dev/stdout needs rights on the log)
                logs.append({"name": "envoy.access_loggers.stdout", "typed_config": {
                    "@type": T + "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                    "log_format": log_format}})
            else:
                logs.append({"name": "envoy.access_loggers.file", "typed_config": {
                    "@type": T + "envoy.extensions.access_loggers.file.v3.FileAccessLog", "path": path,
                    "log_format": log_format}})
        return logs

    def listener_access_log(self) -> dict:
        """Istio logs connections no filter chain took (flag NR) on the listener itself, when logging is on."""
        if not self.config.get("access_log_file"):
            return {}
        log = dict(self.access_logs("destination", "tcp")[-1], filter={"response_flag_filter": {"flags": ["NR"]}})
        return {"access_log": [log]}

    def common_tls(self, alpn: list[str]) -> dict:
        """Workload certificate and mesh root over SDS, peers must carry a SPIFFE ID of the trust domain."""
        return {"tls_params": TLS_PARAMS, "alpn_protocols": alpn,
                "tls_certificate_sds_secret_configs": [self.sds("default")],
                "combined_validation_context": {
                    "default_validation_context": {"match_typed_subject_alt_names": [
                        {"san_type": "URI", "matcher": {"prefix": f"spiffe://{TRUST_DOMAIN}/"}}]},
                    "validation_context_sds_secret_config": self.sds("ROOTCA")}}

    def downstream_tls(self) -> dict:
        return {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": DOWNSTREAM_TLS, "common_tls_context": self.common_tls(["h2", "http/1.1"]),
            "require_client_certificate": True}}

    def upstream_tls(self, cluster: dict) -> dict:
        alpn = CLIENT_HTTP_ALPNS if cluster.get("protocol", "HTTP") == "HTTP" else MTLS_TCP_ALPNS
        return {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": UPSTREAM_TLS, "common_tls_context": self.common_tls(alpn), "sni": sni(cluster)}}

    def hcm(self, stat_prefix: str, route_config: dict, reporter: str, **extra) -> dict:
        return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": HCM, "stat_prefix": stat_prefix, "route_config": route_config, **extra,
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
            "access_log": self.access_logs(reporter, "http"),
            "use_remote_address": False, "normalize_path": True, "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
            "upgrade_configs": [{"upgrade_type": "websocket"}], "stream_idle_timeout": "0s"}}

    def tcp_proxy(self, stat_prefix: str, cluster: str, reporter: str) -> dict:
        return {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
            "@type": TCP_PROXY, "stat_prefix": stat_prefix, "cluster": cluster,
            "access_log": self.access_logs(reporter, "tcp")}}

    # ---------------------------------------------------------------- inbound
    def inbound_chains(self, mode: str, port: int | None, protocol: str) -> list[dict]:
        if port is None:
            match, name, cluster = {"prefix_ranges": [{"address_prefix": "0.0.0.0", "prefix_len": 0}]}, \
                "virtualInbound", "InboundPassthroughClusterIpv4"
        else:
            match, name, cluster = {"destination_port": port}, f"0.0.0.0_{port}", f"inbound|{port}||"

        def filters():
            if protocol == "HTTP":
                route = {"name": f"inbound|{port}||", "validate_clusters": False, "virtual_hosts": [{
                    "name": f"inbound|http|{port}", "domains": ["*"], "routes": [{
                        "name": "default", "match": {"prefix": "/"},
                        "route": {"cluster": cluster, "timeout": "0s", "max_stream_duration": {
                            "max_stream_duration": "0s", "grpc_timeout_header_max": "0s"}}}]}]}
                return [self.hcm(f"inbound_0.0.0.0_{port or 0}", route, "destination")]
            return [self.tcp_proxy(cluster, cluster, "destination")]

        chains = []
        if mode == "STRICT":
            chains.append({"name": name, "filter_chain_match": dict(match, transport_protocol="tls"),
                           "filters": filters(), "transport_socket": self.downstream_tls()})
        elif mode == "PERMISSIVE":
            chains.append({"name": name, "filter_chain_match": dict(
                match, transport_protocol="tls", application_protocols=MTLS_ALPNS),
                "filters": filters(), "transport_socket": self.downstream_tls()})
            chains.append({"name": name, "filter_chain_match": dict(match, transport_protocol="raw_buffer"),
                           "filters": filters()})
        else:  # DISABLE: one plaintext chain that matches whatever arrives
            chains.append({"name": name, "filter_chain_match": dict(match), "filters": filters()})
        return chains

    def virtual_inbound(self) -> dict:
        inbound = self.config.get("inbound") or {}
        protocols = inbound.get("protocols") or {}
        chains = [{"name": "virtualInbound-blackhole", "filter_chain_match": {"destination_port": INBOUND_PORT},
                   "filters": [self.tcp_proxy("BlackHoleCluster", "BlackHoleCluster", "destination")]}]
        for port, mode in sorted((inbound.get("ports") or {}).items(), key=lambda item: int(item[0])):
            chains += self.inbound_chains(mode, int(port), protocols.get(str(port), "TCP"))
        chains += self.inbound_chains(inbound.get("default", "PERMISSIVE"), None, "TCP")
        return {"@type": LISTENER, "name": "virtualInbound", "traffic_direction": "INBOUND",
                "address": _address("0.0.0.0", INBOUND_PORT), **self.listener_access_log(),
                "listener_filters": [
                    {"name": "envoy.filters.listener.original_dst", "typed_config": {
                        "@type": T + "envoy.extensions.filters.listener.original_dst.v3.OriginalDst"}},
                    {"name": "envoy.filters.listener.tls_inspector", "typed_config": {
                        "@type": T + "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}},
                    {"name": "envoy.filters.listener.http_inspector", "typed_config": {
                        "@type": T + "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"}}],
                "listener_filters_timeout": "1s", "continue_on_listener_filters_timeout": True,
                "filter_chains": chains}

    # ---------------------------------------------------------------- outbound
    def virtual_hosts(self, port: int) -> list[dict]:
        vips = {}
        for vip_port, name in (self.config.get("vips") or {}).items():
            vips.setdefault(name, vip_port.rsplit(":", 1)[0])
        hosts, own_ns = [], (self.config.get("node") or {}).get("namespace")
        for cluster in self.config.get("clusters") or []:
            if cluster["port"] != port or cluster.get("subset") or cluster.get("protocol", "HTTP") != "HTTP":
                continue
            fqdn = cluster["host"]
            name, ns = fqdn.split(".")[:2]
            # the bare name only for the client's own namespace, as Istio does (domains must be unique)
            names = [fqdn] + ([name] if ns == own_ns else []) + [f"{name}.{ns}", f"{name}.{ns}.svc"]
            names += [vips[cluster["name"]]] if cluster["name"] in vips else []
            hosts.append({"name": f"{fqdn}:{port}", "domains": [d for n in names for d in (n, f"{n}:{port}")],
                          "routes": [{"name": "default", "match": {"prefix": "/"}, "route": {
                              "cluster": cluster["name"], "timeout": "0s",
                              "retry_policy": {"retry_on": "connect-failure,refused-stream,unavailable,"
                                                           "cancelled,retriable-status-codes",
                                               "num_retries": 2, "retry_host_predicate": [{
                                                   "name": "envoy.retry_host_predicates.previous_hosts",
                                                   "typed_config": {"@type": T + "envoy.extensions.retry.host."
                                                                    "previous_hosts.v3.PreviousHostsPredicate"}}],
                                               "host_selection_retry_max_attempts": "5"}}}]})
        hosts.append({"name": "allow_any", "domains": ["*"], "routes": [{
            "name": "allow_any", "match": {"prefix": "/"}, "route": {"cluster": "PassthroughCluster",
                                                                     "timeout": "0s"}}]})
        return hosts

    def route_config(self, name: str, virtual_hosts: list[dict]) -> dict:
        return {"name": name, "virtual_hosts": virtual_hosts, "validate_clusters": False,
                "request_headers_to_add": [{"header": {"key": telemetry.PEER_METADATA_HEADER,
                                                       "value": self.peer_header},
                                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]}

    def outbound_listeners(self) -> list[dict]:
        listeners, http_ports = [], set()
        vips_by_cluster = {}
        for vip_port, name in (self.config.get("vips") or {}).items():
            vips_by_cluster.setdefault(name, []).append(vip_port)
        for cluster in self.config.get("clusters") or []:
            if cluster.get("subset"):
                continue
            if cluster.get("protocol", "HTTP") == "HTTP":
                http_ports.add(cluster["port"])
                continue
            for vip_port in vips_by_cluster.get(cluster["name"], []):
                vip, port = vip_port.rsplit(":", 1)
                listeners.append({
                    "@type": LISTENER, "name": f"{vip}_{port}", "traffic_direction": "OUTBOUND",
                    "address": _address(vip, int(port)), "bind_to_port": False,
                    "filter_chains": [{"filters": [self.tcp_proxy(cluster["name"], cluster["name"], "source")]}]})
        for port in sorted(http_ports):
            listeners.append({
                "@type": LISTENER, "name": f"0.0.0.0_{port}", "traffic_direction": "OUTBOUND",
                "address": _address("0.0.0.0", port), "bind_to_port": False,
                "filter_chains": [{"filters": [self.hcm(f"outbound_0.0.0.0_{port}",
                                                        self.route_config(str(port), self.virtual_hosts(port)),
                                                        "source")]}]})
        return listeners

    def virtual_outbound(self) -> dict:
        return {"@type": LISTENER, "name": "virtualOutbound", "traffic_direction": "OUTBOUND",
                "address": _address("0.0.0.0", OUTBOUND_PORT), "use_original_dst": True,
                "filter_chains": [
                    {"name": "virtualOutbound-blackhole", "filter_chain_match": {"destination_port": OUTBOUND_PORT},
                     "filters": [self.tcp_proxy("BlackHoleCluster", "BlackHoleCluster", "source")]},
                    {"name": "virtualOutbound-catchall-tcp",
                     "filters": [self.tcp_proxy("PassthroughCluster", "PassthroughCluster", "source")]}]}

    # ---------------------------------------------------------------- gateway
    def gateway_listeners(self) -> list[dict]:
        gateway = self.config.get("gateway") or {}
        listeners = []
        for port in sorted({s["port"] for s in gateway.get("servers") or []}):
            hosts = {}
            for route in gateway.get("routes") or []:
                if route["port"] != port:
                    continue
                domains = gateway_domains(route.get("hosts") or ["*"], route.get("server_hosts") or ["*"])
                if not domains:
                    continue
                vhost = hosts.setdefault(tuple(domains), {"name": f"{','.join(domains)}:{port}",
                                                          "domains": domains, "routes": []})
                for match in route.get("match") or [{}]:
                    path = {"path": match["exact"]} if "exact" in match else {"prefix": match.get("prefix", "/")}
                    vhost["routes"].append({"match": path, "route": {"cluster": route["cluster"], "timeout": "0s"}})
            listeners.append({
                "@type": LISTENER, "name": f"0.0.0.0_{port}", "traffic_direction": "OUTBOUND",
                "address": _address("0.0.0.0", port),
                "filter_chains": [{"filters": [self.hcm(f"outbound_0.0.0.0_{port}",
                                                        self.route_config(f"http.{port}", list(hosts.values())),
                                                        "source", strip_any_host_port=True)]}]})
        return listeners

    # ---------------------------------------------------------------- clusters
    def cluster(self, cluster: dict) -> dict:
        endpoints = []
        for endpoint in cluster.get("endpoints") or []:
            lb = {"endpoint": {"address": _address(endpoint["address"], endpoint["port"])}}
            if endpoint.get("mtls"):
                lb["metadata"] = {"filter_metadata": {"envoy.transport_socket_match": {"tlsMode": "istio"}}}
            endpoints.append(lb)
        body = {"@type": CLUSTER, "name": cluster["name"], "type": "STATIC", "connect_timeout": "10s",
                "lb_policy": "LEAST_REQUEST", "common_lb_config": {},
                "circuit_breakers": {"thresholds": [{"max_connections": 4294967295, "max_pending_requests": 4294967295,
                                                     "max_requests": 4294967295, "max_retries": 4294967295}]},
                "load_assignment": {"cluster_name": cluster["name"], "endpoints": [{"lb_endpoints": endpoints}]},
                "metadata": {"filter_metadata": {"istio": {"services": [{
                    "host": cluster["host"], "name": cluster["host"].split(".")[0],
                    "namespace": cluster["host"].split(".")[1]}]}}}}
        if cluster.get("destination_rule"):
            body["metadata"]["filter_metadata"]["istio"]["config"] = \
                "/apis/networking.istio.io/v1alpha3/namespaces/%s/destination-rule/%s" % tuple(
                    cluster["destination_rule"].split("/", 1))
        if cluster.get("protocol", "HTTP") == "HTTP":
            body["typed_extension_protocol_options"] = {HTTP_OPTIONS: {
                "@type": T + HTTP_OPTIONS, "explicit_http_config": {"http_protocol_options": {}},
                "common_http_protocol_options": {"idle_timeout": "3600s"}}}
        if cluster["tls"] == "ISTIO_MUTUAL":
            body["transport_socket"] = self.upstream_tls(cluster)
        elif cluster["tls"] == "AUTO":
            body["transport_socket_matches"] = [
                {"name": "tlsMode-istio", "match": {"tlsMode": "istio"},
                 "transport_socket": self.upstream_tls(cluster)},
                {"name": "tlsMode-disabled", "match": {}, "transport_socket": {
                    "name": "envoy.transport_sockets.raw_buffer", "typed_config": {"@type": RAW_BUFFER}}}]
        return body

    def fixed_clusters(self) -> list[dict]:
        def original_dst(name, bind=None):
            body = {"@type": CLUSTER, "name": name, "type": "ORIGINAL_DST", "connect_timeout": "10s",
                    "lb_policy": "CLUSTER_PROVIDED", "circuit_breakers": {"thresholds": [{
                        "max_connections": 4294967295, "max_pending_requests": 4294967295,
                        "max_requests": 4294967295, "max_retries": 4294967295}]}}
            if bind:
                body["upstream_bind_config"] = {"source_address": {"address": bind, "port_value": 0}}
            return body
        clusters = [{"@type": CLUSTER, "name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "10s"},
                    original_dst("PassthroughCluster")]
        if self.kind == "sidecar":
            clusters.append(original_dst("InboundPassthroughClusterIpv4", "127.0.0.6"))
            inbound = self.config.get("inbound") or {}
            protocols = inbound.get("protocols") or {}
            for port in sorted((inbound.get("ports") or {}), key=int):
                body = original_dst(f"inbound|{port}||", "127.0.0.6")
                if protocols.get(str(port)) == "HTTP":
                    body["typed_extension_protocol_options"] = {HTTP_OPTIONS: {
                        "@type": T + HTTP_OPTIONS, "explicit_http_config": {"http_protocol_options": {}}}}
                clusters.append(body)
        return clusters

    # ---------------------------------------------------------------- the whole set
    def listeners(self) -> list[dict]:
        if self.kind == "router":
            return self.gateway_listeners()
        return [self.virtual_outbound(), self.virtual_inbound()] + self.outbound_listeners()

    def clusters(self) -> list[dict]:
        return self.fixed_clusters() + [self.cluster(c) for c in self.config.get("clusters") or []]


def _covers(pattern: str, host: str) -> bool:
    return pattern == "*" or pattern == host or (pattern.startswith("*.") and host.endswith(pattern[1:]))


def gateway_domains(vs_hosts: list[str], server_hosts: list[str]) -> list[str]:
    """The hosts both the VirtualService and the Gateway server accept, the more specific of each pair (Istio)."""
    found = set()
    for vs_host in vs_hosts:
        for server_host in server_hosts:
            if _covers(server_host, vs_host):
                found.add(vs_host)
            elif _covers(vs_host, server_host):
                found.add(server_host)
    return sorted(found)


def sni(cluster: dict) -> str:
    return f"outbound_.{cluster['port']}_.{cluster.get('subset') or ''}_.{cluster['host']}"


def _address(ip: str, port: int) -> dict:
    return {"socket_address": {"address": ip, "port_value": int(port)}}


def discovery_response(version: str, resources: list[dict]) -> dict:
    return {"version_info": version, "resources": resources}


def secrets(cert_pem: bytes, key_pem: bytes, root_pem: bytes) -> dict:
    """The two SDS secrets of a workload, by name."""
    return {
        "default": {"@type": SECRET, "name": "default", "tls_certificate": {
            "certificate_chain": {"inline_string": cert_pem.decode()},
            "private_key": {"inline_string": key_pem.decode()}}},
        "ROOTCA": {"@type": SECRET, "name": "ROOTCA", "validation_context": {
            "trusted_ca": {"inline_string": root_pem.decode()}}}}


def resources(config: dict, folder: str) -> dict:
    """``{"lds.json": [...listeners], "cds.json": [...clusters]}`` for one proxy."""
    builder = Builder(config, folder)
    return {LDS_FILE: builder.listeners(), CDS_FILE: builder.clusters()}
