"""Server side of RFC 6455 WebSocket: the opening handshake answer and the framing layer.

Only what Kubernetes' channel protocols need: binary and text messages (fragmented or not),
ping/pong and close. Client frames must be masked (RFC 6455 5.1); server frames are not.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import struct

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 16 * 1024 * 1024
CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG = 1000, 1002, 1009


class WebSocketError(Exception):
    """The peer broke RFC 6455 framing rules."""


def accept_key(client_key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(client_key.strip().encode() + _GUID).digest()).decode()


def encode_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        head = struct.pack(">BB", first, size)
    elif size < 1 << 16:
        head = struct.pack(">BBH", first, 126, size)
    else:
        head = struct.pack(">BBQ", first, 127, size)
    return head + payload


class WebSocketConnection:
    """Message-level reads and writes over an upgraded connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader = reader
        self._writer = writer
        self.close_sent = False
        self.close_received = False

    async def _read_frame(self) -> tuple[bool, int, bytes]:
        first, second = await self._reader.readexactly(2)
        fin, opcode = bool(first & 0x80), first & 0x0F
        if first & 0x70:
            raise WebSocketError("reserved bits set without a negotiated extension")
        if not second & 0x80:
            raise WebSocketError("client frame is not masked")
        size = second & 0x7F
        if size == 126:
            size, = struct.unpack(">H", await self._reader.readexactly(2))
        elif size == 127:
            size, = struct.unpack(">Q", await self._reader.readexactly(8))
        if size > MAX_MESSAGE:
            raise WebSocketError("frame too large")
        mask = await self._reader.readexactly(4)
        masked = await self._reader.readexactly(size)
        key = (mask * (size // 4 + 1))[:size]
        payload = (int.from_bytes(masked, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
        return fin, opcode, payload

    async def receive(self) -> bytes | None:
        """Next complete data message (text or binary) as bytes; None once the peer closed or vanished."""
        parts: list[bytes] = []
        try:
            while True:
                fin, opcode, payload = await self._read_frame()
                if opcode == OP_PING:
                    await self._send(OP_PONG, payload)
                elif opcode == OP_PONG:
                    continue
                elif opcode == OP_CLOSE:
                    self.close_received = True
                    await self.close(CLOSE_NORMAL)
                    return None
                elif opcode in (OP_TEXT, OP_BINARY, OP_CONTINUATION):
                    if (opcode == OP_CONTINUATION) != bool(parts):
                        raise WebSocketError("unexpected continuation frame")
                    parts.append(payload)
                    if sum(map(len, parts)) > MAX_MESSAGE:
                        raise WebSocketError("message too large")
                    if fin:
                        return b"".join(parts)
                else:
                    raise WebSocketError(f"unknown opcode {opcode}")
        except WebSocketError:
            await self.close(CLOSE_PROTOCOL_ERROR)
            return None
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def send_binary(self, payload: bytes) -> None:
        await self._send(OP_BINARY, payload)

    async def _send(self, opcode: int, payload: bytes) -> None:
        if self.close_sent or self._writer.is_closing():
            raise ConnectionResetError("WebSocket is closed")
        self._writer.write(encode_frame(opcode, payload))
        await self._writer.drain()

    async def close(self, code: int = CLOSE_NORMAL) -> None:
        if self.close_sent or self._writer.is_closing():
            return
        self._writer.write(encode_frame(OP_CLOSE, struct.pack(">H", code)))
        self.close_sent = True
        try:
            await self._writer.drain()
        except ConnectionError:
            pass
