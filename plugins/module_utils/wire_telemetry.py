# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Tell encrypted from plaintext traffic by Istio's standard request telemetry on the server sidecar.

Istio's stats extension counts every request a sidecar serves in ``istio_requests_total`` (HTTP) and every
TCP connection in ``istio_tcp_connections_opened_total``; at ``reporter="destination"`` the label
``connection_security_policy`` is ``mutual_tls`` when the connection carried both peers' workload
identities and ``none`` when it was plaintext. Both are on by default in OpenShift Service Mesh 2.6 and
Istio, and Istio keeps them in its default stats inclusion, unlike Envoy's TLS counters.

``wire_evidence(before, after)`` takes the text of one server sidecar's ``/stats/prometheus`` or ``/stats``
(either format) read before and after a burst, and judges only the difference, so earlier traffic never
decides a verdict. It never reads a verdict from missing series: with no Istio metric at all it says
``unknown`` and why; with the metrics present but unchanged it says ``no-traffic``.

Plain Python, no Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

REQUESTS = "istio_requests_total"
TCP_OPENED = "istio_tcp_connections_opened_total"
COUNTED = (REQUESTS, TCP_OPENED)
VERDICTS = ("encrypted", "plaintext", "mixed", "no-traffic", "unknown")
NO_SIGNAL = ("the stats have no Istio standard metrics (istio_*): Istio telemetry is off for this proxy; "
             "enable the prometheus metrics provider (meshConfig / Telemetry API, SMCP "
             "spec.addons.prometheus or spec.telemetry) or use the capture method")
_PROM_SERIES = re.compile(r'^(istio_[A-Za-z0-9_:]*)(?:\{(.*)\})?\s+([0-9.eE+-]+)(?:\s+\d+)?$')
_PROM_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


class TelemetryError(ValueError):
    """The stats text could not be read."""


def _unescape(value):
    return re.sub(r'\\[\\"n]', lambda match: _ESCAPES[match.group(0)], value)


def _prometheus_line(line):
    match = _PROM_SERIES.match(line)
    if not match:
        return None
    labels = {key: _unescape(value) for key, value in _PROM_LABEL.findall(match.group(2) or "")}
    return match.group(1), labels, float(match.group(3))


def _envoy_text_line(line):
    """``reporter=.=destination;.;source_workload=.=x;.;...;.;istio_requests_total: 3`` (Istio's tag form)."""
    name, sep, value = line.rpartition(": ")
    if not sep or not value.strip().isdigit():
        return None
    parts = name.strip().split(";.;")
    metric = parts[-1]
    if not metric.startswith("istio_"):
        return None
    labels = {}
    for part in parts[:-1]:
        key, found, label_value = part.partition("=.=")
        if found:
            labels[key] = label_value
    return metric, labels, float(value)


def parse(text):
    """``{(metric, frozenset(labels)): value}`` for the istio_* series in either stats format, and whether any
    Istio metric (a series or a ``# TYPE istio_...`` line) was present at all."""
    if not isinstance(text, str):
        raise TelemetryError("expected the text of /stats or /stats/prometheus, got a %s" % type(text).__name__)
    series, signal = {}, False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("# TYPE istio_"):
            signal = True
            continue
        if not line or line.startswith("#"):
            continue
        parsed = _prometheus_line(line) if "{" in line or not line.count(": ") else None
        parsed = parsed or _envoy_text_line(line)
        if parsed:
            signal = True
            metric, labels, value = parsed
            key = (metric, frozenset(labels.items()))
            series[key] = series.get(key, 0.0) + value
    return series, signal


def _source(labels):
    workload = labels.get("source_workload") or "unknown"
    namespace = labels.get("source_workload_namespace") or "unknown"
    return "unknown" if workload == "unknown" else "%s/%s" % (namespace, workload)


def wire_evidence(before, after, source_workload=None):
    """The verdict on the traffic a server sidecar received between two reads of its stats.

    Returns ``{verdict, basis, mtls_requests, plaintext_requests, plaintext_sources}``: requests (HTTP) and
    connections (TCP) counted at ``reporter="destination"`` by ``connection_security_policy``;
    ``plaintext_sources`` lists every ``<namespace>/<workload>`` (or ``unknown``, a client without a sidecar)
    whose traffic arrived without mTLS in the window. ``source_workload`` limits the verdict and the counts
    (not ``plaintext_sources``) to one client workload name.
    """
    old = parse(before)[0]
    new, signal = parse(after)
    result = {"verdict": "unknown", "basis": NO_SIGNAL, "mtls_requests": 0, "plaintext_requests": 0,
              "plaintext_sources": []}
    if not signal:
        return result
    plaintext_sources, other_policies = set(), 0
    for key, value in new.items():
        metric, labels = key[0], dict(key[1])
        if metric not in COUNTED or labels.get("reporter") != "destination":
            continue
        delta = value - old.get(key, 0.0)
        if delta < 0:
            result["basis"] = ("%s went down (%d -> %d): the proxy restarted during the burst; run the check "
                               "again" % (metric, old[key], value))
            return result
        if delta == 0:
            continue
        policy = labels.get("connection_security_policy")
        if policy == "none":
            plaintext_sources.add(_source(labels))
        if source_workload and labels.get("source_workload") != source_workload:
            continue
        if policy == "mutual_tls":
            result["mtls_requests"] += int(delta)
        elif policy == "none":
            result["plaintext_requests"] += int(delta)
        else:
            other_policies += int(delta)
    mtls, plain = result["mtls_requests"], result["plaintext_requests"]
    result["verdict"] = ("mixed" if mtls and plain else "encrypted" if mtls else "plaintext" if plain
                         else "no-traffic")
    scope = " from %s" % source_workload if source_workload else ""
    result["basis"] = ("%s and %s at reporter=destination%s during the burst: +%d mutual_tls, +%d none"
                       % (REQUESTS, TCP_OPENED, scope, mtls, plain))
    if other_policies:
        result["basis"] += ", +%d with another connection_security_policy (not counted)" % other_policies
    result["plaintext_sources"] = sorted(plaintext_sources)
    return result
