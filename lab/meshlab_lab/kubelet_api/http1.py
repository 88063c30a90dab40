"""Just enough HTTP/1.1 for a kubelet endpoint: one request head per connection, simple responses."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, unquote, urlsplit

MAX_HEAD = 64 * 1024


class BadRequest(Exception):
    """The request head cannot be parsed."""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str] = field(default_factory=dict)

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def header_tokens(self, name: str) -> list[str]:
        """A comma-separated header as a list of trimmed tokens, in the peer's order."""
        return [token.strip() for token in self.header(name).split(",") if token.strip()]

    def first(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0] if values else default

    def flag(self, *names: str) -> bool:
        """A boolean query parameter as Kubernetes writes them ("1", "true", "True")."""
        return any(self.first(name).lower() in ("1", "true", "yes") for name in names)


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """Parse one request head; None if the peer closed before sending one."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise BadRequest("connection closed inside the request head") from exc
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("request head too large") from exc
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, _version = lines[0].split(" ", 2)
    except ValueError as exc:
        raise BadRequest(f"bad request line {lines[0]!r}") from exc
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(f"bad header line {line!r}")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    url = urlsplit(target)
    return Request(method.upper(), unquote(url.path), parse_qs(url.query, keep_blank_values=True), headers)


def response_head(status: int, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def send_simple(writer: asyncio.StreamWriter, status: int, body: str | bytes,
                      content_type: str = "text/plain; charset=utf-8") -> None:
    """A complete response with a body; the connection is closed afterwards."""
    payload = body.encode() if isinstance(body, str) else body
    writer.write(response_head(status, {
        "Content-Type": content_type,
        "Content-Length": str(len(payload)),
        "Connection": "close",
    }) + payload)
    await writer.drain()
