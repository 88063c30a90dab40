# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Expectation engine: what should happen when one workload calls another under Istio mTLS settings.

Inputs are PeerAuthentication / DestinationRule objects as ``kubernetes.core.k8s_info`` returns them.
The rules follow Istio's documented behaviour:

* server side (PeerAuthentication): workload policy (non-empty selector matching the server labels,
  outside the root namespace) overrides the namespace-wide policy (no or empty selector), which
  overrides the mesh-wide policy in the root namespace; ``UNSET``
  inherits from the parent level; no policy at all means PERMISSIVE; among several policies at one
  level the oldest wins. ``portLevelMtls`` is only honoured on workload-selector policies and keys
  on the container (target) port.
* client side (DestinationRule): only a client with a sidecar originates TLS. The rule is looked up
  in the client namespace, then the service namespace, then the root namespace, taking the most
  specific host match visible to the client (``exportTo``). Port-level settings replace the
  top-level ``tls`` for that port (they do not inherit), a chosen subset's policy is merged on top.
  Without a ``tls`` setting the client falls back to auto mTLS.

Assumption kept explicit: server applications speak plain HTTP (as bookinfo and nginx do), so any
TLS that reaches the application itself breaks the request.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

PA_MODES = ("UNSET", "DISABLE", "PERMISSIVE", "STRICT")
DR_TLS_MODES = ("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL")
CLUSTER_DOMAIN = "svc.cluster.local"
TLS_MODE_LABEL = "security.istio.io/tlsMode"

CLIENT_KEYS = ("namespace", "labels", "sidecar")
SERVER_KEYS = ("namespace", "labels", "sidecar", "host", "port")


class MtlsPredictError(ValueError):
    """Raised for input the engine cannot reason about; the message says what to fix."""


# ---------------------------------------------------------------- input checks


def _ref(obj):
    meta = obj.get("metadata") or {}
    return "%s/%s" % (meta.get("namespace", "?"), meta.get("name", "?"))


def _check_object(obj, kind, index):
    if not isinstance(obj, dict):
        raise MtlsPredictError("%s #%d must be a mapping (a Kubernetes object), got %s"
                               % (kind, index, type(obj).__name__))
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name") or not meta.get("namespace"):
        raise MtlsPredictError(
            "%s #%d needs metadata.name and metadata.namespace (pass objects as k8s_info returns them)" % (kind, index))
    if obj.get("kind") not in (None, kind):
        raise MtlsPredictError("%s #%d (%s) has kind %r; pass only %s objects in this list"
                               % (kind, index, _ref(obj), obj.get("kind"), kind))
    spec = obj.get("spec")
    if spec is not None and not isinstance(spec, dict):
        raise MtlsPredictError("%s %s: spec must be a mapping" % (kind, _ref(obj)))


def _pa_mode(pa, where):
    mtls = (pa.get("spec") or {}).get("mtls") or {}
    mode = mtls.get("mode", "UNSET") if isinstance(mtls, dict) else mtls
    if mode is None:
        mode = "UNSET"
    if mode not in PA_MODES:
        raise MtlsPredictError("PeerAuthentication %s: %s mode %r is not one of %s"
                               % (_ref(pa), where, mode, ", ".join(PA_MODES)))
    return mode


def _check_peer_authentications(pas):
    if not isinstance(pas, list):
        raise MtlsPredictError("peer_authentications must be a list of PeerAuthentication objects")
    for index, pa in enumerate(pas):
        _check_object(pa, "PeerAuthentication", index)
        _pa_mode(pa, "spec.mtls")
        port_level = (pa.get("spec") or {}).get("portLevelMtls") or {}
        if not isinstance(port_level, dict):
            raise MtlsPredictError("PeerAuthentication %s: portLevelMtls must map port numbers to {mode}" % _ref(pa))
        for port, setting in port_level.items():
            _port_number(port, "PeerAuthentication %s portLevelMtls key" % _ref(pa))
            _pa_mode({"metadata": pa["metadata"], "spec": {"mtls": setting}}, "portLevelMtls[%s]" % port)


def _tls_mode(tls, owner):
    mode = tls.get("mode", "DISABLE")  # proto default of ClientTLSSettings.mode is DISABLE
    if mode not in DR_TLS_MODES:
        raise MtlsPredictError("DestinationRule %s: tls mode %r is not one of %s"
                               % (owner, mode, ", ".join(DR_TLS_MODES)))
    return mode


def _check_destination_rules(drs):
    if not isinstance(drs, list):
        raise MtlsPredictError("destination_rules must be a list of DestinationRule objects")
    for index, dr in enumerate(drs):
        _check_object(dr, "DestinationRule", index)
        spec = dr.get("spec") or {}
        if not spec.get("host"):
            raise MtlsPredictError("DestinationRule %s has no spec.host" % _ref(dr))
        for policy in _policies_of(dr):
            if policy.get("tls") is not None:
                _tls_mode(policy["tls"], _ref(dr))
            for setting in policy.get("portLevelSettings") or []:
                if setting.get("tls") is not None:
                    _tls_mode(setting["tls"], _ref(dr))


def _policies_of(dr):
    spec = dr.get("spec") or {}
    yield spec.get("trafficPolicy") or {}
    for subset in spec.get("subsets") or []:
        yield subset.get("trafficPolicy") or {}


def _port_number(value, what):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise MtlsPredictError("%s must be a port number, got %r" % (what, value)) from None
    if not 0 < number < 65536:
        raise MtlsPredictError("%s must be between 1 and 65535, got %r" % (what, value))
    return number


def _check_endpoint(endpoint, keys, what):
    if not isinstance(endpoint, dict):
        raise MtlsPredictError("%s must be a mapping with keys %s" % (what, ", ".join(keys)))
    missing = [key for key in keys if key not in endpoint]
    if missing:
        raise MtlsPredictError("%s is missing %s (required: %s)" % (what, ", ".join(missing), ", ".join(keys)))
    if not endpoint["namespace"] or not isinstance(endpoint["namespace"], str):
        raise MtlsPredictError("%s.namespace must be a non-empty string" % what)
    if not isinstance(endpoint["labels"], dict):
        raise MtlsPredictError("%s.labels must be a mapping of pod labels" % what)
    if not isinstance(endpoint["sidecar"], bool):
        raise MtlsPredictError("%s.sidecar must be true or false" % what)


def _check_server(server):
    _check_endpoint(server, SERVER_KEYS, "server")
    _port_number(server["port"], "server.port")
    if server.get("target_port") is not None:
        _port_number(server["target_port"], "server.target_port")
    normalise_host(server["host"], server["namespace"])


# ---------------------------------------------------------------- server side


def normalise_host(host, namespace):
    """Expand ``details``, ``details.bookinfo`` and ``details.bookinfo.svc`` to the cluster FQDN."""
    if not isinstance(host, str) or not host.strip(". "):
        raise MtlsPredictError("server.host must be a service name such as details or "
                               "details.bookinfo.svc.cluster.local")
    parts = host.strip().rstrip(".").lower().split(".")
    if len(parts) == 1:
        parts += [namespace, "svc", "cluster", "local"]
    elif len(parts) == 2:
        parts += ["svc", "cluster", "local"]
    elif len(parts) == 3 and parts[2] == "svc":
        parts += ["cluster", "local"]
    return ".".join(parts)


def _age_key(obj):
    meta = obj["metadata"]
    return (meta.get("creationTimestamp") or "", meta["name"])


def _oldest(objs):
    return min(objs, key=_age_key) if objs else None


def _selector_labels(pa):
    """Workload selector labels, or None for a namespace/mesh-level policy (no or empty selector)."""
    selector = (pa.get("spec") or {}).get("selector") or {}
    return selector.get("matchLabels") or None


def _selects(pa, labels):
    wanted = _selector_labels(pa)
    return wanted is not None and all(labels.get(key) == value for key, value in wanted.items())


def _port_mode(pa, port):
    port_level = (pa.get("spec") or {}).get("portLevelMtls") or {}
    for key, setting in port_level.items():
        if int(key) == port:
            return _pa_mode({"metadata": pa["metadata"], "spec": {"mtls": setting}}, "portLevelMtls[%s]" % key)
    return None


def resolve_inbound(peer_authentications, server, root_namespace="istio-system"):
    """Return ``(mode, deciders)``: the effective inbound mode and the ``namespace/name`` refs that set it."""
    _check_peer_authentications(peer_authentications)
    if not isinstance(server, dict) or "namespace" not in server or "labels" not in server:
        raise MtlsPredictError("server must be a mapping with at least namespace and labels")
    namespace, labels = server["namespace"], server["labels"] or {}
    port = server.get("target_port") or server.get("port")

    mesh = _oldest([pa for pa in peer_authentications
                    if pa["metadata"]["namespace"] == root_namespace and _selector_labels(pa) is None])
    in_namespace = [pa for pa in peer_authentications if pa["metadata"]["namespace"] == namespace]
    ns_wide = _oldest([pa for pa in in_namespace if _selector_labels(pa) is None])
    # Istio ignores workload-selector policies in the root namespace.
    workload = _oldest([pa for pa in in_namespace if namespace != root_namespace and _selects(pa, labels)])

    mode, deciders = "PERMISSIVE", []
    for level in (mesh, ns_wide, workload):
        if level is not None and _pa_mode(level, "spec.mtls") != "UNSET":
            mode, deciders = _pa_mode(level, "spec.mtls"), [_ref(level)]
    if workload is not None and port is not None:
        port_mode = _port_mode(workload, int(port))
        if port_mode not in (None, "UNSET"):
            mode, deciders = port_mode, ["%s (portLevelMtls %s)" % (_ref(workload), port)]
    return mode, deciders


def expected_inbound_mode(peer_authentications, server, root_namespace="istio-system"):
    """STRICT, PERMISSIVE or DISABLE: what the server sidecar's inbound listener should enforce."""
    return resolve_inbound(peer_authentications, server, root_namespace)[0]


# ---------------------------------------------------------------- client side


def _dr_host(dr):
    host = dr["spec"]["host"].lower().rstrip(".")
    if host == "*" or "." in host:
        return host
    return "%s.%s.%s" % (host, dr["metadata"]["namespace"], CLUSTER_DOMAIN)  # Istio expands short names only


def _host_score(pattern, fqdn):
    """Higher is more specific; None when the pattern does not match."""
    if pattern == fqdn:
        return (2, len(pattern))
    if pattern == "*":
        return (0, 0)
    if pattern.startswith("*.") and fqdn.endswith(pattern[1:]):
        return (1, len(pattern))
    return None


def _visible(dr, client_namespace):
    if dr["metadata"]["namespace"] == client_namespace:
        return True  # a rule is always visible inside its own namespace
    export_to = (dr.get("spec") or {}).get("exportTo") or ["*"]
    return "*" in export_to or client_namespace in export_to


def select_destination_rule(destination_rules, client_namespace, fqdn, server_namespace, root_namespace):
    """Istio's lookup order: client namespace, then service namespace, then root namespace."""
    searched = []
    for namespace in (client_namespace, server_namespace, root_namespace):
        if namespace in searched:
            continue
        searched.append(namespace)
        best, best_score = [], None
        for dr in destination_rules:
            if dr["metadata"]["namespace"] != namespace or not _visible(dr, client_namespace):
                continue
            score = _host_score(_dr_host(dr), fqdn)
            if score is None:
                continue
            if best_score is None or score > best_score:
                best, best_score = [dr], score
            elif score == best_score:
                best.append(dr)
        if best:
            return _oldest(best)
    return None


def _port_tls(policy, port):
    """(found, tls) for a portLevelSettings entry of this port; port-level settings do not inherit."""
    for setting in policy.get("portLevelSettings") or []:
        if int((setting.get("port") or {}).get("number", -1)) == port:
            return True, setting.get("tls")
    return False, None


def effective_client_tls(dr, port, subset=None):
    """The tls block a client uses towards ``port`` (and ``subset``), or None when nothing sets it."""
    spec = dr.get("spec") or {}
    top = spec.get("trafficPolicy") or {}
    found, tls = _port_tls(top, port)
    if not found:
        tls = top.get("tls")
    if subset is None:
        return tls
    chosen = [item for item in spec.get("subsets") or [] if item.get("name") == subset]
    if not chosen:
        raise MtlsPredictError("DestinationRule %s has no subset %r (subsets: %s)"
                               % (_ref(dr), subset, ", ".join(s.get("name", "?") for s in spec.get("subsets") or [])))
    sub_policy = chosen[0].get("trafficPolicy") or {}
    if sub_policy.get("tls") is not None:
        tls = sub_policy["tls"]
    found, sub_port_tls = _port_tls(sub_policy, port)
    return sub_port_tls if found else tls


def _client_origination(destination_rules, client, server, fqdn, inbound_mode, root_namespace, auto_mtls):
    """Return (client_tls, why) with client_tls in mtls / tls / plaintext."""
    if not client["sidecar"]:
        return "plaintext", "the client has no sidecar so it sends plaintext"
    dr = select_destination_rule(destination_rules, client["namespace"], fqdn, server["namespace"], root_namespace)
    subset = client.get("subset")
    if dr is None and subset is not None:
        raise MtlsPredictError("client.subset %r given but no DestinationRule for %s is visible from namespace %s"
                               % (subset, fqdn, client["namespace"]))
    tls = effective_client_tls(dr, int(server["port"]), subset) if dr is not None else None
    if tls is not None:
        mode = _tls_mode(tls, _ref(dr))
        where = "DestinationRule %s%s sets tls %s" % (_ref(dr), " subset %s" % subset if subset else "", mode)
        if mode == "ISTIO_MUTUAL":
            return "mtls", where + " so the client sidecar originates Istio mTLS"
        if mode == "MUTUAL":
            return "tls", where + " (user certificates): TLS, but not Istio mTLS"
        if mode == "SIMPLE":
            return "tls", where + ": one-way TLS, not mTLS"
        return "plaintext", where + " so the client sidecar sends plaintext"
    if dr is not None:
        prefix = "DestinationRule %s has no tls setting for port %s" % (_ref(dr), server["port"])
    else:
        prefix = "no DestinationRule applies to %s" % fqdn
    if not auto_mtls:
        return "plaintext", prefix + " and auto mTLS is off, so the client sidecar sends plaintext"
    capable = server["sidecar"] and server["labels"].get(TLS_MODE_LABEL, "istio") == "istio"
    if capable and inbound_mode != "DISABLE":
        return "mtls", prefix + ", so auto mTLS sends mTLS to the sidecar endpoint"
    return "plaintext", prefix + ", so auto mTLS sends plaintext (server has no sidecar or mTLS is disabled)"


# ---------------------------------------------------------------- outcome


def _result(outcome, transport, client_tls, symptom, inbound_mode, sentence):
    return {
        "outcome": outcome,
        "transport": transport,
        "client_tls": client_tls,
        "server_mode": inbound_mode,
        "symptom": symptom,
        "reason": sentence[0].upper() + sentence[1:] + ".",
    }


def predict(peer_authentications, destination_rules, client, server, root_namespace="istio-system", auto_mtls=False):
    """Predict whether ``client`` can call ``server`` and what travels on the wire.

    Returns ``outcome`` (success/failure), ``transport`` (mtls/plaintext for a successful exchange,
    none when the request fails), ``client_tls`` (what the client originates: mtls/tls/plaintext),
    ``server_mode`` (effective inbound mode, or None without a server sidecar), ``symptom``
    (ok / reset / http-503) and a one-sentence ``reason`` naming the deciding objects.
    """
    _check_peer_authentications(peer_authentications)
    _check_destination_rules(destination_rules)
    _check_endpoint(client, CLIENT_KEYS, "client")
    _check_server(server)
    if not isinstance(auto_mtls, bool):
        raise MtlsPredictError("auto_mtls must be true or false")

    fqdn = normalise_host(server["host"], server["namespace"])
    mode, deciders = resolve_inbound(peer_authentications, server, root_namespace)
    client_tls, why = _client_origination(destination_rules, client, server, fqdn, mode, root_namespace, auto_mtls)
    fail_symptom = "http-503" if client["sidecar"] else "reset"
    fail_text = "the client sidecar answers 503" if client["sidecar"] else "the client sees the connection reset"

    if not server["sidecar"]:
        if client_tls == "plaintext":
            return _result("success", "plaintext", client_tls, "ok", None,
                           "%s; %s has no sidecar and accepts plaintext" % (why, fqdn))
        return _result("failure", "none", client_tls, fail_symptom, None,
                       "%s, but %s has no sidecar and its plaintext app breaks the TLS connection, so %s"
                       % (why, fqdn, fail_text))
    source = ("PeerAuthentication %s" % ", ".join(deciders)) if deciders else "no PeerAuthentication applies"
    server_part = "the sidecar of %s is %s (%s)" % (fqdn, mode, source)
    if client_tls == "tls":
        return _result("failure", "none", client_tls, fail_symptom, mode,
                       "%s, but %s and cannot terminate non-Istio TLS, so %s" % (why, server_part, fail_text))
    if client_tls == "plaintext" and mode == "STRICT":
        return _result("failure", "none", client_tls, fail_symptom, mode,
                       "%s, but %s and refuses plaintext, so %s" % (why, server_part, fail_text))
    if client_tls == "mtls" and mode == "DISABLE":
        return _result("failure", "none", client_tls, fail_symptom, mode,
                       "%s, but %s and passes the TLS bytes to the plaintext app, so %s"
                       % (why, server_part, fail_text))
    return _result("success", client_tls, client_tls, "ok", mode,
                   "%s; %s and accepts %s" % (why, server_part, "mTLS" if client_tls == "mtls" else "plaintext"))
