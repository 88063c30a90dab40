"""Client side of the proxy: pick an endpoint of a cluster and open a plain or mutual-TLS connection to it.

HTTP handling is deliberately minimal: the request head is read once, forwarded, and the rest of the
connection is piped. One routing decision per downstream connection (keep-alive requests after the
first one follow the first one's upstream); clients of the lab send one request per connection.
"""
import asyncio
import email.utils
import itertools
import ssl

from meshlab_lab.mesh import config_dump, netio

CONNECT_TIMEOUT = 10.0
RESET_TEXT = "upstream connect error or disconnect/reset before headers. reset reason: "
_round_robin = itertools.count()


class UpstreamFailure(Exception):
    """Raised with Envoy's reset reason when no response byte could be obtained."""


def envoy_503(reason: str) -> bytes:
    body = (RESET_TEXT + reason).encode()
    head = ("HTTP/1.1 503 Service Unavailable\r\n"
            f"content-length: {len(body)}\r\ncontent-type: text/plain\r\n"
            f"date: {email.utils.formatdate(usegmt=True)}\r\nserver: envoy\r\nconnection: close\r\n\r\n")
    return head.encode() + body


def simple_response(status: str, body: bytes = b"", content_type: str = "text/plain") -> bytes:
    head = (f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\ncontent-type: {content_type}\r\n"
            f"date: {email.utils.formatdate(usegmt=True)}\r\nserver: istio-envoy\r\nconnection: close\r\n\r\n")
    return head.encode() + body


class Upstreams:
    def __init__(self, proxy):
        self.proxy = proxy

    def cluster_for(self, ip: str, port: int) -> dict | None:
        config = self.proxy.config
        name = config.get("vips", {}).get(f"{ip}:{port}")
        if name:
            return self.proxy.clusters.get(name)
        # direct pod-IP traffic: the cluster that owns that endpoint decides (lab simplification)
        for cluster in config.get("clusters", []):
            if cluster["port"] == port or any(e["port"] == port for e in cluster["endpoints"]):
                if any(e["address"] == ip and e["port"] == port for e in cluster["endpoints"]):
                    return dict(cluster, endpoints=[e for e in cluster["endpoints"]
                                                    if e["address"] == ip and e["port"] == port])
        return None

    def _use_tls(self, cluster: dict, endpoint: dict) -> bool:
        if cluster["tls"] == "ISTIO_MUTUAL":
            return True
        return cluster["tls"] == "AUTO" and bool(endpoint.get("mtls"))

    async def connect(self, cluster: dict | None, orig: tuple[str, int], http: bool):
        """Open the upstream; returns (reader, writer). Raises UpstreamFailure with Envoy's reason."""
        stats = self.proxy.stats
        if cluster is None:
            name, host, port, use_tls = "PassthroughCluster", orig[0], orig[1], False
        else:
            endpoints = cluster["endpoints"]
            if not endpoints:
                stats.inc(f"cluster.{cluster['name']}.upstream_cx_none_healthy")
                raise UpstreamFailure("no healthy upstream")
            endpoint = endpoints[next(_round_robin) % len(endpoints)]
            name, host, port = cluster["name"], endpoint["address"], endpoint["port"]
            use_tls = self._use_tls(cluster, endpoint)
        stats.inc(f"cluster.{name}.upstream_cx_total")
        if http:
            stats.inc(f"cluster.{name}.upstream_rq_total")
        ctx = None
        if use_tls:
            alpn = (["istio-http/1.1"] if http else []) + config_dump.OUTBOUND_ALPN
            ctx = self.proxy.client_context(alpn)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                host, port, ssl=ctx, server_hostname=config_dump.sni(cluster) if ctx else None,
                limit=netio.MAX_HEAD), CONNECT_TIMEOUT)
        except ssl.SSLError as exc:
            stats.inc(f"cluster.{name}.ssl.connection_error")
            stats.inc(f"cluster.{name}.upstream_cx_connect_fail")
            raise UpstreamFailure(f"connection failure, transport failure reason: TLS error: {exc}") from exc
        except (ConnectionResetError, asyncio.IncompleteReadError) as exc:
            stats.inc(f"cluster.{name}.upstream_cx_connect_fail")
            if ctx:
                stats.inc(f"cluster.{name}.ssl.connection_error")
            raise UpstreamFailure("connection termination") from exc
        except (OSError, asyncio.TimeoutError) as exc:
            stats.inc(f"cluster.{name}.upstream_cx_connect_fail")
            raise UpstreamFailure("connection failure") from exc
        if ctx:
            peer = netio.peer_spiffe_id(writer.get_extra_info("ssl_object"))
            if peer is None:
                stats.inc(f"cluster.{name}.ssl.connection_error")
                writer.transport.abort()
                raise UpstreamFailure("connection failure, transport failure reason: TLS error: no SPIFFE identity")
            stats.inc(f"cluster.{name}.ssl.handshake")
        return reader, writer

    async def relay(self, client_reader, client_writer, head: bytes, cluster, orig, http: bool) -> None:
        """Forward ``head`` and then everything else both ways.

        For HTTP, an upstream that fails before its first response byte turns into Envoy's 503; for other
        TCP traffic the client connection is reset instead.
        """
        try:
            up_reader, up_writer = await self.connect(cluster, orig, http)
        except UpstreamFailure as failure:
            await self._fail(client_writer, http, str(failure))
            return
        if head:
            up_writer.write(head)
        # the request body (or a client-first protocol) must flow while we wait for the answer
        to_upstream = asyncio.create_task(netio.pipe(client_reader, up_writer))
        if http:
            try:
                first = await up_reader.read(65536)
            except (ConnectionError, OSError, ssl.SSLError):
                first = b""
            if not first:
                to_upstream.cancel()
                up_writer.transport.abort()
                await self._fail(client_writer, http, "connection termination")
                return
            client_writer.write(first)
        await asyncio.gather(to_upstream, netio.pipe(up_reader, client_writer))
        await netio.close_quietly(up_writer)
        await netio.close_quietly(client_writer)

    async def _fail(self, client_writer, http: bool, reason: str) -> None:
        if http:
            client_writer.write(envoy_503(reason))
            await netio.close_quietly(client_writer)
        else:
            netio.reset_writer(client_writer)
