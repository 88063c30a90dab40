"""Name lookup for the lab apps: the system resolver, else an A query to the cluster DNS with pod search domains.

Pods of the lab share the host's /etc/resolv.conf, so short service names (``details``) are looked up here
the way a pod's resolv.conf would (``<name>.<ns>.svc.cluster.local``, then ``<name>.svc.cluster.local``).
"""
import os
import random
import socket
import struct

CLUSTER_DNS = os.environ.get("MESHLAB_CLUSTER_DNS", "198.19.0.10")
QUERY_TIMEOUT = 2.0


def _query(name: str, server: str) -> str | None:
    ident = random.randrange(65536)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(QUERY_TIMEOUT)
        sock.sendto(packet, (server, 53))
        data, _ = sock.recvfrom(2048)
    got_id, flags, _qd, answers = struct.unpack("!HHHH", data[:8])
    if got_id != ident or flags & 0x000F or not answers:
        return None
    offset = 12 + len(question) + 4
    for _ in range(answers):
        if data[offset] & 0xC0 == 0xC0:
            offset += 2
        else:
            while data[offset]:
                offset += data[offset] + 1
            offset += 1
        rtype, _cls, _ttl, length = struct.unpack("!HHIH", data[offset:offset + 10])
        offset += 10
        if rtype == 1 and length == 4:
            return socket.inet_ntoa(data[offset:offset + 4])
        offset += length
    return None


def resolve(name: str) -> str:
    try:
        return socket.getaddrinfo(name, None, socket.AF_INET)[0][4][0]
    except OSError:
        pass
    namespace = os.environ.get("MESHLAB_POD_NAMESPACE", "default")
    candidates = [name] if "." in name else []
    candidates += [f"{name}.{namespace}.svc.cluster.local", f"{name}.svc.cluster.local", f"{name}.cluster.local"]
    for candidate in candidates:
        try:
            address = _query(candidate, CLUSTER_DNS)
        except OSError:
            address = None
        if address:
            return address
    raise OSError(f"cannot resolve {name!r}")
