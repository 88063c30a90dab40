"""The HTTPS listener: routes /healthz, /containerLogs, /exec and /attach, upgrades to WebSocket or SPDY."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

from . import spdy_exec, websocket_exec
from .exec_session import ExecOptions, run_exec
from .http1 import BadRequest, Request, read_request, response_head, send_simple
from .logs import serve_logs
from .spdy import SpdySession
from .websocket import WebSocketConnection, accept_key

log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 5.0


def tls_context(certfile: str, keyfile: str, client_ca: str | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    if client_ca:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["http/1.1"])
    return context


class KubeletApi:
    def __init__(self, runner):
        self.runner = runner
        self.connections: set[asyncio.StreamWriter] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.add(writer)
        try:
            request = await read_request(reader)
            if request is not None:
                await self._route(request, reader, writer)
        except BadRequest as exc:
            with contextlib.suppress(ConnectionError):
                await send_simple(writer, 400, f"{exc}\n")
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.TimeoutError):
            pass
        finally:
            self.connections.discard(writer)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT_S)
            except (ConnectionError, ssl.SSLError, asyncio.TimeoutError):
                writer.transport.abort()  # the peer never finished the TLS close: drop it

    async def _route(self, request: Request, reader, writer) -> None:
        parts = [part for part in request.path.split("/") if part]
        if request.path == "/healthz" and request.method in ("GET", "HEAD"):
            await send_simple(writer, 200, "ok")
        elif len(parts) == 4 and parts[0] == "containerLogs" and request.method == "GET":
            await serve_logs(self.runner, request, writer, reader, *parts[1:])
        elif len(parts) in (4, 5) and parts[0] in ("exec", "attach") and request.method in ("GET", "POST"):
            # /exec/<ns>/<pod>/<container> or /exec/<ns>/<pod>/<uid>/<container>
            namespace, pod, container = parts[1], parts[2], parts[-1]
            await self._stream(request, reader, writer, parts[0], namespace, pod, container)
        else:
            await send_simple(writer, 404, "404 page not found\n")

    async def _stream(self, request: Request, reader, writer, verb: str, namespace: str, pod: str,
                      container: str) -> None:
        options = ExecOptions.from_request(request)
        if verb == "attach":
            await send_simple(writer, 400, "attach is not supported by the lab kubelet; use exec\n")
            return
        if problem := options.problem(attach=False):
            await send_simple(writer, 400, f"{problem}\n")
            return
        found = self.runner.resolve(namespace, pod, container)
        if found is not True:
            await send_simple(writer, 404, f"{found}\n")
            return
        upgrade = request.header("upgrade").lower()
        if upgrade == "websocket":
            await self._exec_websocket(request, reader, writer, options, namespace, pod, container)
        elif upgrade.startswith("spdy/3"):
            await self._exec_spdy(request, reader, writer, options, namespace, pod, container)
        else:
            await send_simple(writer, 400, "Upgrade request required\n")

    async def _exec_websocket(self, request, reader, writer, options, namespace, pod, container) -> None:
        key = request.header("sec-websocket-key")
        protocol = websocket_exec.choose_protocol(request.header_tokens("sec-websocket-protocol"))
        if not key or request.header("sec-websocket-version") != "13":
            await send_simple(writer, 400, "bad WebSocket handshake (need Sec-WebSocket-Key and version 13)\n")
            return
        if protocol is None:
            await send_simple(writer, 400, "none of the offered subprotocols is supported: "
                              f"{request.header('sec-websocket-protocol')}\n")
            return
        headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": accept_key(key)}
        if protocol:
            headers["Sec-WebSocket-Protocol"] = protocol
        writer.write(response_head(101, headers))
        await writer.drain()
        log.info("exec %s/%s/%s %s over websocket %s", namespace, pod, container, options.command, protocol or "-")
        transport = websocket_exec.WebSocketChannels(WebSocketConnection(reader, writer), writer, protocol)
        await run_exec(self.runner, namespace, pod, container, options, transport)

    async def _exec_spdy(self, request, reader, writer, options, namespace, pod, container) -> None:
        offered = request.header_tokens("x-stream-protocol-version")
        protocol = spdy_exec.choose_protocol(offered)
        if protocol is None:
            await send_simple(writer, 403, f"unable to upgrade: no common protocol among {offered}\n")
            return
        headers = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}
        if protocol:
            headers["X-Stream-Protocol-Version"] = protocol
        writer.write(response_head(101, headers))
        await writer.drain()
        log.info("exec %s/%s/%s %s over spdy %s", namespace, pod, container, options.command, protocol or "-")
        session = SpdySession(reader, writer)
        session_task = asyncio.create_task(session.run())
        try:
            streams = await spdy_exec.collect_streams(session, options, protocol)
        except (asyncio.TimeoutError, ConnectionError):
            session_task.cancel()
            return
        transport = spdy_exec.SpdyChannels(session, streams, protocol)
        await run_exec(self.runner, namespace, pod, container, options, transport)
        session_task.cancel()
        await asyncio.gather(session_task, return_exceptions=True)


_APIS: dict[int, KubeletApi] = {}


async def serve_kubelet_api(runner, host: str, port: int, certfile: str, keyfile: str,
                            client_ca: str | None = None) -> asyncio.AbstractServer:
    """Start the HTTPS kubelet API on host:port; see the package docstring for the contract."""
    for path in (certfile, keyfile, *([client_ca] if client_ca else [])):
        with open(path, "rb"):
            pass  # fail here, with the path in the error, before anything listens
    api = KubeletApi(runner)
    server = await asyncio.start_server(api.handle, host, port, ssl=tls_context(certfile, keyfile, client_ca),
                                        limit=1 << 20)
    _APIS[id(server)] = api
    return server


async def stop_kubelet_api(server: asyncio.AbstractServer) -> None:
    """Stop listening and drop every open connection (running exec processes are then killed)."""
    server.close()
    api = _APIS.pop(id(server), None)
    for writer in list(api.connections if api else ()):
        writer.transport.abort()
    await server.wait_closed()
