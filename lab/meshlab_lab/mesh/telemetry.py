"""Istio's standard metrics, EMULATED from Envoy's own access log (this is not Istio's stats extension).

The lab's sidecars run upstream Envoy 1.40, which has neither Istio's stats extension nor its metadata-exchange
filter. This module stands in for both: :func:`access_log` is the AccessLog the xDS generator attaches to every
inbound and outbound HTTP connection manager and tcp_proxy, so that Envoy writes one JSON line per HTTP request,
or per TCP connection (at close), to ``telemetry.log``; :func:`aggregate` turns the lines into Istio's counters,
which the renderers print as a real sidecar serves them (``/stats/prometheus``, Envoy's text ``/stats``).

Emulated: ``istio_requests_total`` and ``istio_tcp_connections_opened_total`` / ``_closed_total`` /
``istio_tcp_sent_bytes_total`` / ``istio_tcp_received_bytes_total``, with Istio's label names.
Not emulated: the duration and size histograms, gRPC (``request_protocol`` is always ``http``), the
``canonical_*`` / ``request_*`` / cluster labels, response-side metadata exchange, and live TCP counts (a
TCP connection counts once, opened and closed together, when Envoy logs it at close).

How each label is derived (``local`` is the proxy's own identity, from its env, see :func:`local_from_env`):

- ``reporter``: ``destination`` on inbound listeners, ``source`` on outbound listeners and gateways.
- ``source_*`` at the destination: from ``x-envoy-peer-metadata``, which the lab's outbound routes set to
  base64(JSON) (:func:`peer_metadata_header`; real Istio sends a protobuf Struct); ``unknown`` when the header
  is absent or unreadable, e.g. a client without a sidecar. ``source_principal``: the client certificate's
  URI SAN, else ``unknown``.
- ``destination_*`` at the destination: from ``local``; ``destination_principal``: our own certificate's URI
  SAN on that connection, else ``unknown``. ``connection_security_policy``: ``mutual_tls`` when both SANs are
  present, else ``none``.
- ``source_*`` at the source: from ``local`` (``source_principal`` is always ``local.principal``).
  ``destination_principal``: the server certificate's URI SAN, else ``unknown``; ``destination_workload``,
  ``_workload_namespace``, ``_app``, ``_version``: ``unknown`` (no response metadata); and
  ``connection_security_policy``: ``unknown``, as Istio documents for the source reporter.
- ``destination_service``: the FQDN of the upstream cluster ``outbound|<port>|<subset>|<fqdn>`` when there is
  one, else the ``:authority`` host without port, a short name (``name``, ``name.ns``, ``name.ns.svc``)
  completed to ``<name>.<ns>.svc.cluster.local`` with ``local.namespace`` for a bare name. Its first label is
  ``destination_service_name``, its second ``destination_service_namespace`` (``unknown`` unless a
  ``*.svc.cluster.local`` name).
- ``request_protocol``: ``http`` or ``tcp``; ``response_code``: ``%RESPONSE_CODE%`` (HTTP only; ``0`` when
  none); ``response_flags``: ``%RESPONSE_FLAGS%``, ``-`` when none.
"""
import base64
import binascii
import json
import re
from collections import defaultdict
from dataclasses import dataclass

PEER_METADATA_HEADER = "x-envoy-peer-metadata"
UNKNOWN = "unknown"
SVC_SUFFIX = ".svc.cluster.local"
_IP = re.compile(r"[\d.]+|\[.*\]")  # IPv4, or a bracketed IPv6 as in :authority
REQUESTS = "istio_requests_total"
TCP_OPENED, TCP_CLOSED = "istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total"
TCP_SENT, TCP_RECEIVED = "istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total"
LABEL_ORDER = ("reporter", "source_workload", "source_workload_namespace", "source_principal", "source_app",
               "source_version", "destination_workload", "destination_workload_namespace",
               "destination_principal", "destination_app", "destination_version", "destination_service",
               "destination_service_name", "destination_service_namespace", "request_protocol", "response_code",
               "response_flags", "connection_security_policy")

_COMMON_FIELDS = {"flags": "%RESPONSE_FLAGS%", "proto": "%PROTOCOL%", "peer_san": "%DOWNSTREAM_PEER_URI_SAN%",
                  "local_san": "%DOWNSTREAM_LOCAL_URI_SAN%", "up_peer_san": "%UPSTREAM_PEER_URI_SAN%",
                  "up_tls": "%UPSTREAM_TLS_VERSION%", "cluster": "%UPSTREAM_CLUSTER%", "route": "%ROUTE_NAME%",
                  "rx": "%BYTES_RECEIVED%", "tx": "%BYTES_SENT%", "dur": "%DURATION%", "start": "%START_TIME%"}
_HTTP_FIELDS = {"code": "%RESPONSE_CODE%", "peer_md": f"%REQ({PEER_METADATA_HEADER.upper()})%",
                "authority": "%REQ(:AUTHORITY)%"}


def access_log(path: str, reporter: str, kind: str) -> dict:
    """The Envoy v3 AccessLog entry that writes one telemetry JSON line per request (http) or connection (tcp)."""
    if reporter not in ("source", "destination") or kind not in ("http", "tcp"):
        raise ValueError(f"reporter must be source|destination and kind http|tcp, not {reporter!r}/{kind!r}")
    fields = dict({"r": reporter, "k": kind}, **_COMMON_FIELDS, **(_HTTP_FIELDS if kind == "http" else {}))
    return {"name": "envoy.access_loggers.file",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                             "path": path, "log_format": {"json_format": fields}}}


def peer_metadata_header(workload: str, namespace: str, app: str, version: str, service_account: str) -> str:
    """The value of ``x-envoy-peer-metadata`` the lab's outbound routes add: base64 of a compact JSON object."""
    meta = {"WORKLOAD_NAME": workload, "NAMESPACE": namespace, "APP": app, "VERSION": version,
            "SERVICE_ACCOUNT": service_account, "CLUSTER_ID": "Kubernetes"}
    return base64.b64encode(json.dumps(meta, separators=(",", ":")).encode()).decode()


@dataclass(frozen=True)
class Local:
    """The identity of the proxy that wrote the log."""
    workload: str
    namespace: str
    app: str
    version: str
    service_account: str
    trust_domain: str = "cluster.local"

    @property
    def principal(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"


def local_from_env(env: dict) -> Local:
    """The proxy's identity from Istio's sidecar env (the lab's ``MESHLAB_*`` names as fallback)."""
    workload = env.get("ISTIO_META_WORKLOAD_NAME") or UNKNOWN
    return Local(workload=workload,
                 namespace=env.get("POD_NAMESPACE") or env.get("MESHLAB_POD_NAMESPACE") or "default",
                 app=env.get("ISTIO_META_APP") or re.sub(r"-v\d+$", "", workload),
                 version=env.get("ISTIO_META_VERSION") or UNKNOWN,
                 service_account=env.get("SERVICE_ACCOUNT") or env.get("MESHLAB_SERVICE_ACCOUNT") or "default")


def parse_lines(text: str) -> list[dict]:
    """The JSON objects of a telemetry log; blank, malformed and partly written lines are skipped."""
    records = []
    for line in text.split("\n"):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _get(record: dict, key: str):
    """A field's value, or None for Envoy's ways of writing "no value" (``null``, ``"-"``, ``""``)."""
    value = record.get(key)
    return None if value in (None, "-", "") else value


def _count(record: dict, key: str) -> int:
    try:
        return int(_get(record, key) or 0)
    except (TypeError, ValueError):
        return 0


def decode_peer_metadata(value) -> dict:
    """The JSON object inside an ``x-envoy-peer-metadata`` value, or {} when absent or not ours."""
    try:
        meta = json.loads(base64.b64decode(value, validate=True)) if isinstance(value, str) else None
    except (binascii.Error, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def service_fqdn(record: dict, namespace: str) -> str:
    """``destination_service``: the upstream cluster's FQDN, else the completed ``:authority`` host."""
    parts = str(_get(record, "cluster") or "").split("|")
    if len(parts) == 4 and parts[0] == "outbound" and parts[3]:
        return parts[3]
    host = str(_get(record, "authority") or "").lower()
    host = host.split("]")[0] + "]" if host.startswith("[") else host.rsplit(":", 1)[0]
    if not host:
        return UNKNOWN
    if _IP.fullmatch(host) or host.endswith(SVC_SUFFIX):
        return host
    labels = host.split(".")
    if len(labels) == 1 or (len(labels) == 2 and labels[1] != "svc") or (len(labels) == 3 and labels[2] == "svc"):
        return f"{labels[0]}.{labels[1] if len(labels) > 1 else namespace}{SVC_SUFFIX}"
    return host


def _service_labels(fqdn: str) -> dict:
    parts = fqdn.split(".")
    namespace = parts[1] if fqdn.endswith(SVC_SUFFIX) and len(parts) == 5 else UNKNOWN
    return {"destination_service": fqdn, "destination_service_name": fqdn if _IP.fullmatch(fqdn) else parts[0],
            "destination_service_namespace": namespace}


def _peer_labels(record: dict, local: Local) -> dict:
    """The reporter-dependent labels: who the source and destination were, and how the connection was secured."""
    own = {"workload": local.workload, "workload_namespace": local.namespace, "app": local.app,
           "version": local.version}
    if record.get("r") == "destination":
        meta = decode_peer_metadata(_get(record, "peer_md"))
        peer = {"workload": meta.get("WORKLOAD_NAME"), "workload_namespace": meta.get("NAMESPACE"),
                "app": meta.get("APP"), "version": meta.get("VERSION")}
        peer_san, local_san = _get(record, "peer_san"), _get(record, "local_san")
        labels = {f"source_{k}": str(v or UNKNOWN) for k, v in peer.items()}
        labels.update({f"destination_{k}": v for k, v in own.items()})
        labels.update(source_principal=peer_san or UNKNOWN, destination_principal=local_san or UNKNOWN,
                      connection_security_policy="mutual_tls" if peer_san and local_san else "none")
        return labels
    labels = {f"source_{k}": v for k, v in own.items()}
    labels.update({f"destination_{k}": UNKNOWN for k in own})
    labels.update(source_principal=local.principal, destination_principal=_get(record, "up_peer_san") or UNKNOWN,
                  connection_security_policy=UNKNOWN)
    return labels


def labels_of(record: dict, local: Local) -> dict:
    """Istio's labels for one log record (HTTP labels include response_code, TCP ones do not)."""
    labels = {"reporter": record["r"], **_peer_labels(record, local),
              **_service_labels(service_fqdn(record, local.namespace)),
              "request_protocol": record["k"], "response_flags": str(_get(record, "flags") or "-")}
    if record["k"] == "http":
        labels["response_code"] = str(_get(record, "code") or 0)
    return {k: str(v) for k, v in labels.items()}


def aggregate(records, local: Local) -> dict:
    """``{(metric, ((label, value), ...) sorted): total}`` over the records; unrecognised records are ignored."""
    totals: dict = defaultdict(int)
    for record in records:
        if record.get("r") not in ("source", "destination") or record.get("k") not in ("http", "tcp"):
            continue
        labels = tuple(sorted(labels_of(record, local).items()))
        counts = [(REQUESTS, 1)] if record["k"] == "http" else [
            (TCP_OPENED, 1), (TCP_CLOSED, 1), (TCP_RECEIVED, _count(record, "rx")), (TCP_SENT, _count(record, "tx"))]
        for metric, by in counts:
            totals[(metric, labels)] += by
    return dict(totals)


def _ordered(labels: tuple) -> list:
    """Labels in Istio's order (unknown names last, alphabetically)."""
    return sorted(labels, key=lambda kv: (LABEL_ORDER.index(kv[0]) if kv[0] in LABEL_ORDER else 99, kv[0]))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_prometheus(aggregated: dict) -> str:
    """Prometheus text exposition: ``# TYPE <family> counter`` then that family's series, all sorted."""
    out, family = [], None
    for (metric, labels), value in sorted(aggregated.items()):
        if metric != family:
            out.append(f"# TYPE {metric} counter")
            family = metric
        body = ",".join(f'{k}="{_escape(v)}"' for k, v in _ordered(labels))
        out.append(f"{metric}{{{body}}} {value}")
    return "".join(line + "\n" for line in out)


def render_envoy_text(aggregated: dict) -> str:
    """Envoy's text ``/stats`` form on an Istio sidecar: ``k=.=v;.;...;.;<metric>: N``, one per line, sorted."""
    lines = sorted(";.;".join([*(f"{k}=.={v}" for k, v in _ordered(labels)), f"{metric}: {value}"])
                   for (metric, labels), value in aggregated.items())
    return "".join(line + "\n" for line in lines)


ISTIO_VERSION = "1.20.8"


def build_info(fmt: str) -> str:
    """The ``istio_build`` gauge Istio's stats extension always exports (present before any traffic)."""
    if fmt == "prometheus":
        return f'# TYPE istio_build gauge\nistio_build{{component="proxy",tag="{ISTIO_VERSION}"}} 1\n'
    return f"component=.=proxy;.;tag=.={ISTIO_VERSION};.;istio_build: 1\n"


def metrics_from_file(path, local: Local, fmt: str) -> str:
    """The rendered metrics (``fmt`` ``prometheus`` or ``text``) of a telemetry log, after ``istio_build``;
    a missing file gives only ``istio_build``."""
    render = {"prometheus": render_prometheus, "text": render_envoy_text}.get(fmt)
    if render is None:
        raise ValueError(f"fmt must be 'prometheus' or 'text', not {fmt!r}")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    return build_info(fmt) + render(aggregate(parse_lines(text), local))
