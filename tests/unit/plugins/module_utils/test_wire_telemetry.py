"""wire_telemetry: the verdict from Istio's request telemetry, never from missing counters or old traffic.

The stats texts here are written by hand in the two formats a real Istio sidecar serves (Envoy's text
``/stats`` with Istio's ``name=.=value;.;`` tag form, and ``/stats/prometheus``); the lab's tests read the
same judgement off real Envoy proxies (lab/tests/test_mesh_e2e.py).
"""

import pytest

from ansible_collections.meshlab.mtls.plugins.module_utils.wire_telemetry import (
    NO_SIGNAL, TelemetryError, parse, wire_evidence,
)

# What a sidecar with Istio's default stats inclusion shows in /stats when Istio telemetry is off:
# Envoy's own counters only, and no cluster.outbound|... or listener.0.0.0.0_15006 TLS counters either.
DEFAULT_INCLUSION_NO_TELEMETRY = """\
cluster_manager.active_clusters: 14
cluster_manager.cds.update_success: 3
listener_manager.lds.update_success: 3
listener_manager.lds.version_text: "2024-05-01T10:00:00Z/7"
listener_manager.total_filter_chains_draining: 0
server.live: 1
server.state: 0
cluster.xds-grpc.upstream_cx_total: 1
"""
BUILD_TEXT = "component=.=proxy;.;tag=.=1.20.8;.;istio_build: 1\n"


def text_series(count, source="productpage-v1", policy="mutual_tls", code="200"):
    labels = [("reporter", "destination"), ("source_workload", source), ("source_workload_namespace", "bookinfo"),
              ("destination_workload", "details-v1"), ("response_code", code),
              ("connection_security_policy", policy)]
    return ";.;".join("%s=.=%s" % pair for pair in labels) + ";.;istio_requests_total: %d\n" % count


def prom_series(count, source="productpage-v1", policy="mutual_tls", metric="istio_requests_total",
                reporter="destination", namespace="bookinfo"):
    return ('%s{reporter="%s",source_workload="%s",source_workload_namespace="%s",destination_workload='
            '"details-v1",connection_security_policy="%s",response_flags="-"} %d\n'
            % (metric, reporter, source, namespace, policy, count))


PROM_HEAD = '# TYPE istio_build gauge\nistio_build{component="proxy",tag="1.20.8"} 1\nenvoy_server_live{} 1\n'


def test_default_inclusion_without_telemetry_is_unknown_not_plaintext():
    result = wire_evidence(DEFAULT_INCLUSION_NO_TELEMETRY, DEFAULT_INCLUSION_NO_TELEMETRY + "server.live: 1\n")
    assert result["verdict"] == "unknown"
    assert result["basis"] == NO_SIGNAL and "capture" in result["basis"]
    assert (result["mtls_requests"], result["plaintext_requests"], result["plaintext_sources"]) == (0, 0, [])


def test_signal_without_requests_is_no_traffic():
    before = DEFAULT_INCLUSION_NO_TELEMETRY + BUILD_TEXT
    assert wire_evidence(before, before)["verdict"] == "no-traffic"


def test_only_the_delta_counts_not_earlier_traffic():
    # 40 plaintext requests before the window (another mode), 10 mTLS requests in it
    before = BUILD_TEXT + text_series(40, policy="none")
    after = BUILD_TEXT + text_series(40, policy="none") + text_series(10)
    result = wire_evidence(before, after)
    assert result["verdict"] == "encrypted"
    assert (result["mtls_requests"], result["plaintext_requests"]) == (10, 0)
    assert result["plaintext_sources"] == []


def test_series_that_appears_in_the_window_counts_from_zero():
    result = wire_evidence(PROM_HEAD, PROM_HEAD + prom_series(7, policy="none"))
    assert result["verdict"] == "plaintext" and result["plaintext_requests"] == 7
    assert result["plaintext_sources"] == ["bookinfo/productpage-v1"]


def test_mixed_and_the_sources_that_sent_plaintext():
    before = PROM_HEAD + prom_series(3)
    after = (PROM_HEAD + prom_series(5) + prom_series(2, source="unknown", namespace="unknown", policy="none")
             + prom_series(4, source="legacy", namespace="shop", policy="none"))
    result = wire_evidence(before, after)
    assert result["verdict"] == "mixed"
    assert (result["mtls_requests"], result["plaintext_requests"]) == (2, 6)
    assert result["plaintext_sources"] == ["shop/legacy", "unknown"]


def test_source_filter_judges_one_client_but_lists_every_plaintext_source():
    after = PROM_HEAD + prom_series(5) + prom_series(4, source="legacy", policy="none")
    result = wire_evidence(PROM_HEAD, after, source_workload="productpage-v1")
    assert result["verdict"] == "encrypted" and result["mtls_requests"] == 5
    assert result["plaintext_sources"] == ["bookinfo/legacy"]
    assert "from productpage-v1" in result["basis"]


def test_source_reporter_and_other_metrics_do_not_count():
    after = (PROM_HEAD + prom_series(9, reporter="source", policy="unknown")
             + prom_series(9, metric="istio_request_bytes_sum"))
    assert wire_evidence(PROM_HEAD, after)["verdict"] == "no-traffic"


def test_tcp_connections_count_too():
    after = PROM_HEAD + prom_series(2, metric="istio_tcp_connections_opened_total", policy="none")
    assert wire_evidence(PROM_HEAD, after)["verdict"] == "plaintext"


def test_a_counter_that_went_down_is_no_verdict():
    result = wire_evidence(PROM_HEAD + prom_series(9), PROM_HEAD + prom_series(2))
    assert result["verdict"] == "unknown" and "restarted" in result["basis"]


def test_text_and_prometheus_forms_parse_to_the_same_series():
    text_form = parse(text_series(3))[0]
    assert list(text_form.values()) == [3.0]
    labels = dict(next(iter(text_form))[1])
    assert labels["connection_security_policy"] == "mutual_tls" and labels["source_workload"] == "productpage-v1"
    prom, signal = parse('istio_requests_total{reporter="destination",source_workload="a\\"b",'
                         'connection_security_policy="none"} 4 1714557600000\n')
    assert signal and dict(next(iter(prom))[1])["source_workload"] == 'a"b' and list(prom.values()) == [4.0]


def test_not_text_is_an_error():
    with pytest.raises(TelemetryError, match="expected the text"):
        wire_evidence(None, "")
