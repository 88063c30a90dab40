"""The lab's Envoy stand-in: ``pilot-agent proxy sidecar`` and ``pilot-agent proxy router``.

Sidecar (runs as uid 1337 in the pod's network namespace, behind istio-iptables):
- 15001 virtualOutbound: SO_ORIGINAL_DST -> cluster from the config -> endpoint pod IP, plain or mTLS;
- 15006 virtualInbound: per original destination port STRICT / PERMISSIVE / DISABLE, then 127.0.0.1:<port>;
- 127.0.0.1:15000 admin (/config_dump, /stats, /ready), 0.0.0.0:15021 /healthz/ready.
Router (ingress gateway): Gateway server ports (8080, ...) route by Host + VirtualService to clusters.
"""
import argparse
import asyncio
import json
import logging
import os
import socket
import ssl
import time
from pathlib import Path

from meshlab_lab.mesh import config_dump, netio, proxy_config, stats as stats_mod
from meshlab_lab.mesh.admin import serve_admin, serve_app_probes, serve_status
from meshlab_lab.mesh.routing import match_route
from meshlab_lab.mesh.upstream import Upstreams, simple_response

LOG = logging.getLogger("meshlab.proxy")
OUTBOUND_PORT, INBOUND_PORT = 15001, 15006
PEEK_TIMEOUT = 5.0
HEAD_TIMEOUT = 30.0
RELOAD_POLL = 0.1
INBOUND = "listener." + config_dump.INBOUND_LISTENER
OUTBOUND = "listener." + config_dump.OUTBOUND_LISTENER


class Proxy:
    def __init__(self, folder: Path, kind: str):
        self.folder = Path(folder)
        self.kind = kind
        self.watcher = proxy_config.ConfigWatcher(self.folder)
        self.config: dict = {}
        self.clusters: dict = {}
        self.stats = stats_mod.Stats()
        self.upstreams = Upstreams(self)
        self.loaded_at = 0.0
        self._server_ctx = None
        self._client_ctxs: dict = {}
        self._servers: dict[int, asyncio.base_events.Server] = {}
        self._connections: set[asyncio.Task] = set()

    @property
    def ready(self) -> bool:
        return bool(self.config)

    # ---------------------------------------------------------------- config
    def reload(self) -> None:
        config = self.watcher.load()
        if config["kind"] != self.kind:
            raise proxy_config.ConfigError(f"config is for a {config['kind']}, this proxy is a {self.kind}")
        cert, key, root = self.watcher.paths()
        self._server_ctx = netio.server_context(cert, key, root, config_dump.INBOUND_ALPN + ["istio", "istio-http/1.1"])
        self._client_ctxs = {}
        self.config, self.clusters = config, {c["name"]: c for c in config["clusters"]}
        for cluster in config["clusters"]:
            self.stats.ensure(*stats_mod.cluster_counters(cluster["name"]))
        self.loaded_at = time.time()
        self.watcher.acknowledge(config)
        LOG.info("loaded config version %s", config.get("version"))

    def client_context(self, alpn: list[str]) -> ssl.SSLContext:
        key = tuple(alpn)
        if key not in self._client_ctxs:
            self._client_ctxs[key] = netio.client_context(*self.watcher.paths(), alpn)
        return self._client_ctxs[key]

    def config_dump(self) -> dict:
        cert, _key, root = self.watcher.paths()
        return config_dump.config_dump(self.config, Path(cert).read_bytes(), Path(root).read_bytes(), self.loaded_at)

    async def watch(self) -> None:
        while True:
            if self.watcher.changed():
                try:
                    self.reload()
                    if self.kind == "router":
                        await self._sync_gateway_ports()
                except (proxy_config.ConfigError, ValueError, OSError, ssl.SSLError) as exc:
                    LOG.error("rejected config: %s", exc)
                    self.watcher.skip_current()
            await asyncio.sleep(RELOAD_POLL)

    # ---------------------------------------------------------------- listeners
    async def _listen(self, port: int, handler, host="0.0.0.0") -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(512)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()

        async def accept_loop():
            while True:
                conn, _ = await loop.sock_accept(sock)
                conn.setblocking(False)
                # asyncio keeps only weak references to tasks: hold each one until it finishes, or the
                # garbage collector may destroy a connection's task mid-flight (a hung request).
                task = loop.create_task(self._guard(handler, conn))
                self._connections.add(task)
                task.add_done_callback(self._connections.discard)
        self._servers[port] = (sock, loop.create_task(accept_loop()))

    async def _guard(self, handler, conn) -> None:
        try:
            await handler(conn)
        except Exception:  # noqa: BLE001 - one broken connection must not stop the proxy
            LOG.exception("connection handler failed")
            netio.reset(conn)

    async def outbound(self, conn: socket.socket) -> None:
        self.stats.inc(f"{OUTBOUND}.downstream_cx_total")
        orig = netio.original_dst(conn)
        if orig[1] in (OUTBOUND_PORT, INBOUND_PORT):
            netio.reset(conn)
            return
        cluster = self.upstreams.cluster_for(*orig)
        first = await netio.peek(conn, 8, PEEK_TIMEOUT)
        http = netio.looks_like_http(first)
        reader, writer = await netio.accepted_streams(conn)
        head = b""
        if http:
            try:
                head = await netio.read_http_head(reader, HEAD_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
                netio.reset_writer(writer)
                return
        await self.upstreams.relay(reader, writer, head, cluster, orig, http)

    def inbound_mode(self, port: int) -> str:
        inbound = self.config.get("inbound", {})
        return inbound.get("ports", {}).get(str(port), inbound.get("default", "PERMISSIVE"))

    async def inbound(self, conn: socket.socket) -> None:
        self.stats.inc(f"{INBOUND}.downstream_cx_total")
        _ip, port = netio.original_dst(conn)
        mode = self.inbound_mode(port)
        first = await netio.peek(conn, 8, PEEK_TIMEOUT)
        tls = netio.looks_like_tls(first)
        if port == INBOUND_PORT or (mode == "STRICT" and not tls) or (mode == "DISABLE" and tls):
            # no filter chain matches: Envoy closes with a reset
            self.stats.inc(f"{INBOUND}.no_filter_chain_match")
            netio.reset(conn)
            return
        if tls:
            try:
                reader, writer = await netio.accepted_streams(conn, self._server_ctx)
            except (ssl.SSLError, ConnectionError, OSError, asyncio.TimeoutError):
                self.stats.inc(f"{INBOUND}.ssl.connection_error")
                netio.reset(conn)
                return
            if netio.peer_spiffe_id(writer.get_extra_info("ssl_object")) is None:
                self.stats.inc(f"{INBOUND}.ssl.connection_error")
                netio.reset_writer(writer)
                return
            self.stats.inc(f"{INBOUND}.ssl.handshake")
        else:
            reader, writer = await netio.accepted_streams(conn)
        try:
            app_reader, app_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            self.stats.inc(f"cluster.inbound|{port}||.upstream_cx_connect_fail")
            netio.reset_writer(writer)
            return
        self.stats.inc(f"cluster.inbound|{port}||.upstream_cx_total")
        await asyncio.gather(netio.pipe(reader, app_writer), netio.pipe(app_reader, writer))
        await netio.close_quietly(app_writer)
        await netio.close_quietly(writer)

    async def gateway(self, conn: socket.socket) -> None:
        port = conn.getsockname()[1]
        self.stats.inc(f"listener.0.0.0.0_{port}.downstream_cx_total")
        reader, writer = await netio.accepted_streams(conn)
        try:
            head = await netio.read_http_head(reader, HEAD_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
            netio.reset_writer(writer)
            return
        _method, target, headers = netio.parse_request_head(head)
        route = match_route(self.config.get("gateway", {}), port, headers.get("host", ""), target)
        if route is None:
            self.stats.inc(f"listener.0.0.0.0_{port}.no_route")
            writer.write(simple_response("404 Not Found"))
            await netio.close_quietly(writer)
            return
        await self.upstreams.relay(reader, writer, head, self.clusters[route["cluster"]], None, True)

    async def _sync_gateway_ports(self) -> None:
        wanted = {s["port"] for s in self.config.get("gateway", {}).get("servers", [])}
        for port in wanted - set(self._servers):
            await self._listen(port, self.gateway)
        for port in set(self._servers) - wanted - {15000, 15021}:
            sock, task = self._servers.pop(port)
            task.cancel()
            sock.close()

    async def run(self) -> None:
        if self.kind == "sidecar":
            await self._listen(OUTBOUND_PORT, self.outbound)
            await self._listen(INBOUND_PORT, self.inbound)
        await serve_admin(self)
        await serve_status(self)
        probers = os.environ.get("ISTIO_KUBE_APP_PROBERS")
        if probers:
            await serve_app_probes(json.loads(probers))
        await self.watch()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pilot-agent proxy")
    parser.add_argument("kind", choices=["sidecar", "router"])
    parser.add_argument("--config-dir", help="folder istiod writes to (default $MESHLAB_POD_DIR/istio-proxy)")
    args, _ignored = parser.parse_known_args(argv)  # Istio's own flags (--domain, ...) are accepted and ignored
    folder = args.config_dir or os.path.join(os.environ.get("MESHLAB_POD_DIR", "."), "istio-proxy")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    LOG.info("starting %s proxy, config in %s", args.kind, folder)
    try:
        asyncio.run(Proxy(Path(folder), args.kind).run())
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
