"""Controller-side requests against real local servers (TLS with a CA made by the test, refused, reset,
empty reply, timeout), and curl-style connect_to parsing."""

import pytest
from ansible_collections.meshlab.mtls.plugins.module_utils import probe_external as pe
from ansible_collections.meshlab.mtls.plugins.module_utils.probe_runner import run_external

SERVER_NAME = "api-istio-system.apps.lab.local"  # the name conftest's server certificate is for


@pytest.mark.parametrize("entry, parsed", [
    ("api.example:443:127.0.0.1:8443", ("api.example", 443, "127.0.0.1", 8443)),
    ("::127.0.0.1:", (None, None, "127.0.0.1", None)),
    (":443::8443", (None, 443, None, 8443)),
    ("[::1]:443:[fe80::1]:8443", ("::1", 443, "fe80::1", 8443)),
])
def test_parse_connect_to(entry, parsed):
    assert pe.parse_connect_to(entry) == parsed


@pytest.mark.parametrize("entry", ["", "a:1:b", "a:x:b:1", "a:1:b:70000", "[::1:443:b:1", 42])
def test_parse_connect_to_rejects(entry):
    with pytest.raises(pe.ConnectToError):
        pe.parse_connect_to(entry)


def test_resolve_connect_to_first_match_wins_and_blank_parts_keep_original():
    rules = [pe.parse_connect_to("other:443:10.0.0.1:1"), pe.parse_connect_to("API.example::127.0.0.1:"),
             pe.parse_connect_to("::10.0.0.2:2")]
    assert pe.resolve_connect_to(rules, "api.example", 443) == ("127.0.0.1", 443)
    assert pe.resolve_connect_to(rules, "zzz", 80) == ("10.0.0.2", 2)
    assert pe.resolve_connect_to([], "zzz", 80) == ("zzz", 80)


def _url_via(server_port, path="/productpage"):
    rule = pe.parse_connect_to("%s:443:127.0.0.1:%d" % (SERVER_NAME, server_port))
    return "https://%s%s" % (SERVER_NAME, path), [rule]


def test_https_through_connect_to_keeps_sni_and_host(https_server, pki):
    url, rules = _url_via(https_server.server_address[1])
    got = pe.request_once(url, rules, 5, ca_file=str(pki / "ca.crt"))
    assert got == {"curl_exit": 0, "http_code": "200", "error": ""}
    assert https_server.seen[-1] == {"path": "/productpage", "host": SERVER_NAME, "sni": SERVER_NAME}


def test_https_with_untrusted_ca_is_curl_60(https_server, pki):
    url, rules = _url_via(https_server.server_address[1])
    got = pe.request_once(url, rules, 5, ca_file=str(pki / "other-ca.crt"))
    assert got["curl_exit"] == pe.CURL_PEER_FAILED_VERIFICATION
    assert https_server.seen == []


def test_https_without_validation_accepts_unknown_ca(https_server):
    url, rules = _url_via(https_server.server_address[1])
    assert pe.request_once(url, rules, 5, validate_certs=False)["http_code"] == "200"


def test_refused_is_curl_7(refused_port):
    assert pe.request_once("http://127.0.0.1:%d/" % refused_port, (), 2)["curl_exit"] == pe.CURL_COULDNT_CONNECT


def test_reset_after_request_is_curl_56(raw_server):
    server = raw_server("reset")
    got = pe.request_once("http://127.0.0.1:%d/" % server.port, (), 5)
    assert got["curl_exit"] == pe.CURL_RECV_ERROR, got


def test_close_without_reply_is_curl_52(raw_server):
    server = raw_server("close")
    assert pe.request_once("http://127.0.0.1:%d/" % server.port, (), 5)["curl_exit"] == pe.CURL_GOT_NOTHING


def test_reset_during_tls_handshake_is_curl_35(raw_server):
    server = raw_server("reset")
    got = pe.request_once("https://127.0.0.1:%d/" % server.port, (), 5, validate_certs=False)
    assert got["curl_exit"] == pe.CURL_SSL_CONNECT_ERROR, got


def test_no_answer_is_curl_28(raw_server):
    server = raw_server("hang")
    got = pe.request_once("http://127.0.0.1:%d/" % server.port, (), 1)
    assert got["curl_exit"] == pe.CURL_OPERATION_TIMEDOUT, got


def test_http_error_status_is_a_failed_request_with_status(http_server):
    got = pe.request_once("http://127.0.0.1:%d/fail" % http_server.server_address[1], (), 5)
    assert got == {"curl_exit": 0, "http_code": "503", "error": ""}


def test_run_external_summarizes_like_curl(https_server, pki, refused_port):
    url, rules = _url_via(https_server.server_address[1])
    row = run_external({"name": "external", "url": url, "rules": rules, "ca_file": str(pki / "ca.crt"),
                        "validate_certs": True}, 4, 5)
    expected = ("success", 4, {"200": 4}, {"0": 4})
    assert (row["result"], row["succeeded"], row["statuses"], row["curl_exits"]) == expected
    bad = run_external({"url": "http://127.0.0.1:%d/" % refused_port, "rules": []}, 3, 2)
    assert (bad["result"], bad["failed"], bad["curl_exits"]) == ("failure", 3, {"7": 3})
    assert bad["meaning"].startswith("connection refused")
