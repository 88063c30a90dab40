# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The namespace mTLS lock that Kiali v1.73 (the Kiali of Service Mesh 2.6) shows, recomputed offline.

Facts taken from Kiali v1.73 behaviour (own implementation, no Kiali code):

* Only PeerAuthentications of the namespace itself count, and none when the namespace is the
  root namespace. A policy with any ``selector`` is ignored; the first remaining one (list order)
  gives the mode: ``spec.mtls.mode``, ``UNSET`` for ``mtls: {}`` and nothing at all without ``mtls``.
* DestinationRules from every namespace count when their ``spec.host`` is exactly
  ``*.<namespace>.svc.cluster.local``; the first one with ``trafficPolicy.tls`` gives the mode
  (``DISABLE`` for ``tls: {}``). Port-level and subset settings are not looked at.
* Combination (PERMISSIVE policies are not "allowed" for the namespace lock):
  STRICT + (ISTIO_MUTUAL | MUTUAL | no DR with auto mTLS) => MTLS_ENABLED;
  DISABLE + (DISABLE | no DR with auto mTLS) => MTLS_DISABLED; nothing on either side =>
  MTLS_NOT_ENABLED; any other combination => MTLS_PARTIALLY_ENABLED.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

MTLS_ENABLED = "MTLS_ENABLED"
MTLS_PARTIALLY_ENABLED = "MTLS_PARTIALLY_ENABLED"
MTLS_NOT_ENABLED = "MTLS_NOT_ENABLED"
MTLS_DISABLED = "MTLS_DISABLED"

IDENTITY_DOMAIN = "svc.cluster.local"
MESH_WIDE_DR_HOST = "*.local"


class KialiMtlsError(ValueError):
    """Raised when the objects handed in are not PeerAuthentications / DestinationRules."""


def _items(objs, kind):
    if isinstance(objs, dict) and isinstance(objs.get("resources"), list):
        objs = objs["resources"]
    if not isinstance(objs, list):
        raise KialiMtlsError("%ss must be a list (or a k8s_info result with resources)" % kind)
    for index, obj in enumerate(objs):
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        if not isinstance(meta, dict) or not meta.get("namespace"):
            raise KialiMtlsError("%s #%d needs metadata.namespace" % (kind, index))
    return objs


def _pa_mode(pa):
    """The mode Kiali reads from a selector-less policy; '' when it gives none."""
    spec = pa.get("spec") or {}
    if spec.get("selector") is not None:
        return ""
    if "mtls" not in spec or spec["mtls"] is None:
        return ""
    return (spec["mtls"] or {}).get("mode") or "UNSET"


def _dr_mode_for_host(dr, host):
    spec = dr.get("spec") or {}
    if spec.get("host") != host:
        return ""
    tls = (spec.get("trafficPolicy") or {}).get("tls")
    if tls is None:
        return ""
    return tls.get("mode") or "DISABLE"


def _first(values):
    return next((value for value in values if value), "")


def combine(dr_mode, pa_mode, auto_mtls):
    """Kiali's status from the namespace DR mode and PA mode ('' = none found)."""
    no_dr = dr_mode == ""
    mtls_on = dr_mode in ("ISTIO_MUTUAL", "MUTUAL") or (no_dr and auto_mtls)
    mtls_off = dr_mode == "DISABLE" or (no_dr and auto_mtls)
    if pa_mode == "STRICT" and mtls_on:
        return MTLS_ENABLED
    if pa_mode == "DISABLE" and mtls_off:
        return MTLS_DISABLED
    if pa_mode == "" and no_dr:
        return MTLS_NOT_ENABLED
    return MTLS_PARTIALLY_ENABLED


def namespace_modes(peer_authentications, destination_rules, namespace, root_namespace="istio-system"):
    """``(pa_mode, dr_mode)`` as Kiali reads them for the namespace lock ('' when absent)."""
    if not namespace or not isinstance(namespace, str):
        raise KialiMtlsError("namespace must be a non-empty string")
    pas = _items(peer_authentications, "PeerAuthentication")
    drs = _items(destination_rules, "DestinationRule")
    pa_mode = ""
    if namespace != root_namespace:
        pa_mode = _first(_pa_mode(pa) for pa in pas if pa["metadata"]["namespace"] == namespace)
    host = "*.%s.%s" % (namespace, IDENTITY_DOMAIN)
    dr_mode = _first(_dr_mode_for_host(dr, host) for dr in drs)
    return pa_mode, dr_mode


def namespace_mtls_status(peer_authentications, destination_rules, namespace, auto_mtls=False,
                          root_namespace="istio-system"):
    """The namespace status Kiali 1.73 returns from /api/namespaces/<ns>/tls."""
    pa_mode, dr_mode = namespace_modes(peer_authentications, destination_rules, namespace, root_namespace)
    return combine(dr_mode, pa_mode, bool(auto_mtls))


def mesh_mtls_status(peer_authentications, destination_rules, auto_mtls=False, root_namespace="istio-system"):
    """Mesh-wide status: selector-less PAs of the root namespace and DRs for host ``*.local``.

    Kiali's backend does not fold this into the namespace status; its UI shows a namespace whose own
    status is MTLS_NOT_ENABLED as enabled when this returns MTLS_ENABLED (see ``displayed_namespace_status``).
    """
    pas = _items(peer_authentications, "PeerAuthentication")
    drs = _items(destination_rules, "DestinationRule")
    pa_mode = _first(_pa_mode(pa) for pa in pas if pa["metadata"]["namespace"] == root_namespace)
    dr_mode = _first(_dr_mode_for_host(dr, MESH_WIDE_DR_HOST) for dr in drs)
    status = combine(dr_mode, pa_mode, bool(auto_mtls))
    if status != MTLS_PARTIALLY_ENABLED:
        return status
    # Half a configuration: auto mTLS completes a lone STRICT policy or a lone ISTIO_MUTUAL/MUTUAL rule,
    # and a lone DISABLE on either side reads as disabled.
    if (pa_mode == "DISABLE" and dr_mode == "") or (dr_mode == "DISABLE" and pa_mode == ""):
        return MTLS_DISABLED
    lone_strict = pa_mode == "STRICT" and dr_mode == ""
    lone_mutual = dr_mode in ("ISTIO_MUTUAL", "MUTUAL") and pa_mode == ""
    if auto_mtls and (lone_strict or lone_mutual):
        return MTLS_ENABLED
    return MTLS_PARTIALLY_ENABLED


def displayed_namespace_status(namespace_status, mesh_status):
    """What the Kiali UI shows: mesh-wide ENABLED lifts a namespace that has nothing of its own."""
    if mesh_status == MTLS_ENABLED and namespace_status == MTLS_NOT_ENABLED:
        return MTLS_ENABLED
    return namespace_status
