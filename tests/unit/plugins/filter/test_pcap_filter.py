"""The pcap_tls_summary filter: base64 text in, summary out, AnsibleFilterError on bad input.

The capture here is built by hand (emulated, not captured): one IPv4/TCP segment carrying an HTTP
request, in a classic pcap with the raw-IPv4 link type. Real tcpdump captures are exercised in
tests/unit/plugins/module_utils/test_pcap_tls.py.
"""

import base64
import struct

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.meshlab.mtls.plugins.filter.pcap_tls import FilterModule

REQUEST = b"GET /productpage HTTP/1.1\r\nHost: productpage:9080\r\n\r\n"


def hand_built_capture(payload):
    tcp = struct.pack(">HHIIBBHHH", 40000, 9080, 1000, 0, 5 << 4, 0x18, 65535, 0, 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0,
                     bytes([198, 18, 1, 5]), bytes([198, 18, 2, 7])) + tcp
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 228)
    return header + struct.pack("<IIII", 0, 0, len(ip), len(ip)) + ip


@pytest.fixture
def pcap_tls_summary():
    return FilterModule().filters()["pcap_tls_summary"]


def test_cleartext_request_is_plaintext(pcap_tls_summary):
    summary = pcap_tls_summary(base64.b64encode(hand_built_capture(REQUEST)).decode())
    assert summary["verdict"] == "plaintext"
    assert summary["http_requests"] == ["GET /productpage HTTP/1.1"]
    assert (summary["packets"], summary["tcp_streams"]) == (1, 1)


def test_tls_record_bytes_are_encrypted(pcap_tls_summary):
    alert = b"\x15\x03\x03\x00\x02\x02\x28"  # a TLS 1.2 fatal handshake_failure alert record
    summary = pcap_tls_summary(base64.b64encode(hand_built_capture(alert)).decode())
    assert summary["verdict"] == "encrypted" and summary["tls_records"] == {"alert": 1}


def test_bad_input_becomes_a_filter_error(pcap_tls_summary):
    with pytest.raises(AnsibleFilterError, match="pcap_tls_summary: not base64"):
        pcap_tls_summary("%%% not base64 %%%")
    with pytest.raises(AnsibleFilterError, match="pcap_tls_summary: not a pcap or pcapng capture"):
        pcap_tls_summary(base64.b64encode(b"<html>oops</html>").decode())
    with pytest.raises(AnsibleFilterError, match=r"pcap_tls_summary: truncated capture"):
        pcap_tls_summary(base64.b64encode(hand_built_capture(REQUEST)[:-5]).decode())
    with pytest.raises(AnsibleFilterError, match="expected base64 text of a capture; got a int"):
        pcap_tls_summary(7)
