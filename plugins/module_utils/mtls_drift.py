# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Where the cluster's objects break what an mTLS mode promises, object by object.

A mode promises a server side (every meshed workload of the namespace enforces the mode on its port) and a
client side (clients originate ``ISTIO_MUTUAL``, or plaintext for DISABLE, towards every meshed service of
the namespace). ``drift`` applies Istio's rules (mtls_predict) to the objects in the cluster and reports
each object that decides something else: the namespace PeerAuthentication, a workload- or port-level
PeerAuthentication, the mesh-wide policy when the namespace has none, a DestinationRule (or one of its
subsets or port-level settings) that shadows the mode's rule. Each difference names the object, the field
and both values, so the user knows what to fix.

Plain Python, no Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshlab.mtls.plugins.module_utils.mtls_predict import (
    CLUSTER_DOMAIN, effective_client_tls, resolve_inbound, select_destination_rule,
)

SIDECAR_LABEL = "security.istio.io/tlsMode"
SIDECAR = "istio-proxy"


def promised_client_tls(mode):
    return "DISABLE" if mode == "DISABLE" else "ISTIO_MUTUAL"


def _difference(kind, ref, field, wanted, found, affects):
    return {"object": "%s %s" % (kind, ref), "field": field, "wanted": wanted, "found": found,
            "affects": sorted(affects)}


def _meshed(pods):
    """``{app: labels}`` of the namespace's pods that carry a sidecar (the container or Istio's tlsMode label)."""
    found = {}
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        if labels.get("app") and (labels.get(SIDECAR_LABEL) == "istio" or SIDECAR in containers):
            found.setdefault(labels["app"], labels)
    return found


def _server_side(mode, namespace, root_namespace, pas, meshed, port):
    found = {}
    for app, labels in sorted(meshed.items()):
        got, deciders = resolve_inbound(pas, {"namespace": namespace, "labels": labels, "port": port},
                                        root_namespace)
        if got == mode:
            continue
        decider = deciders[0] if deciders else None
        if decider is None or decider.split("/", 1)[0] == root_namespace:
            # nothing in the namespace decides: the mode's namespace PeerAuthentication is missing (or UNSET)
            ref, field = "%s/default" % namespace, "spec.mtls.mode"
            value = "absent (%s gives %s)" % (decider or "Istio's default", got)
        elif decider.endswith("(portLevelMtls %s)" % port):
            ref, field, value = decider.split(" ", 1)[0], "spec.portLevelMtls.%s.mode" % port, got
        else:
            ref, field, value = decider, "spec.mtls.mode", got
        key = (ref, field)
        found.setdefault(key, _difference("PeerAuthentication", ref, field, mode, value, []))["affects"].append(app)
    return list(found.values())


def _tls_field(dr, port, subset):
    """The field that gave the client TLS setting for ``port`` / ``subset``."""
    spec = dr.get("spec") or {}
    if subset is not None:
        chosen = next(s for s in spec.get("subsets") or [] if s.get("name") == subset)
        policy = chosen.get("trafficPolicy") or {}
        if any(int((p.get("port") or {}).get("number", -1)) == port for p in policy.get("portLevelSettings") or []):
            return "spec.subsets[%s].trafficPolicy.portLevelSettings[%s].tls.mode" % (subset, port)
        if policy.get("tls") is not None:
            return "spec.subsets[%s].trafficPolicy.tls.mode" % subset
    top = spec.get("trafficPolicy") or {}
    if any(int((p.get("port") or {}).get("number", -1)) == port for p in top.get("portLevelSettings") or []):
        return "spec.trafficPolicy.portLevelSettings[%s].tls.mode" % port
    return "spec.trafficPolicy.tls.mode"


def _client_side(mode, namespace, root_namespace, drs, meshed, port, auto_mtls):
    wanted = promised_client_tls(mode)
    found = {}
    for app in sorted(meshed):
        fqdn = "%s.%s.%s" % (app, namespace, CLUSTER_DOMAIN)
        dr = select_destination_rule(drs, namespace, fqdn, namespace, root_namespace)
        if dr is None:
            if not auto_mtls and wanted != "DISABLE":
                key = ("none", fqdn)
                found[key] = _difference("DestinationRule", "for %s" % fqdn, "spec.trafficPolicy.tls.mode", wanted,
                                         "no DestinationRule (auto mTLS off: plaintext)", [app])
            continue
        ref = "%s/%s" % (dr["metadata"]["namespace"], dr["metadata"]["name"])
        for subset in [None] + [s.get("name") for s in (dr.get("spec") or {}).get("subsets") or [] if s.get("name")]:
            tls = effective_client_tls(dr, port, subset)
            got = (tls or {}).get("mode")
            if got is None and (auto_mtls or wanted == "DISABLE"):
                continue  # auto mTLS (or plaintext by default) gives what the mode promises
            if got == wanted:
                continue
            field = _tls_field(dr, port, subset)
            value = got or "unset (auto mTLS off: plaintext)"
            found.setdefault((ref, field), _difference("DestinationRule", ref, field, wanted, value, []))[
                "affects"].append(app if subset is None else "%s (subset %s)" % (app, subset))
    return list(found.values())


def drift(mode, namespace, root_namespace, peer_authentications, destination_rules, pods, port, auto_mtls):
    """Every object whose setting differs from what ``mode`` promises, as
    ``[{object, field, wanted, found, affects}]`` (empty when the objects implement the mode)."""
    meshed = _meshed(pods)
    return (_server_side(mode, namespace, root_namespace, peer_authentications, meshed, port)
            + _client_side(mode, namespace, root_namespace, destination_rules, meshed, port, auto_mtls))
