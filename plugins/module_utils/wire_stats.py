# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Tell encrypted from plaintext traffic by Envoy counters read before and after a burst.

The client sidecar counts per outbound cluster (``cluster.<name>.upstream_cx_total`` and
``cluster.<name>.ssl.handshake``), the server sidecar per inbound listener
(``listener.0.0.0.0_15006.downstream_cx_total`` and ``listener.0.0.0.0_15006.ssl.handshake``).
A new connection that did a TLS handshake was encrypted; one without was plaintext.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

INBOUND_LISTENER = "0.0.0.0_15006"
VERDICTS = ("encrypted", "plaintext", "mixed", "no-traffic")


class StatsError(ValueError):
    """The stats text could not be read."""


def parse_stats(text):
    """{name: int} from Envoy's text stats ('name: value' per line); histograms are skipped."""
    counters = {}
    for line in text.splitlines():
        name, sep, value = line.rpartition(": ")
        if not sep:
            continue
        value = value.strip()
        if value.isdigit():
            counters[name.strip()] = int(value)
    if text.strip() and not counters:
        raise StatsError("no 'name: number' lines in the stats output: %r" % text[:200])
    return counters


def outbound_cluster(port, host, namespace, domain="cluster.local", subset=""):
    """Envoy's outbound cluster name for a service host given short, namespaced or as an FQDN."""
    if "." not in host:
        host = "%s.%s.svc.%s" % (host, namespace, domain)
    elif host.count(".") == 1:
        host = "%s.svc.%s" % (host, domain)
    return "outbound|%d|%s|%s" % (int(port), subset, host)


def client_names(cluster):
    return {"connections": "cluster.%s.upstream_cx_total" % cluster,
            "handshakes": "cluster.%s.ssl.handshake" % cluster,
            "requests": "cluster.%s.upstream_rq_total" % cluster}


def server_names(listener=INBOUND_LISTENER):
    return {"connections": "listener.%s.downstream_cx_total" % listener,
            "handshakes": "listener.%s.ssl.handshake" % listener}


def side_delta(before, after, names):
    """Counter deltas (after - before) for the names of one side; a missing counter counts as 0."""
    delta = {}
    for key, name in names.items():
        delta[key] = after.get(name, 0) - before.get(name, 0)
        if delta[key] < 0:
            raise StatsError("counter %s went down (%d -> %d): the proxy restarted during the check"
                             % (name, before.get(name, 0), after.get(name, 0)))
    return delta


def classify_side(connections, handshakes):
    """Verdict of one side from its new connections and new TLS handshakes."""
    if connections <= 0:
        return "no-traffic"
    if handshakes <= 0:
        return "plaintext"
    if handshakes >= connections:
        return "encrypted"
    return "mixed"


def combine(client_verdict, server_verdict):
    """One verdict from both sides; a side that saw nothing (or was not read) does not vote."""
    votes = {v for v in (client_verdict, server_verdict) if v not in (None, "no-traffic")}
    if not votes:
        return "no-traffic"
    if len(votes) == 1:
        return votes.pop()
    return "mixed"


def classify(client_before, client_after, server_before, server_after, cluster):
    """Verdict and evidence from client and server stats snapshots (either side may be None).

    When the client sent requests but opened no new connection (Envoy reused a pooled one), the
    client side is judged by its totals instead of deltas, and the evidence says so.
    """
    evidence = {"cluster": cluster, "listener": INBOUND_LISTENER}
    client_verdict = server_verdict = None
    if client_before is not None and client_after is not None:
        names = client_names(cluster)
        delta = side_delta(client_before, client_after, names)
        client_verdict = classify_side(delta["connections"], delta["handshakes"])
        basis = "delta"
        if client_verdict == "no-traffic" and delta["requests"] > 0:
            client_verdict = classify_side(client_after.get(names["connections"], 0),
                                           client_after.get(names["handshakes"], 0))
            basis = "totals (connections reused)"
        evidence["client"] = dict(delta, verdict=client_verdict, basis=basis,
                                  present=names["connections"] in client_after)
    if server_before is not None and server_after is not None:
        delta = side_delta(server_before, server_after, server_names())
        server_verdict = classify_side(delta["connections"], delta["handshakes"])
        evidence["server"] = dict(delta, verdict=server_verdict, basis="delta")
    verdict = combine(client_verdict, server_verdict)
    return verdict, evidence
