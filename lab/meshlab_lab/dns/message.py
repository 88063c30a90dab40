"""Just enough of the DNS wire format (RFC 1035) to answer A queries."""
import ipaddress
import struct

TYPE_A = 1
CLASS_IN = 1
RCODE_NXDOMAIN = 3
RCODE_FORMERR = 1
RCODE_REFUSED = 5


class DnsFormatError(ValueError):
    pass


def parse_question(data: bytes) -> tuple[int, int, str, int, int, int]:
    """(id, flags, name, qtype, qclass, end offset) of the first question."""
    if len(data) < 12:
        raise DnsFormatError("short header")
    ident, flags, qdcount = struct.unpack("!HHH", data[:6])
    if qdcount < 1:
        raise DnsFormatError("no question")
    labels, pos = [], 12
    while True:
        if pos >= len(data):
            raise DnsFormatError("truncated name")
        length = data[pos]
        pos += 1
        if length == 0:
            break
        if length & 0xC0:
            raise DnsFormatError("compression in question")
        labels.append(data[pos:pos + length].decode("ascii", errors="replace"))
        pos += length
    if pos + 4 > len(data):
        raise DnsFormatError("truncated question")
    qtype, qclass = struct.unpack("!HH", data[pos:pos + 4])
    return ident, flags, ".".join(labels).lower(), qtype, qclass, pos + 4


def build_response(query: bytes, rcode: int, addresses: list[str], ttl: int = 5) -> bytes:
    try:
        ident, flags, _name, _qtype, _qclass, end = parse_question(query)
    except DnsFormatError:
        ident = struct.unpack("!H", query[:2])[0] if len(query) >= 2 else 0
        return struct.pack("!HHHHHH", ident, 0x8000 | RCODE_FORMERR, 0, 0, 0, 0)
    rd = flags & 0x0100
    header = struct.pack("!HHHHHH", ident, 0x8000 | 0x0400 | rd | rcode, 1, len(addresses), 0, 0)
    answers = b"".join(struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, ttl, 4) + ipaddress.IPv4Address(a).packed
                       for a in addresses)
    return header + query[12:end] + answers
