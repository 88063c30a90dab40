# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Check and complete mtls_wire_check's options before anything is sent to the cluster."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

try:
    from urllib.parse import urlsplit
except ImportError:  # Python 2 is not supported
    urlsplit = None

from ansible_collections.meshlab.mtls.plugins.module_utils.probe_sources import (
    SourceError, check_url, normalize_workload,
)
from ansible_collections.meshlab.mtls.plugins.module_utils.wire_stats import outbound_cluster
from ansible_collections.meshlab.mtls.plugins.module_utils.wire_telemetry import VERDICTS


def validate_options(params):
    """A dict with normalized workloads and resolved ``service``, ``port`` and ``cluster``."""
    opts = dict(params)
    opts["client"] = normalize_workload(params["client"], "client")
    opts["server"] = normalize_workload(params["server"], "server")
    opts["traffic_source"] = normalize_workload(params.get("traffic_source") or params["client"], "traffic_source")
    if params.get("traffic_command") is None and not params.get("url"):
        raise SourceError("give url (requested count times) or traffic_command")
    if params.get("url"):
        check_url(params["url"])
    if not 1 <= params["count"] <= 1000:
        raise SourceError("count must be between 1 and 1000, got %d" % params["count"])
    if params["timeout"] < 1 or params.get("capture_timeout", 1) < 1:
        raise SourceError("timeout and capture_timeout must be at least 1 second")
    bad = sorted(set(params.get("expect") or []) - set(VERDICTS))
    if bad:
        raise SourceError("expect holds unknown verdicts %s (use %s)" % (", ".join(bad), ", ".join(VERDICTS)))
    if (params.get("wait_timeout") or 0) < 0:
        raise SourceError("wait_timeout must not be negative")
    url_parts = urlsplit(params["url"]) if params.get("url") else None
    service = params.get("service") or (url_parts.hostname if url_parts else None)
    port = params.get("port") or (url_parts.port or (443 if url_parts.scheme == "https" else 80) if url_parts else None)
    if not port or not 0 < port < 65536:
        raise SourceError("give port (the server's service port); it cannot be taken from the url")
    opts["service"], opts["port"] = service, port
    if not params.get("cluster"):
        if not service:
            raise SourceError("give service or cluster (the client's outbound cluster to read)")
        opts["cluster"] = outbound_cluster(port, service, opts["server"]["namespace"],
                                           params.get("cluster_domain") or "cluster.local")
    return opts
