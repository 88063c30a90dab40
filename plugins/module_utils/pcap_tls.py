# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Tell from a packet capture whether TCP traffic was TLS, cleartext HTTP, or both.

Stdlib only. Reads classic pcap (either byte order, micro- or nanosecond) and pcapng (SHB, IDB, EPB,
SPB, obsolete PB), link types Ethernet, Linux cooked v1/v2, raw IP and BSD loopback. TCP payload is
put back in order per direction (retransmitted bytes are dropped by sequence number) and then walked
as TLS records or HTTP/1.x messages.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import re
import struct

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

RECORD_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data", 24: "heartbeat"}
HANDSHAKE_TYPES = {
    0: "hello_request", 1: "client_hello", 2: "server_hello", 4: "new_session_ticket", 5: "end_of_early_data",
    8: "encrypted_extensions", 11: "certificate", 12: "server_key_exchange", 13: "certificate_request",
    14: "server_hello_done", 15: "certificate_verify", 16: "client_key_exchange", 20: "finished",
    24: "key_update", 254: "message_hash",
}
TLS_VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}
EXT_SERVER_NAME = 0
EXT_ALPN = 16
EXT_SUPPORTED_VERSIONS = 43

_HTTP_REQUEST = re.compile(rb"(GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|TRACE|PATCH|PRI) (\S+) (HTTP/\d\.\d)\r\n")
_HTTP_RESPONSE = re.compile(rb"(HTTP/\d\.\d) (\d{3})(?: ([^\r\n]*))?\r\n")
_SEQ_SPACE = 1 << 32


class PcapError(ValueError):
    """The capture cannot be read; the message says what is wrong and where."""


# ---------------------------------------------------------------- capture file formats


def _need(data, offset, size, what):
    if offset + size > len(data):
        raise PcapError(
            "truncated capture: %s at byte offset %d needs %d bytes but only %d remain (file is %d bytes); "
            "was tcpdump stopped with SIGINT and the file copied completely?"
            % (what, offset, size, max(0, len(data) - offset), len(data)))


def _classic_packets(data):
    magic = data[:4]
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    _need(data, 0, 24, "the pcap file header")
    linktype = struct.unpack(order + "I", data[20:24])[0] & 0xFFFF
    offset, number = 24, 0
    while offset < len(data):
        number += 1
        _need(data, offset, 16, "the header of packet record #%d" % number)
        incl_len = struct.unpack(order + "I", data[offset + 8:offset + 12])[0]
        _need(data, offset + 16, incl_len, "the %d data bytes of packet record #%d" % (incl_len, number))
        yield linktype, data[offset + 16:offset + 16 + incl_len]
        offset += 16 + incl_len


def _pcapng_packets(data):
    order, interfaces, offset, number = "<", [], 0, 0
    while offset < len(data):
        _need(data, offset, 12, "a pcapng block header")
        block_type = struct.unpack(order + "I", data[offset:offset + 4])[0]
        if data[offset:offset + 4] == b"\x0a\x0d\x0d\x0a":
            bom = data[offset + 8:offset + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                order = ">"
            else:
                raise PcapError("pcapng section header at byte offset %d has an unknown byte-order magic %s"
                                % (offset, binascii.hexlify(bom).decode()))
            block_type, interfaces = 0x0A0D0D0A, []
        length = struct.unpack(order + "I", data[offset + 4:offset + 8])[0]
        if length < 12 or length % 4:
            raise PcapError("pcapng block at byte offset %d has an invalid length %d" % (offset, length))
        _need(data, offset, length, "the pcapng block of type 0x%08x" % block_type)
        body = data[offset + 8:offset + length - 4]
        minimum = {1: 8, 2: 20, 3: 4, 6: 20}.get(block_type, 0)
        if len(body) < minimum:
            raise PcapError("pcapng block of type %d at byte offset %d is %d bytes, shorter than its fixed fields"
                            % (block_type, offset, length))
        if block_type == 1:  # interface description
            interfaces.append(struct.unpack(order + "HHI", body[:8]))
        elif block_type in (6, 2, 3):
            number += 1
            if block_type == 3:  # simple packet: always interface 0, no captured length field
                interface, orig_len = 0, struct.unpack(order + "I", body[:4])[0]
                cap_len, start = min(orig_len, len(body) - 4), 4
            else:
                id_format = "I" if block_type == 6 else "H"
                interface = struct.unpack(order + id_format, body[:struct.calcsize(id_format)])[0]
                cap_len, start = struct.unpack(order + "I", body[12:16])[0], 20
            if interface >= len(interfaces):
                raise PcapError("pcapng packet #%d at byte offset %d names interface %d but only %d were described"
                                % (number, offset, interface, len(interfaces)))
            if start + cap_len > len(body):
                raise PcapError("pcapng packet #%d at byte offset %d claims %d captured bytes, block holds %d"
                                % (number, offset, cap_len, len(body) - start))
            yield interfaces[interface][0], body[start:start + cap_len]
        offset += length


def iter_frames(data):
    """Yield ``(linktype, frame_bytes)`` for every packet of a classic pcap or pcapng capture."""
    if not isinstance(data, (bytes, bytearray)):
        raise PcapError("expected the capture as bytes; got a %s" % type(data).__name__)
    data = bytes(data)
    if len(data) < 4:
        raise PcapError("not a capture: only %d bytes; a pcap file header alone is 24 bytes" % len(data))
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
        return _classic_packets(data)
    if magic == b"\x0a\x0d\x0d\x0a":
        return _pcapng_packets(data)
    raise PcapError("not a pcap or pcapng capture: the file starts with bytes %s, expected a pcap magic "
                    "(a1b2c3d4 / a1b23c4d, either byte order) or a pcapng section header (0a0d0d0a)"
                    % binascii.hexlify(magic).decode())


# ---------------------------------------------------------------- link, IP and TCP layers


def _ip_from_frame(linktype, frame):
    """The IP packet inside a link-layer frame, or None for anything else (ARP, unknown link types)."""
    if linktype == LINKTYPE_ETHERNET:
        offset, ethertype = 14, struct.unpack(">H", frame[12:14])[0] if len(frame) >= 14 else 0
        while ethertype in (0x8100, 0x88A8) and len(frame) >= offset + 4:  # VLAN tags
            ethertype = struct.unpack(">H", frame[offset + 2:offset + 4])[0]
            offset += 4
        return frame[offset:] if ethertype in (0x0800, 0x86DD) else None
    if linktype == LINKTYPE_LINUX_SLL:
        return frame[16:] if frame[14:16] in (b"\x08\x00", b"\x86\xdd") else None
    if linktype == LINKTYPE_LINUX_SLL2:
        return frame[20:] if frame[0:2] in (b"\x08\x00", b"\x86\xdd") else None
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return frame
    if linktype == LINKTYPE_NULL:
        if len(frame) < 4:
            return None
        family = min(struct.unpack("<I", frame[:4])[0], struct.unpack(">I", frame[:4])[0])  # writer's byte order
        return frame[4:] if family in (2, 10, 24, 28, 30) else None
    return None


def _tcp_from_ip(packet):
    """``(src, dst, tcp_segment)`` or None when the packet is not (unfragmented) TCP."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        header_len = (packet[0] & 0x0F) * 4
        total_len = struct.unpack(">H", packet[2:4])[0]
        fragment = struct.unpack(">H", packet[6:8])[0]
        if packet[9] != 6 or fragment & 0x3FFF:
            return None
        return packet[12:16], packet[16:20], packet[header_len:total_len or len(packet)]
    if version == 6 and len(packet) >= 40:
        next_header, offset = packet[6], 40
        end = 40 + struct.unpack(">H", packet[4:6])[0]
        while next_header in (0, 43, 60) and len(packet) >= offset + 8:  # hop-by-hop, routing, dest. options
            next_header, offset = packet[offset], offset + (packet[offset + 1] + 1) * 8
        if next_header != 6:
            return None
        return packet[8:24], packet[24:40], packet[offset:end]
    return None


class _Direction:
    """One direction of a TCP connection: segments by sequence number, put in order on demand."""

    def __init__(self):
        self.base = None
        self.segments = []
        self.sent_syn_only = False

    def add(self, seq, flags, payload):
        if flags & 0x02:  # SYN: data starts one after the initial sequence number
            self.base = (seq + 1) % _SEQ_SPACE
            self.sent_syn_only = self.sent_syn_only or not flags & 0x10
            seq = self.base
        if payload:
            if self.base is None:
                self.base = seq
            self.segments.append((seq, payload))

    def stream(self):
        """The in-order payload up to the first hole; bytes sent again are taken once."""
        if self.base is None:
            return b""
        placed = []
        for seq, payload in self.segments:
            rel = (seq - self.base) % _SEQ_SPACE
            if rel >= _SEQ_SPACE // 2:
                rel -= _SEQ_SPACE
            placed.append((rel, payload))
        placed.sort(key=lambda item: item[0])
        out = bytearray()
        for rel, payload in placed:
            if rel > len(out):
                break
            out += payload[len(out) - rel:]
        return bytes(out)


# ---------------------------------------------------------------- TLS and HTTP parsing


def _read_vector(data, offset, len_size):
    size = int.from_bytes(data[offset:offset + len_size], "big")
    return data[offset + len_size:offset + len_size + size], offset + len_size + size


def _extensions(body, offset):
    block = _read_vector(body, offset, 2)[0]
    pos = 0
    while pos + 4 <= len(block):
        ext_type, ext_len = struct.unpack(">HH", block[pos:pos + 4])
        yield ext_type, block[pos + 4:pos + 4 + ext_len]
        pos += 4 + ext_len


def _parse_hello(msg_type, body, found):
    offset = 2 + 32
    offset = _read_vector(body, offset, 1)[1]  # skip the session id
    if msg_type == 1:
        offset = _read_vector(body, offset, 2)[1]  # skip the cipher suites
        offset = _read_vector(body, offset, 1)[1]  # skip the compression methods
    else:
        offset += 3  # chosen cipher suite and compression method
    selected = struct.unpack(">H", body[0:2])[0]
    for ext_type, ext in _extensions(body, offset):
        if ext_type == EXT_SERVER_NAME and msg_type == 1:
            names = _read_vector(ext, 0, 2)[0]
            pos = 0
            while pos + 3 <= len(names):
                name, next_pos = _read_vector(names, pos + 1, 2)
                if names[pos] == 0:
                    _add_unique(found["sni"], name.decode("ascii", "replace"))
                pos = next_pos
        elif ext_type == EXT_ALPN:
            protocols = _read_vector(ext, 0, 2)[0]
            pos = 0
            while pos < len(protocols):
                protocol, pos = _read_vector(protocols, pos, 1)
                _add_unique(found["alpn"], protocol.decode("ascii", "replace"))
        elif ext_type == EXT_SUPPORTED_VERSIONS and msg_type == 2 and len(ext) == 2:
            selected = struct.unpack(">H", ext)[0]
    if msg_type == 2:
        _add_unique(found["tls_versions"], TLS_VERSIONS.get(selected, "0x%04x" % selected))


def _add_unique(items, value):
    if value not in items:
        items.append(value)


def _count(counter, key):
    counter[key] = counter.get(key, 0) + 1


def _looks_like_tls(stream):
    return len(stream) >= 3 and stream[0] in RECORD_TYPES and stream[1] == 3 and stream[2] <= 4


def _walk_tls(stream, found, role):
    """Count records; parse handshake messages until this side switches to encryption."""
    offset, encrypted, pending = 0, False, b""
    while offset + 5 <= len(stream) and _looks_like_tls(stream[offset:offset + 3]):
        content_type = stream[offset]
        length = struct.unpack(">H", stream[offset + 3:offset + 5])[0]
        if offset + 5 + length > len(stream):
            break  # the rest of this record was not captured
        fragment = stream[offset + 5:offset + 5 + length]
        _count(found["tls_records"], RECORD_TYPES[content_type])
        if content_type == 20:
            encrypted = True
        elif content_type == 22 and not encrypted:
            pending += fragment
            while len(pending) >= 4 and len(pending) >= 4 + int.from_bytes(pending[1:4], "big"):
                msg_type, msg_len = pending[0], int.from_bytes(pending[1:4], "big")
                body, pending = pending[4:4 + msg_len], pending[4 + msg_len:]
                _count(found["tls_handshakes"], HANDSHAKE_TYPES.get(msg_type, "type_%d" % msg_type))
                if msg_type in (1, 2):
                    try:
                        _parse_hello(msg_type, body, found)
                    except (struct.error, IndexError):
                        found["notes"].append("a %s could not be fully parsed" % HANDSHAKE_TYPES[msg_type])
                elif msg_type == 11 and role == "client" and _certificate_list_length(body) > 0:
                    found["client_certificate_seen"] = True
        offset += 5 + length


def _certificate_list_length(body):
    """Length of a TLS 1.2 Certificate message's list; 0 when the client had no certificate to send."""
    return int.from_bytes(body[0:3], "big") if len(body) >= 3 else 0


def _walk_http(stream, found):
    offset = 0
    while offset < len(stream):
        request = _HTTP_REQUEST.match(stream, offset)
        response = None if request else _HTTP_RESPONSE.match(stream, offset)
        if not request and not response:
            return
        line = stream[offset:(request or response).end() - 2].decode("latin-1")
        found["http_requests" if request else "http_responses"].append(line)
        head_end = stream.find(b"\r\n\r\n", offset)
        if head_end < 0:
            return
        headers = stream[offset:head_end].lower()
        offset = head_end + 4
        length = re.search(rb"\r\ncontent-length:\s*(\d+)", headers)
        if length:
            offset += int(length.group(1))
        elif b"\r\ntransfer-encoding:" in headers and b"chunked" in headers:
            offset = _skip_chunks(stream, offset)
        elif response and not re.match(rb"http/\d\.\d (1\d\d|204|304)", headers):
            return  # body runs to the end of the connection


def _skip_chunks(stream, offset):
    while True:
        line_end = stream.find(b"\r\n", offset)
        if line_end < 0:
            return len(stream)
        try:
            size = int(stream[offset:line_end].split(b";")[0], 16)
        except ValueError:
            return len(stream)
        offset = line_end + 2 + size + 2
        if size == 0:
            trailer_end = stream.find(b"\r\n", offset - 2)
            return len(stream) if trailer_end < 0 else trailer_end + 2


# ---------------------------------------------------------------- public API


def _verdict(found):
    tls = bool(found["tls_records"])
    http = bool(found["http_requests"] or found["http_responses"])
    if tls and http:
        return "mixed"
    if tls:
        return "encrypted"
    if http:
        return "plaintext"
    return "no-traffic"


def tcp_segments(pcap_bytes):
    """Yield ``(src, sport, dst, dport, seq, flags, payload)`` for every TCP segment of a capture.

    Addresses are packed bytes (4 or 16). Packets that are not TCP over IPv4/IPv6 are skipped.
    """
    for linktype, frame in iter_frames(pcap_bytes):
        parsed = _tcp_from_ip(_ip_from_frame(linktype, frame))
        if parsed is None or len(parsed[2]) < 20:
            continue
        src, dst, segment = parsed
        sport, dport, seq = struct.unpack(">HHI", segment[:8])
        yield src, sport, dst, dport, seq, segment[13], segment[(segment[12] >> 4) * 4:]


def summarize(pcap_bytes):
    """What the TCP traffic in a capture was: TLS records and hellos, cleartext HTTP, and a verdict.

    ``verdict`` is ``encrypted`` (TLS, no cleartext HTTP), ``plaintext`` (cleartext HTTP, no TLS),
    ``mixed`` (both) or ``no-traffic`` (neither). ``client_certificate_seen`` is True when the
    connection's client sent a readable Certificate message (TLS 1.2; TLS 1.3 encrypts it).
    ``unclassified_bytes`` counts in-order payload that was neither TLS nor HTTP/1.x (it does not
    change the verdict, but a non-zero value with ``no-traffic`` means some other cleartext protocol).
    """
    connections = {}
    packets = sum(1 for _frame in iter_frames(pcap_bytes))
    for src, sport, dst, dport, seq, flags, payload in tcp_segments(pcap_bytes):
        key = ((src, sport), (dst, dport))
        connection = connections.setdefault(frozenset(key), {})
        connection.setdefault(key, _Direction()).add(seq, flags, payload)

    found = {
        "tls_records": {}, "tls_handshakes": {}, "tls_versions": [], "sni": [], "alpn": [],
        "client_certificate_seen": False, "http_requests": [], "http_responses": [], "unclassified_bytes": 0,
        "notes": [],
    }
    for directions in connections.values():
        streams = {key: direction.stream() for key, direction in directions.items()}
        client = _client_side(directions, streams)
        for key, stream in streams.items():
            if _looks_like_tls(stream):
                _walk_tls(stream, found, "client" if key == client else "server")
            elif _HTTP_REQUEST.match(stream) or _HTTP_RESPONSE.match(stream):
                _walk_http(stream, found)
            else:
                found["unclassified_bytes"] += len(stream)
    found.update(tcp_streams=len(connections), packets=packets)
    found["verdict"] = _verdict(found)
    return found


def _client_side(directions, streams):
    for key, stream in streams.items():  # the side that sent the ClientHello
        if _looks_like_tls(stream) and stream[0] == 22 and len(stream) > 5 and stream[5] == 1:
            return key
    for key, direction in directions.items():  # else the side that opened the connection
        if direction.sent_syn_only:
            return key
    return None


def summarize_base64(text):
    """``summarize`` for a capture given as base64 text (how it travels through Ansible)."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if not isinstance(text, str):
        raise PcapError("expected base64 text of a capture; got a %s" % type(text).__name__)
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PcapError("not base64 (%s): pass the capture file through `base64 -w0` or the slurp module's "
                        "'content'" % exc) from None
    return summarize(data)
