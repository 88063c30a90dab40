"""Envoy admin (127.0.0.1:15000) and the pilot-agent status port (15021) of a proxy."""
import asyncio
import json

from meshlab_lab.mesh import netio
from meshlab_lab.mesh.upstream import simple_response

ADMIN_PORT, STATUS_PORT, AGENT_PORT = 15000, 15021, 15020


async def app_probe(probers: dict, path: str) -> bytes:
    """pilot-agent's app-health endpoint: run the original httpGet probe against the app on loopback."""
    probe = probers.get(path)
    if probe is None:
        return simple_response("404 Not Found", b"unknown app probe\n")
    get = probe["httpGet"]
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", int(get["port"])),
                                                float(probe.get("timeoutSeconds") or 1))
        writer.write(f"GET {get['path']} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        status_line = await asyncio.wait_for(reader.readline(), float(probe.get("timeoutSeconds") or 1))
        await netio.close_quietly(writer)
        code = int(status_line.split()[1])
    except (OSError, ValueError, IndexError, asyncio.TimeoutError):
        return simple_response("503 Service Unavailable", b"app probe failed\n")
    return simple_response("200 OK" if 200 <= code < 400 else "503 Service Unavailable", b"")


def _answer(proxy, path: str) -> bytes:
    path = path.split("?", 1)[0].rstrip("/") or "/"
    if path == "/config_dump":
        if not proxy.ready:
            return simple_response("503 Service Unavailable", b"no config loaded yet\n")
        return simple_response("200 OK", json.dumps(proxy.config_dump(), indent=2).encode(), "application/json")
    if path == "/stats":
        return simple_response("200 OK", proxy.stats.render().encode())
    if path in ("/ready", "/healthz/ready"):
        if proxy.ready:
            return simple_response("200 OK", b"LIVE\n" if path == "/ready" else b"")
        return simple_response("503 Service Unavailable", b"PRE_INITIALIZING\n")
    if path == "/server_info":
        body = {"state": "LIVE" if proxy.ready else "PRE_INITIALIZING", "command_line_options": {}}
        return simple_response("200 OK", json.dumps(body).encode(), "application/json")
    return simple_response("404 Not Found", b"invalid path\n")


def _handler(proxy, allowed: tuple[str, ...] | None, probers: dict | None = None):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await netio.read_http_head(reader, 10)
            _method, target, _headers = netio.parse_request_head(head)
            if probers is not None:
                writer.write(await app_probe(probers, target.split("?", 1)[0]))
            elif allowed and target.split("?", 1)[0] not in allowed:
                writer.write(simple_response("404 Not Found"))
            else:
                writer.write(_answer(proxy, target))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
            pass
        await netio.close_quietly(writer)
    return handle


async def serve_admin(proxy):
    return await asyncio.start_server(_handler(proxy, None), "127.0.0.1", ADMIN_PORT)


async def serve_status(proxy):
    return await asyncio.start_server(_handler(proxy, ("/healthz/ready",)), "0.0.0.0", STATUS_PORT)


async def serve_app_probes(probers: dict):
    return await asyncio.start_server(_handler(None, None, probers), "0.0.0.0", AGENT_PORT)
