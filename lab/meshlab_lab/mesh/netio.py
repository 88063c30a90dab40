"""Socket-level helpers of the proxy: original destination, resets, peeking, piping, HTTP heads, TLS contexts."""
import asyncio
import socket
import ssl
import struct

SO_ORIGINAL_DST = 80  # from linux/netfilter_ipv4.h; not exported by the socket module
HTTP_METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"PATCH ", b"OPTIONS ", b"CONNECT ", b"TRACE ")
MAX_HEAD = 64 * 1024
SPIFFE_PREFIX = "spiffe://cluster.local/"


def original_dst(sock: socket.socket) -> tuple[str, int]:
    """The (ip, port) a REDIRECTed connection was addressed to, as netfilter remembers it."""
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port = struct.unpack("!H", raw[2:4])[0]
    return socket.inet_ntoa(raw[4:8]), port


def reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN (SO_LINGER 0), as Envoy does when it rejects a connection."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def reset_writer(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


async def peek(sock: socket.socket, size: int, timeout: float) -> bytes:
    """Wait until ``sock`` is readable and return its first bytes without consuming them (b"" on timeout/EOF)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        await asyncio.wait_for(ready, timeout)
    except asyncio.TimeoutError:
        return b""
    finally:
        loop.remove_reader(sock.fileno())
    try:
        return sock.recv(size, socket.MSG_PEEK)
    except OSError:
        return b""


def looks_like_tls(first: bytes) -> bool:
    return len(first) >= 2 and first[0] == 0x16 and first[1] == 0x03


def looks_like_http(first: bytes) -> bool:
    """True when the first bytes are (the start of) an HTTP/1.x request line."""
    return bool(first) and any(first.startswith(m) or m.startswith(first) for m in HTTP_METHODS)


async def read_http_head(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Read up to and including the blank line that ends an HTTP/1.1 request or response head."""
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)


def parse_request_head(head: bytes) -> tuple[str, str, dict]:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = (lines[0].split(" ") + ["", ""])[:3]
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


async def accepted_streams(sock: socket.socket, ssl_ctx: ssl.SSLContext | None = None, handshake_timeout=10.0):
    """Wrap an accepted socket (optionally as a TLS server) into asyncio streams."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_HEAD)
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock=sock, ssl=ssl_ctx,
                                                      ssl_handshake_timeout=handshake_timeout if ssl_ctx else None)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


def server_context(cert: str, key: str, root: str, alpn: list[str]) -> ssl.SSLContext:
    """DownstreamTlsContext with require_client_certificate: the peer must present a cert from the mesh root."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(root)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(alpn)
    return ctx


def client_context(cert: str, key: str, root: str, alpn: list[str]) -> ssl.SSLContext:
    """UpstreamTlsContext: present our workload cert, verify the server against the mesh root (SAN checked after)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # SPIFFE identities are URI SANs; checked by peer_spiffe_id instead
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(root)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(alpn)
    return ctx


def peer_spiffe_id(ssl_object) -> str | None:
    cert = ssl_object.getpeercert() if ssl_object else None
    for kind, value in (cert or {}).get("subjectAltName", ()):
        if kind == "URI" and value.startswith(SPIFFE_PREFIX):
            return value
    return None


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the far side (close it, for TLS)."""
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        else:
            # TLS cannot half-close: end the whole connection, or both proxies would wait for each other
            writer.close()
    except (ConnectionError, OSError, ssl.SSLError):
        reset_writer(writer)  # pass a reset on as a reset


async def close_quietly(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 2)
    except (ConnectionError, OSError, ssl.SSLError, asyncio.TimeoutError):
        pass
