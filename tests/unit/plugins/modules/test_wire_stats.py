"""Classification of Envoy counter snapshots taken before and after a burst."""

import pytest
from ansible_collections.meshlab.mtls.plugins.module_utils import wire_stats as ws

CLUSTER = "outbound|9080||details.bookinfo.svc.cluster.local"


def stats_text(cx=0, hs=0, rq=0, in_cx=0, in_hs=0):
    """Envoy's text stats format, with unrelated counters and a histogram line around ours."""
    return "\n".join([
        "cluster.%s.ssl.handshake: %d" % (CLUSTER, hs),
        "cluster.%s.upstream_cx_total: %d" % (CLUSTER, cx),
        "cluster.%s.upstream_rq_total: %d" % (CLUSTER, rq),
        "cluster.outbound|9080||reviews.bookinfo.svc.cluster.local.upstream_cx_total: 7",
        "listener.0.0.0.0_15006.downstream_cx_total: %d" % in_cx,
        "listener.0.0.0.0_15006.ssl.handshake: %d" % in_hs,
        "cluster.xds-grpc.upstream_cx_connect_ms: P0(nan,1) P25(nan,1.025) P50(nan,1.05)",
        "server.state: 0",
    ]) + "\n"


def test_parse_stats_reads_counters_and_skips_histograms():
    parsed = ws.parse_stats(stats_text(cx=3, hs=2))
    assert parsed["cluster.%s.upstream_cx_total" % CLUSTER] == 3
    assert not any("connect_ms" in k for k in parsed)
    with pytest.raises(ws.StatsError):
        ws.parse_stats("<html>not stats</html>")


@pytest.mark.parametrize("host, ns, expected", [
    ("details", "bookinfo", CLUSTER),
    ("details.bookinfo", "other", CLUSTER),
    ("details.bookinfo.svc.cluster.local", "x", CLUSTER),
])
def test_outbound_cluster_name(host, ns, expected):
    assert ws.outbound_cluster(9080, host, ns) == expected


@pytest.mark.parametrize("before, after, verdict", [
    (dict(cx=1, hs=1, in_cx=1, in_hs=1), dict(cx=11, hs=11, rq=10, in_cx=11, in_hs=11), "encrypted"),
    (dict(cx=1, in_cx=1), dict(cx=11, rq=10, in_cx=11), "plaintext"),
    (dict(), dict(cx=10, hs=5, rq=10, in_cx=10, in_hs=5), "mixed"),
    (dict(cx=4, hs=4, in_cx=4, in_hs=4), dict(cx=4, hs=4, in_cx=4, in_hs=4), "no-traffic"),
    (dict(), dict(cx=10, hs=10, rq=10, in_cx=10), "mixed"),  # the two sides disagree
])
def test_classify_both_sides(before, after, verdict):
    b, a = ws.parse_stats(stats_text(**before)), ws.parse_stats(stats_text(**after))
    got, evidence = ws.classify(b, a, b, a, CLUSTER)
    assert got == verdict
    assert evidence["client"]["basis"] == "delta"


def test_pooled_connection_is_judged_by_totals_and_says_so():
    b = ws.parse_stats(stats_text(cx=2, hs=2, rq=5))
    a = ws.parse_stats(stats_text(cx=2, hs=2, rq=15))
    verdict, evidence = ws.classify(b, a, None, None, CLUSTER)
    assert verdict == "encrypted"
    assert evidence["client"]["basis"].startswith("totals")
    assert "server" not in evidence


def test_server_side_alone_decides_when_client_has_no_sidecar():
    b = ws.parse_stats(stats_text(in_cx=3))
    a = ws.parse_stats(stats_text(in_cx=13))
    assert ws.classify(None, None, b, a, CLUSTER)[0] == "plaintext"


def test_counter_going_down_means_restart():
    with pytest.raises(ws.StatsError, match="restarted"):
        ws.classify(None, None, ws.parse_stats(stats_text(in_cx=9)), ws.parse_stats(stats_text(in_cx=1)), CLUSTER)
