"""pcap_tls against real loopback captures made by tcpdump while real TLS / HTTP traffic flows.

Some tests rewrite a real capture into another container format (big-endian pcap, pcapng, other link
types) or reorder / duplicate its packets; those rewrites are done by the small writers below and say so.
"""

import base64
import random
import struct

import pytest

from ansible_collections.meshlab.mtls.plugins.module_utils import pcap_tls

pytestmark = pytest.mark.usefixtures("capture_ok")


# ---------------------------------------------------------------- small writers (derived captures)


def classic_records(data):
    """(header fields, [(record header, frame)]) of a little-endian classic pcap, split by hand."""
    assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"), "tcpdump on this host wrote little-endian"
    header, records, offset = struct.unpack("<IHHiIII", data[:24]), [], 24
    while offset < len(data):
        record = struct.unpack("<IIII", data[offset:offset + 16])
        records.append((record, data[offset + 16:offset + 16 + record[2]]))
        offset += 16 + record[2]
    return header, records


def write_classic(header, records, order="<", linktype=None):
    magic, major, minor, zone, sigfigs, snaplen, network = header
    out = [struct.pack(order + "IHHiIII", magic, major, minor, zone, sigfigs, snaplen,
                       network if linktype is None else linktype)]
    for (sec, frac, _incl, orig), frame in records:
        out.append(struct.pack(order + "IIII", sec, frac, len(frame), max(orig, len(frame))) + frame)
    return b"".join(out)


def write_pcapng(linktype, frames, simple=False):
    """A one-interface pcapng (SHB, IDB, then EPBs or SPBs) holding the given frames."""
    def block(block_type, body):
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", block_type, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
           block(1, struct.pack("<HHI", linktype, 0, 262144))]
    for index, frame in enumerate(frames):
        if simple:
            out.append(block(3, struct.pack("<I", len(frame)) + frame))
        else:
            out.append(block(6, struct.pack("<IIIII", 0, 0, index, len(frame), len(frame)) + frame))
    return b"".join(out)


def strip_ethernet(records):
    assert all(frame[12:14] == b"\x08\x00" for _record, frame in records), "loopback frames carry IPv4 here"
    return [(record, frame[14:]) for record, frame in records]


# ---------------------------------------------------------------- captures


@pytest.fixture(scope="module")
def tls12_capture(loopback, tmp_path_factory, mesh_pki):
    return _tls_capture(loopback, tmp_path_factory, mesh_pki, "1.2")


def _tls_capture(loopback, tmp_path_factory, pki, version, chunk=None, interface="lo", extra_args=()):
    port = loopback.free_port()
    path = tmp_path_factory.mktemp("cap") / "tls.pcap"
    with loopback.Capture(path, port, interface, extra_args) as capture:
        seen = loopback.mutual_tls_get(port, pki, version, chunk=chunk)
        capture.expect_closed(1)
    assert seen["reply"].startswith(b"HTTP/1.1 200"), seen
    assert seen["client_san"] == [loopback.CLIENT_SPIFFE] and seen["alpn"] == loopback.ALPN
    return capture.data


def test_mutual_tls_12_is_encrypted_with_client_certificate(loopback, tls12_capture):
    summary = pcap_tls.summarize(tls12_capture)
    assert summary["verdict"] == "encrypted"
    assert summary["sni"] == [loopback.SNI]
    assert loopback.ALPN in summary["alpn"]
    assert summary["tls_versions"] == ["TLS 1.2"]
    assert summary["client_certificate_seen"] is True
    for name in ("client_hello", "server_hello", "certificate", "certificate_request", "server_hello_done",
                 "client_key_exchange", "certificate_verify"):
        assert summary["tls_handshakes"].get(name, 0) >= 1, name
    assert summary["tls_handshakes"]["certificate"] == 2  # one from each side
    assert summary["tls_records"]["change_cipher_spec"] == 2
    assert summary["tls_records"]["application_data"] >= 2
    assert summary["http_requests"] == [] and summary["tcp_streams"] == 1
    assert summary["packets"] >= 10


def test_mutual_tls_13_hides_everything_but_the_hellos(loopback, tmp_path_factory, mesh_pki):
    summary = pcap_tls.summarize(_tls_capture(loopback, tmp_path_factory, mesh_pki, "1.3"))
    assert summary["verdict"] == "encrypted"
    assert summary["tls_versions"] == ["TLS 1.3"]
    assert summary["sni"] == [loopback.SNI] and summary["alpn"] == [loopback.ALPN]
    assert set(summary["tls_handshakes"]) == {"client_hello", "server_hello"}
    assert summary["client_certificate_seen"] is False
    assert summary["tls_records"]["application_data"] >= 4


def test_records_split_over_small_segments_are_reassembled(loopback, tmp_path_factory, mesh_pki, tls12_capture):
    small = _tls_capture(loopback, tmp_path_factory, mesh_pki, "1.2", chunk=61)
    client_port = struct.unpack(">H", classic_records(small)[1][0][1][34:36])[0]  # source port of the SYN
    client_payloads = [len(frame) - 66 for _record, frame in classic_records(small)[1]
                       if struct.unpack(">H", frame[34:36])[0] == client_port and len(frame) > 66]
    # the kernel may still merge an occasional pair of writes (autocorking); most segments stay small
    assert len(client_payloads) >= 15 and sorted(client_payloads)[len(client_payloads) // 2] <= 61, client_payloads
    assert max(client_payloads) < 300, "the client Certificate record (>300 bytes) must span segments"
    summary, reference = pcap_tls.summarize(small), pcap_tls.summarize(tls12_capture)
    assert summary["tls_handshakes"] == reference["tls_handshakes"]
    assert summary["client_certificate_seen"] is True and summary["sni"] == [loopback.SNI]
    assert summary["alpn"] == reference["alpn"] and summary["verdict"] == "encrypted"
    assert summary["packets"] > reference["packets"]


def test_retransmitted_and_reordered_segments_change_nothing(tls12_capture):
    header, records = classic_records(tls12_capture)
    data_indexes = [i for i, (_record, frame) in enumerate(records) if len(frame) > 14 + 20 + 32 + 10]
    first, second = data_indexes[0], data_indexes[1]
    # derived: resend the ClientHello segment later, and swap two data segments
    replayed = records[:second + 1] + [records[first]] + records[second + 1:]
    replayed[first], replayed[second] = replayed[second], replayed[first]
    summary = pcap_tls.summarize(write_classic(header, replayed))
    reference = pcap_tls.summarize(tls12_capture)
    assert summary["packets"] == reference["packets"] + 1
    for key in ("tls_records", "tls_handshakes", "sni", "alpn", "client_certificate_seen", "verdict"):
        assert summary[key] == reference[key], key


def test_plain_http_is_plaintext_with_the_request_line(loopback, tmp_path):
    port = loopback.free_port()
    with loopback.Capture(tmp_path / "http.pcap", port) as capture:
        assert loopback.plain_http_get(port) == 200
        capture.expect_closed(1)
    summary = pcap_tls.summarize(capture.data)
    assert summary["verdict"] == "plaintext"
    assert summary["http_requests"] == ["GET /details/0 HTTP/1.1"]
    assert len(summary["http_responses"]) == 1 and summary["http_responses"][0].startswith("HTTP/1.0 200")
    assert summary["tls_records"] == {} and summary["sni"] == []


def test_tls_and_http_in_one_capture_is_mixed(loopback, tmp_path, mesh_pki):
    port = loopback.free_port()
    with loopback.Capture(tmp_path / "mixed.pcap", port) as capture:
        assert loopback.plain_http_get(port, "/ratings/0") == 200
        assert loopback.mutual_tls_get(port, mesh_pki, "1.2")["reply"].startswith(b"HTTP/1.1 200")
        capture.expect_closed(2)
    summary = pcap_tls.summarize(capture.data)
    assert summary["verdict"] == "mixed"
    assert summary["tcp_streams"] == 2
    assert summary["http_requests"] == ["GET /ratings/0 HTTP/1.1"]
    assert summary["sni"] == [loopback.SNI]


def test_no_packets_is_no_traffic(loopback, tmp_path):
    with loopback.Capture(tmp_path / "empty.pcap", loopback.free_port()) as capture:
        pass
    summary = pcap_tls.summarize(capture.data)
    assert len(capture.data) == 24
    assert summary["verdict"] == "no-traffic" and summary["packets"] == 0 and summary["tcp_streams"] == 0


def test_handshake_without_payload_is_no_traffic(loopback, tmp_path):
    import socket
    port = loopback.free_port()
    with loopback.Capture(tmp_path / "syn.pcap", port) as capture:
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))
            server.listen(1)
            socket.create_connection(("127.0.0.1", port)).close()
            server.accept()[0].close()
        capture.expect_closed(1)
    summary = pcap_tls.summarize(capture.data)
    assert summary["packets"] >= 5 and summary["tcp_streams"] == 1 and summary["verdict"] == "no-traffic"
    assert summary["unclassified_bytes"] == 0


def test_other_cleartext_is_counted_but_is_not_http(loopback, tmp_path):
    import socket
    port = loopback.free_port()
    with loopback.Capture(tmp_path / "redis.pcap", port) as capture:
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))
            server.listen(1)
            with socket.create_connection(("127.0.0.1", port)) as client:
                client.sendall(b"*1\r\n$4\r\nPING\r\n")
                peer = server.accept()[0]
                assert peer.recv(64) == b"*1\r\n$4\r\nPING\r\n"
                peer.close()
        capture.expect_closed(1)
    summary = pcap_tls.summarize(capture.data)
    assert summary["verdict"] == "no-traffic" and summary["unclassified_bytes"] == 14


# ---------------------------------------------------------------- container formats and link types


def test_nanosecond_capture(loopback, tmp_path_factory, mesh_pki):
    data = _tls_capture(loopback, tmp_path_factory, mesh_pki, "1.2", extra_args=["--time-stamp-precision=nano"])
    assert data[:4] == b"\x4d\x3c\xb2\xa1"
    assert pcap_tls.summarize(data)["client_certificate_seen"] is True


@pytest.mark.parametrize("link_args, linktype", [([], 276), (["-y", "LINUX_SLL"], 113)])
def test_linux_cooked_captures_from_any_interface(loopback, tmp_path_factory, mesh_pki, link_args, linktype):
    data = _tls_capture(loopback, tmp_path_factory, mesh_pki, "1.2", interface="any", extra_args=link_args)
    assert struct.unpack("<I", data[20:24])[0] == linktype
    summary = pcap_tls.summarize(data)
    assert summary["verdict"] == "encrypted" and summary["sni"] == [loopback.SNI]
    assert summary["client_certificate_seen"] is True


def test_big_endian_classic_pcap(tls12_capture):
    header, records = classic_records(tls12_capture)
    swapped = write_classic(header, records, order=">")  # derived: same packets, big-endian file
    assert swapped[:4] == b"\xa1\xb2\xc3\xd4"
    assert pcap_tls.summarize(swapped) == pcap_tls.summarize(tls12_capture)


@pytest.mark.parametrize("simple", [False, True])
def test_pcapng_of_the_same_packets(tls12_capture, simple):
    header, records = classic_records(tls12_capture)
    ng = write_pcapng(header[6], [frame for _record, frame in records], simple=simple)  # derived
    assert pcap_tls.summarize(ng) == pcap_tls.summarize(tls12_capture)


@pytest.mark.parametrize("linktype, prefix", [(101, b""), (228, b""), (0, struct.pack("<I", 2)),
                                              (0, struct.pack(">I", 2))])
def test_raw_ip_and_loopback_link_types(tls12_capture, linktype, prefix):
    header, records = classic_records(tls12_capture)
    rewritten = [(record, prefix + frame) for record, frame in strip_ethernet(records)]  # derived
    summary = pcap_tls.summarize(write_classic(header, rewritten, linktype=linktype))
    assert summary == pcap_tls.summarize(tls12_capture)


# ---------------------------------------------------------------- errors


def test_truncated_capture_says_where(tls12_capture):
    cut = tls12_capture[:-7]
    with pytest.raises(pcap_tls.PcapError, match=r"truncated capture: the \d+ data bytes of packet record #\d+ "
                                                 r"at byte offset \d+ needs \d+ bytes but only \d+ remain"):
        pcap_tls.summarize(cut)


def test_not_a_capture():
    with pytest.raises(pcap_tls.PcapError, match="not a pcap or pcapng capture: the file starts with bytes 7b226b"):
        pcap_tls.summarize(b'{"kind": "Pod"}')
    with pytest.raises(pcap_tls.PcapError, match="only 2 bytes"):
        pcap_tls.summarize(b"\xd4\xc3")
    with pytest.raises(pcap_tls.PcapError, match="expected the capture as bytes; got a str"):
        pcap_tls.summarize("abc")


def test_base64_entry_point(tls12_capture):
    text = base64.encodebytes(tls12_capture).decode()  # with line breaks, like `base64` without -w0
    assert pcap_tls.summarize_base64(text) == pcap_tls.summarize(tls12_capture)
    with pytest.raises(pcap_tls.PcapError, match=r"not base64 .*base64 -w0"):
        pcap_tls.summarize_base64("this is not base64!")


@pytest.mark.parametrize("container", ["pcap", "pcapng"])
def test_damaged_captures_give_a_summary_or_a_pcap_error(tls12_capture, container):
    data = tls12_capture
    if container == "pcapng":
        header, records = classic_records(tls12_capture)
        data = write_pcapng(header[6], [frame for _record, frame in records])
    rng = random.Random(1234)  # flip bytes and cut the file: only a summary or a PcapError may come out
    outcomes = set()
    for _round in range(300):
        damaged = bytearray(data)
        for _flip in range(rng.randint(1, 20)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            cut = rng.randrange(1, len(damaged) + 1) if rng.random() < 0.5 else len(damaged)
            summary = pcap_tls.summarize(bytes(damaged[:cut]))
            outcomes.add(summary["verdict"])
        except pcap_tls.PcapError as exc:
            outcomes.add("error")
            assert "byte offset" in str(exc) or "not a pcap" in str(exc) or "only" in str(exc), str(exc)
    assert "error" in outcomes and len(outcomes) >= 2
