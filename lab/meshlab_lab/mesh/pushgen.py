"""Compute each proxy's config (the ``proxy-config.json`` contract of proxy_config.py) from a Snapshot."""
from meshlab_lab.mesh import policy
from meshlab_lab.mesh.snapshot import Snapshot

SIDECAR_LABEL = "security.istio.io/tlsMode"
MEMBER_LABEL = "maistra.io/member-of"


class MeshView:
    """Derived facts about one control plane (SMCP in ``root_ns``) over a Snapshot."""

    def __init__(self, snap: Snapshot, smcp: dict):
        self.snap = snap
        self.smcp = smcp
        self.root_ns = smcp["metadata"]["namespace"]
        security = (smcp.get("spec") or {}).get("security") or {}
        self.auto_mtls = ((security.get("dataPlane") or {}).get("automtls")) is not False
        logging = ((smcp.get("spec") or {}).get("proxy") or {}).get("accessLogging") or {}
        self.access_log_file = ((logging.get("file") or {}).get("name")) or None
        self.members = {self.root_ns} | {
            n["metadata"]["name"] for n in snap.list("namespaces") if policy.labels_of(n).get(MEMBER_LABEL) ==
            self.root_ns}
        self.peer_auths = [p for p in snap.list("peerauthentications") if p["metadata"]["namespace"] in self.members]
        self.rules = [r for r in snap.list("destinationrules") if r["metadata"]["namespace"] in self.members]
        self.pods_by_ip = {p.get("status", {}).get("podIP"): p for p in snap.list("pods")
                           if p["metadata"]["namespace"] in self.members and p.get("status", {}).get("podIP")}

    def server_mode(self, pod: dict, port: int) -> str:
        return policy.peer_auth_mode(self.peer_auths, self.root_ns, pod["metadata"]["namespace"],
                                     policy.labels_of(pod), port)

    def endpoint_mtls(self, address: str, port: int) -> bool:
        """Auto mTLS: TLS only to pods with the sidecar label whose own policy does not DISABLE mTLS."""
        pod = self.pods_by_ip.get(address)
        if not pod or policy.labels_of(pod).get(SIDECAR_LABEL) != "istio":
            return False
        return self.server_mode(pod, port) != "DISABLE"

    def services(self) -> list[dict]:
        return [s for s in self.snap.list("services") if s["metadata"]["namespace"] in self.members]

    def endpoints_for(self, service: dict, port: dict) -> list[dict]:
        meta = service["metadata"]
        endpoints = self.snap.get("endpoints", meta["namespace"], meta["name"]) or {}
        found = []
        for subset in endpoints.get("subsets") or []:
            ports = subset.get("ports") or []
            match = next((p for p in ports if p.get("name") == port.get("name")), None) if len(ports) > 1 else \
                (ports[0] if ports else None)
            if match is None:
                continue
            for address in subset.get("addresses") or []:
                found.append({"address": address["ip"], "port": match["port"],
                              "mtls": self.endpoint_mtls(address["ip"], match["port"])})
        return found

    def clusters_for(self, client_ns: str) -> tuple[list[dict], dict]:
        clusters, vips = [], {}
        for service in self.services():
            meta = service["metadata"]
            host = f"{meta['name']}.{meta['namespace']}.{policy.DOMAIN}"
            cluster_ip = (service.get("spec") or {}).get("clusterIP")
            rule = policy.pick_destination_rule(self.rules, client_ns, host, self.root_ns)
            for port in (service.get("spec") or {}).get("ports") or []:
                if port.get("protocol", "TCP") != "TCP":
                    continue
                endpoints = self.endpoints_for(service, port)
                name = f"outbound|{port['port']}||{host}"
                protocol = port_protocol(port)
                clusters.append(self._cluster(name, host, port["port"], "", rule, endpoints, protocol))
                if cluster_ip and cluster_ip != "None":
                    vips[f"{cluster_ip}:{port['port']}"] = name
                for subset in policy.subsets_of(rule):
                    wanted = subset.get("labels") or {}
                    chosen = [e for e in endpoints
                              if all(policy.labels_of(self.pods_by_ip.get(e["address"], {})).get(k) == v
                                     for k, v in wanted.items())]
                    clusters.append(self._cluster(f"outbound|{port['port']}|{subset['name']}|{host}", host,
                                                  port["port"], subset["name"], rule, chosen, protocol))
        return clusters, vips

    def _cluster(self, name, host, port, subset, rule, endpoints, protocol) -> dict:
        tls = policy.cluster_tls(rule, port, subset, self.auto_mtls)
        return {"name": name, "host": host, "port": port, "subset": subset, "tls": tls, "endpoints": endpoints,
                "protocol": protocol,
                "destination_rule": f"{rule['metadata']['namespace']}/{rule['metadata']['name']}" if rule else None}

    def inbound_for(self, pod: dict) -> dict:
        ports, protocols = set(), {}
        for container in pod.get("spec", {}).get("containers") or []:
            if container.get("name") == "istio-proxy":
                continue
            for port in container.get("ports") or []:
                if port.get("containerPort"):
                    ports.add(port["containerPort"])
                    protocols.setdefault(str(port["containerPort"]), port_protocol(port))
        ns = pod["metadata"]["namespace"]
        for service in self.services():
            selector = (service.get("spec") or {}).get("selector") or {}
            if service["metadata"]["namespace"] == ns and selector and all(
                    policy.labels_of(pod).get(k) == v for k, v in selector.items()):
                for port in service["spec"].get("ports") or []:
                    if isinstance(port.get("targetPort"), int):
                        ports.add(port["targetPort"])
                        protocols[str(port["targetPort"])] = port_protocol(port)  # the Service port's name wins
        return {"default": self.server_mode(pod, None), "ports": {str(p): self.server_mode(pod, p) for p in ports},
                "protocols": {str(p): protocols.get(str(p), "TCP") for p in ports}}

    def gateway_for(self, pod: dict) -> dict:
        ns, labels = pod["metadata"]["namespace"], policy.labels_of(pod)
        target = {}
        for service in self.services():
            selector = (service.get("spec") or {}).get("selector") or {}
            if service["metadata"]["namespace"] == ns and selector and all(labels.get(k) == v
                                                                           for k, v in selector.items()):
                for port in service["spec"].get("ports") or []:
                    if isinstance(port.get("targetPort"), int):
                        target[port["port"]] = port["targetPort"]
        servers, routes, gateways = [], [], []
        for gw in self.snap.list("gateways"):
            selector = (gw.get("spec") or {}).get("selector") or {}
            if gw["metadata"]["namespace"] not in self.members or not selector or not all(
                    labels.get(k) == v for k, v in selector.items()):
                continue
            gateways.append(gw)
            for server in gw["spec"].get("servers") or []:
                number = (server.get("port") or {}).get("number")
                protocol = ((server.get("port") or {}).get("protocol") or "HTTP").upper()
                if number is None or protocol not in ("HTTP", "HTTP2"):
                    continue  # HTTPS/TLS gateway servers are not emulated
                servers.append({"port": target.get(number, number), "hosts": server.get("hosts") or ["*"],
                                "gateway": f"{gw['metadata']['namespace']}/{gw['metadata']['name']}"})
        for vs in sorted(self.snap.list("virtualservices"), key=policy._created):
            vs_ns = vs["metadata"]["namespace"]
            if vs_ns not in self.members:
                continue
            spec = vs.get("spec") or {}
            bound = {g if "/" in g else f"{vs_ns}/{g}" for g in spec.get("gateways") or []}
            for server in servers:
                if server["gateway"] not in bound:
                    continue
                for http in spec.get("http") or []:
                    destination = max(http.get("route") or [{}], key=lambda r: r.get("weight", 100)).get(
                        "destination") or {}
                    if not destination.get("host"):
                        continue
                    host = policy.fqdn(destination["host"], vs_ns)
                    port = (destination.get("port") or {}).get("number") or self._only_port(host)
                    subset = destination.get("subset") or ""
                    matches = [m.get("uri") for m in http.get("match") or [] if m.get("uri")]
                    routes.append({"port": server["port"], "hosts": spec.get("hosts") or ["*"],
                                   "server_hosts": [h.split("/", 1)[-1] for h in server["hosts"]],
                                   "match": matches, "cluster": f"outbound|{port}|{subset}|{host}"})
        return {"servers": [{"port": s["port"], "hosts": s["hosts"]} for s in servers], "routes": routes}

    def _only_port(self, host: str):
        name, ns = host.split(".")[:2]
        service = self.snap.get("services", ns, name)
        ports = (service or {}).get("spec", {}).get("ports") or []
        return ports[0]["port"] if len(ports) == 1 else None


def port_protocol(port: dict) -> str:
    """Istio's protocol selection: ``appProtocol``, else the port name's prefix (``http``, ``http-x``); else TCP."""
    name = (port.get("appProtocol") or port.get("name") or "").lower()
    prefix = name.split("-", 1)[0]
    return "HTTP" if prefix in ("http", "http2", "grpc", "grpc-web") else "TCP"


def proxy_kind(pod: dict) -> str | None:
    """sidecar for injected pods, router for gateway pods (proxyv2 running ``proxy router``), else None."""
    containers = pod.get("spec", {}).get("containers") or []
    for container in containers:
        if (container.get("args") or [])[:2] == ["proxy", "router"]:
            return "router"  # gateways may name their container istio-proxy too
    for container in containers:
        if container.get("name") == "istio-proxy" or (container.get("args") or [])[:2] == ["proxy", "sidecar"]:
            return "sidecar"
    return None


def proxy_config(view: MeshView, pod: dict) -> dict:
    """The config body for one proxy (without version/pushed_at)."""
    meta = pod["metadata"]
    kind = proxy_kind(pod)
    clusters, vips = view.clusters_for(meta["namespace"])
    labels = policy.labels_of(pod)
    config = {"kind": kind, "node": {"namespace": meta["namespace"], "pod": meta["name"],
                                     "ip": pod.get("status", {}).get("podIP", ""),
                                     "service_account": pod["spec"].get("serviceAccountName") or "default",
                                     "workload": workload_name(pod), "app": labels.get("app", ""),
                                     "version": labels.get("version", "")},
              "inbound": view.inbound_for(pod), "clusters": clusters, "vips": vips,
              "access_log_file": view.access_log_file}
    if kind == "router":
        gateway = view.gateway_for(pod)
        known = {c["name"] for c in clusters}
        gateway["routes"] = [r for r in gateway["routes"] if r["cluster"] in known]
        config["gateway"] = gateway
    return config


def workload_name(pod: dict) -> str:
    """The workload as Istio names it: a ReplicaSet-owned pod's Deployment, else the owner, else the pod."""
    meta = pod["metadata"]
    owner = next(iter(meta.get("ownerReferences") or []), None)
    if owner is None:
        return meta["name"]
    if owner.get("kind") == "ReplicaSet" and "pod-template-hash" in policy.labels_of(pod):
        return owner["name"][: -len(policy.labels_of(pod)["pod-template-hash"]) - 1]
    return owner["name"]
