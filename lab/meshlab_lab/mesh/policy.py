"""Istio's security rules, re-implemented for the lab (never imported from the collection).

- ``peer_auth_mode``: effective PeerAuthentication mode of a workload port
  (mesh root namespace < workload namespace < workload selector, ``portLevelMtls``, UNSET inherits).
- ``pick_destination_rule`` / ``cluster_tls``: which DestinationRule applies to a client calling a host
  (client namespace, then the host's namespace, then the root namespace; in each, exact host beats the
  longest wildcard, which beats ``*``) and the TLS mode it sets for a port/subset, with auto mTLS.
"""

DEFAULT_MODE = "PERMISSIVE"
DOMAIN = "svc.cluster.local"


def labels_of(obj: dict) -> dict:
    return obj.get("metadata", {}).get("labels") or {}


def selector_matches(selector: dict | None, labels: dict) -> bool:
    match = (selector or {}).get("matchLabels") or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def _created(obj: dict) -> tuple:
    meta = obj.get("metadata", {})
    return meta.get("creationTimestamp") or "", meta.get("name", "")


def _mode(spec_mtls: dict | None) -> str | None:
    mode = (spec_mtls or {}).get("mode")
    return None if mode in (None, "", "UNSET") else mode


def peer_auth_mode(peer_auths: list[dict], root_ns: str, namespace: str, labels: dict, port: int | None) -> str:
    in_ns = [p for p in peer_auths if p["metadata"]["namespace"] == namespace]
    in_root = [p for p in peer_auths if p["metadata"]["namespace"] == root_ns]
    mesh = sorted((p for p in in_root if not p.get("spec", {}).get("selector")), key=_created)
    ns_wide = sorted((p for p in in_ns if not p.get("spec", {}).get("selector")), key=_created)
    workload = sorted((p for p in in_ns if selector_matches(p.get("spec", {}).get("selector"), labels)),
                      key=_created)
    mode = DEFAULT_MODE
    if mesh:
        mode = _mode(mesh[0].get("spec", {}).get("mtls")) or mode
    if ns_wide:
        mode = _mode(ns_wide[0].get("spec", {}).get("mtls")) or mode
    if workload:
        spec = workload[0].get("spec", {})
        mode = _mode(spec.get("mtls")) or mode
        if port is not None:
            port_level = (spec.get("portLevelMtls") or {}).get(str(port)) or \
                (spec.get("portLevelMtls") or {}).get(port)
            mode = _mode(port_level) or mode
    return mode


def fqdn(host: str, namespace: str) -> str:
    """Short names in Istio resources are relative to the resource's namespace."""
    if host == "*" or host.startswith("*."):
        return host
    if "." not in host:
        return f"{host}.{namespace}.{DOMAIN}"
    return host


def host_specificity(pattern: str, host: str) -> int | None:
    """Higher is more specific; None when the pattern does not match the host."""
    if pattern == host:
        return 10_000
    if pattern == "*":
        return 0
    if pattern.startswith("*.") and host.endswith(pattern[1:]):
        return len(pattern)
    return None


def pick_destination_rule(rules: list[dict], client_ns: str, host: str, root_ns: str) -> dict | None:
    host_ns = host.split(".")[1] if host.endswith("." + DOMAIN) and host.count(".") >= 4 else None
    for namespace in dict.fromkeys(n for n in (client_ns, host_ns, root_ns) if n):
        best, best_score = None, -1
        for rule in sorted(rules, key=_created):
            meta = rule["metadata"]
            if meta["namespace"] != namespace:
                continue
            export = rule.get("spec", {}).get("exportTo") or ["*"]
            if namespace != client_ns and "*" not in export:
                continue
            score = host_specificity(fqdn(rule.get("spec", {}).get("host", ""), namespace), host)
            if score is not None and score > best_score:
                best, best_score = rule, score
        if best is not None:
            return best
    return None


def _tls_of(policy: dict | None, port: int) -> str | None:
    if not policy:
        return None
    for setting in policy.get("portLevelSettings") or []:
        if (setting.get("port") or {}).get("number") == port and (setting.get("tls") or {}).get("mode"):
            return setting["tls"]["mode"]
    return (policy.get("tls") or {}).get("mode")


def cluster_tls(rule: dict | None, port: int, subset: str, auto_mtls: bool) -> str:
    """ISTIO_MUTUAL, DISABLE or AUTO (decided per endpoint) for ``outbound|port|subset|host``."""
    mode = None
    if rule:
        spec = rule.get("spec", {})
        subset_policy = next((s.get("trafficPolicy") for s in spec.get("subsets") or []
                              if s.get("name") == subset), None) if subset else None
        mode = _tls_of(subset_policy, port) or _tls_of(spec.get("trafficPolicy"), port)
    if mode == "ISTIO_MUTUAL":
        return "ISTIO_MUTUAL"
    if mode in ("DISABLE", "SIMPLE", "MUTUAL"):
        return "DISABLE"  # SIMPLE/MUTUAL (app-level TLS origination) are not emulated: sent as is
    return "AUTO" if auto_mtls else "DISABLE"


def subsets_of(rule: dict | None) -> list[dict]:
    return [s for s in (rule or {}).get("spec", {}).get("subsets") or [] if s.get("name")]
