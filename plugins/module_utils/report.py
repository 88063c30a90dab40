# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""What the verify role expects in a mode, and the report checks built from what it observed.

``verify_plan`` holds two things apart: what the declared mode **promises** (the README's mode table:
the expected value of every behaviour row) and what the cluster's objects will make the mesh do (through
mtls_predict and kiali_mtls), which the probes wait for so that they settle fast. The objects that break
the promise are listed one by one (mtls_drift). ``verify_checks`` pairs the plan with the results of
mtls_probe, envoy_tls_info and mtls_wire_check into the report's check rows (docs/design.md): behaviour
rows are judged against the promise, and every drifted object is a FAIL row of its own.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshlab.mtls.plugins.module_utils.k8s_exec import K8sExecError, pick_ready_pod
from ansible_collections.meshlab.mtls.plugins.module_utils.kiali_mtls import namespace_mtls_status
from ansible_collections.meshlab.mtls.plugins.module_utils.mtls_drift import drift as object_drift
from ansible_collections.meshlab.mtls.plugins.module_utils.mtls_predict import expected_inbound_mode, predict
from ansible_collections.meshlab.mtls.plugins.module_utils.probe_summary import expected_reachability, probe_detail

MODES = ("PERMISSIVE", "DISABLE", "STRICT")
SIDECAR = "istio-proxy"
EXTERNAL = "external"
WIRE_OF_TRANSPORT = {"mtls": "encrypted", "plaintext": "plaintext", "tls": "encrypted"}
NOT_OBSERVED = "not observed"


class ReportError(ValueError):
    """The inputs of the plan or the report are unusable; the message says which one."""


def normalize_mode(mode):
    text = str(mode or "").strip().upper()
    if text not in MODES:
        raise ReportError("mode must be one of %s (any case), got %r" % (", ".join(MODES), mode))
    return text


def auto_mtls_of(smcp):
    """spec.security.dataPlane.automtls of the SMCP; Istio's default (on) when it is not set."""
    security = ((smcp or {}).get("spec") or {}).get("security") or {}
    value = (security.get("dataPlane") or {}).get("automtls")
    return True if value is None else bool(value)


def endpoint(pod, host=None, port=None):
    """mtls_predict's client/server shape from a pod dict."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    out = {"namespace": meta.get("namespace"), "labels": dict(meta.get("labels") or {}),
           "sidecar": SIDECAR in [c.get("name") for c in spec.get("containers") or []]}
    if host is not None:
        out.update(host=host, port=int(port))
    return out


def _matching(pods, labels):
    return [p for p in pods if all(((p.get("metadata") or {}).get("labels") or {}).get(k) == v
                                   for k, v in labels.items())]


def pod_for(pods, labels, what):
    """The Running and Ready pod carrying ``labels``."""
    try:
        return pick_ready_pod(_matching(pods, labels))
    except K8sExecError as exc:
        raise ReportError("%s (pods with %s): %s" % (what, labels, exc)) from None


def _deployment_labels(deployments, name):
    for dep in deployments:
        if dep["metadata"]["name"] == name:
            labels = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels")
            if labels:
                return labels
            raise ReportError("Deployment %s has no spec.selector.matchLabels" % name)
    raise ReportError("Deployment %s not found (found: %s)"
                      % (name, ", ".join(sorted(d["metadata"]["name"] for d in deployments)) or "none"))


def intended(mode, sources_with_sidecar):
    """What the mode is meant to show, before looking at any object: reachability per source, the
    listener mode and the wire verdict of a sidecar-to-sidecar call."""
    out = {EXTERNAL: "success"}
    for name, sidecar in sources_with_sidecar.items():
        out[name] = "failure (reset)" if mode == "STRICT" and not sidecar else "success"
    out["listener"] = mode
    out["wire"] = "plaintext" if mode == "DISABLE" else "encrypted"
    return out


def canonical_objects(mode, namespace):
    """The PeerAuthentication and DestinationRule the mode is defined by (as the mtls_mode role writes them)."""
    pa = {"kind": "PeerAuthentication", "metadata": {"name": "default", "namespace": namespace},
          "spec": {"mtls": {"mode": mode}}}
    if mode == "DISABLE":
        dr_spec = {"host": "*", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}
    else:
        dr_spec = {"host": "*.%s.svc.cluster.local" % namespace, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}
    dr = {"kind": "DestinationRule", "metadata": {"name": "intended", "namespace": namespace}, "spec": dr_spec}
    return [pa], [dr]


def verify_plan(mode, namespace, root_namespace, peer_authentications, destination_rules, smcp, pods, deployments,
                gateway_pods, sources, server_app="productpage", server_port=9080, wire_server_app="details"):
    """Expectations from the objects in the cluster, the mode's intent, and where they differ.

    ``sources`` are ``{name, deployment}`` in ``namespace``; ``pods``/``deployments`` are that
    namespace's objects; ``gateway_pods`` the ingress gateway pods (the external client).
    """
    mode = normalize_mode(mode)
    auto = auto_mtls_of(smcp)
    pas, drs = list(peer_authentications or []), list(destination_rules or [])
    server = endpoint(pod_for(pods, {"app": server_app}, server_app), server_app, server_port)
    wire_server = endpoint(pod_for(pods, {"app": wire_server_app}, wire_server_app), wire_server_app, server_port)
    if not gateway_pods:
        raise ReportError("no ingress gateway pod found in %s" % root_namespace)
    try:
        gateway = endpoint(pick_ready_pod(gateway_pods))
    except K8sExecError as exc:
        raise ReportError("ingress gateway: %s" % exc) from None
    gateway["sidecar"] = True  # the gateway's Envoy originates mTLS like a sidecar

    clients = {EXTERNAL: gateway}
    for src in sources:
        labels = _deployment_labels(deployments, src["deployment"])
        clients[src["name"]] = endpoint(pod_for(pods, labels, src["name"]))

    predictions, expect = {}, {}
    for name, client in clients.items():
        predictions[name] = predict(pas, drs, client, server, root_namespace, auto)
        expect[name] = expected_reachability(predictions[name])
    wire_pred = predict(pas, drs, server, wire_server, root_namespace, auto)
    predictions["wire"] = wire_pred
    listener = expected_inbound_mode(pas, server, root_namespace)
    wire = WIRE_OF_TRANSPORT.get(wire_pred["transport"], "no-traffic")

    from_objects = dict(expect, listener=listener, wire=wire)
    intent = intended(mode, {n: c["sidecar"] for n, c in clients.items() if n != EXTERNAL})
    drift = object_drift(mode, namespace, root_namespace, pas, drs, pods, server_port, auto)
    canon_pas, canon_drs = canonical_objects(mode, namespace)
    return {
        "mode": mode, "namespace": namespace, "auto_mtls": auto,
        "expect": expect, "listener": {"port": str(server_port), "expected": listener, "workload": server_app},
        "wire": {"expected": wire, "client": server_app, "server": wire_server_app},
        "kiali": {"intended": namespace_mtls_status(canon_pas, canon_drs, namespace, auto, root_namespace),
                  "computed": namespace_mtls_status(pas, drs, namespace, auto, root_namespace)},
        "intent": intent, "from_objects": from_objects, "drift": drift,
        "reasons": {k: v["reason"] for k, v in predictions.items()},
    }


def _summary_text(values):
    return ", ".join("%s=%s" % (k, values[k]) for k in sorted(values))


def _wire_detail(wire):
    ev = wire.get("evidence") or {}
    if wire.get("method") == "capture" and ev.get("basis"):
        return ev["basis"]
    if wire.get("method") == "capture":
        return "capture pod %s (deleted: %s): %d TCP streams, TLS handshakes %s, HTTP requests in clear %d" % (
            wire.get("capture_pod"), wire.get("capture_pod_deleted"), ev.get("tcp_streams", 0),
            ev.get("tls_handshakes") or {}, len(ev.get("http_requests") or []))
    if wire.get("method") == "telemetry":
        detail = ev.get("basis") or "no evidence"
        if ev.get("plaintext_sources"):
            detail += "; plaintext arrived from: %s" % ", ".join(ev["plaintext_sources"])
        return detail
    parts = []
    for side in ("client", "server"):
        s = ev.get(side)
        if s and "connections" in s:
            parts.append("%s: +%d connections, +%d TLS handshakes (%s)"
                         % (side, s["connections"], s["handshakes"], s.get("basis")))
        elif s:
            parts.append("%s: %s" % (side, s.get("basis")))
    return "; ".join(parts) or "no evidence"


def _promised(plan, key):
    """The expected value of a behaviour row: the mode's promise (plans without one: the objects' prediction)."""
    return (plan.get("intent") or plan["from_objects"])[key]


def _because(plan, key, reason):
    promised, predicted = _promised(plan, key), plan["from_objects"][key]
    if promised == predicted:
        return "%s promises it; %s" % (plan["mode"], reason)
    return "%s promises %s, but the cluster's objects give %s: %s" % (plan["mode"], promised, predicted, reason)


def _row(name, kind, source, target, expected, observed, detail):
    return {"name": name, "kind": kind, "source": source, "target": target, "expected": expected,
            "observed": observed, "detail": detail, "passed": expected == observed}


def verify_checks(plan, probe=None, listener=None, wire=None):
    """Report check rows from the plan and the module results (a missing result is 'not observed')."""
    if not isinstance(plan, dict) or "expect" not in plan:
        raise ReportError("the first argument must be the plan made by mtls_verify_plan")
    checks = []
    rows = {p["source"]: p for p in (probe or {}).get("probes") or []}
    for name in sorted(plan["expect"], key=lambda n: (n != EXTERNAL, n)):
        p = rows.get(name)
        observed = p.get("observed", NOT_OBSERVED) if p else NOT_OBSERVED
        detail = (probe_detail(p) if p else (probe or {}).get("msg", "no probe result")) + \
            " | expected because: " + _because(plan, name, plan["reasons"][name])
        checks.append(_row("reachability %s" % name, "reachability", name, p["target"] if p else "-",
                           _promised(plan, name), observed, detail))

    lst = plan["listener"]
    modes = (listener or {}).get("inbound_modes") or {}
    observed = modes.get(lst["port"], modes.get("*", NOT_OBSERVED))
    checks.append(_row("listener %s:%s" % (lst["workload"], lst["port"]), "listener", "envoy",
                       "%s:%s" % (lst["workload"], lst["port"]), _promised(plan, "listener"), observed,
                       "pod %s inbound modes %s | expected because: %s" % (
                           (listener or {}).get("pod"), _summary_text(modes) or (listener or {}).get("msg", "not read"),
                           _because(plan, "listener", "the PeerAuthentications give %s" % lst["expected"]))))

    w = plan["wire"]
    if wire and "verdict" in wire:
        wire_text = _wire_detail(wire)
    else:
        wire_text = (wire or {}).get("msg", "not checked")
    checks.append(_row("wire %s -> %s" % (w["client"], w["server"]), "wire", w["client"], w["server"],
                       _promised(plan, "wire"), (wire or {}).get("verdict", NOT_OBSERVED),
                       "%s: %s | expected because: %s" % ((wire or {}).get("method", "-"), wire_text,
                                                          _because(plan, "wire", plan["reasons"]["wire"]))))

    for item in plan["drift"]:
        checks.append(_row("drift %s %s" % (item["object"], item["field"]), "config", "cluster objects",
                           item["object"], item["wanted"], item["found"],
                           "%s promises %s = %s; the object has %s; affects %s" % (
                               plan["mode"], item["field"], item["wanted"], item["found"],
                               ", ".join(item["affects"]) or "-")))
    if not plan["drift"]:
        checks.append(_row("config matches mode", "config", "cluster objects", plan["namespace"],
                           _summary_text(plan["intent"]), _summary_text(plan["from_objects"]),
                           "the PeerAuthentications and DestinationRules give what %s promises" % plan["mode"]))
    checks.append(_row("kiali namespace status", "config", "kiali (computed)", plan["namespace"],
                       plan["kiali"]["intended"], plan["kiali"]["computed"],
                       "auto mTLS %s; intended status from the objects %s is defined by"
                       % ("on" if plan["auto_mtls"] else "off", plan["mode"])))
    return checks
