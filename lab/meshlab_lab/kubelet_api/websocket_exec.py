"""Kubernetes channel protocols (channel.k8s.io ... v5.channel.k8s.io) over a WebSocket.

Each binary message starts with its channel byte: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize.
v4 and later carry a JSON status on the error channel; older ones an error text. v5 adds channel 255,
on which the client announces that it closed one of its streams (payload: that stream's byte).
"""
from __future__ import annotations

import asyncio
import contextlib

from . import exec_status
from .exec_session import ERROR, RESIZE, STDIN
from .websocket import WebSocketConnection

V5, V4, V3, V2, V1 = "v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", \
    "channel.k8s.io"
SUPPORTED = (V5, V4, V3, V2, V1)
CLOSE_CHANNEL = 255
CLOSE_WAIT_S = 5.0


def choose_protocol(offered: list[str]) -> str | None:
    """The first offered protocol we speak; "" when none was offered (plain channel.k8s.io)."""
    if not offered:
        return ""
    return next((proto for proto in offered if proto in SUPPORTED), None)


class WebSocketChannels:
    """ChannelTransport over an upgraded WebSocket; one reader task feeds an input queue."""

    def __init__(self, connection: WebSocketConnection, writer: asyncio.StreamWriter, protocol: str):
        self._ws = connection
        self._writer = writer
        self.protocol = protocol or V1
        self._inputs: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self._reader_task = asyncio.create_task(self._read_loop())

    async def _read_loop(self) -> None:
        while (message := await self._ws.receive()) is not None:
            if not message:
                continue
            channel, payload = message[0], message[1:]
            if channel == CLOSE_CHANNEL and self.protocol == V5:
                if payload[:1] == bytes([STDIN]):
                    self._inputs.put_nowait((STDIN, b""))
            elif channel == STDIN and payload:
                self._inputs.put_nowait((STDIN, payload))
            elif channel == RESIZE:
                self._inputs.put_nowait((RESIZE, payload))
        self._inputs.put_nowait(None)

    async def next_input(self) -> tuple[int, bytes] | None:
        item = await self._inputs.get()
        if item is None:
            self._inputs.put_nowait(None)
        return item

    async def write_output(self, channel: int, data: bytes) -> None:
        await self._ws.send_binary(bytes([channel]) + data)

    async def finish(self, status: dict) -> None:
        with contextlib.suppress(ConnectionError):
            if self.protocol in (V5, V4):
                await self._ws.send_binary(bytes([ERROR]) + exec_status.encode(status))
            elif text := exec_status.legacy_error_text(status):
                await self._ws.send_binary(bytes([ERROR]) + text)
            await self._ws.close()
        # Give the client the chance to answer the close handshake before the TCP connection goes.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._reader_task), CLOSE_WAIT_S)
        self._reader_task.cancel()
        self._writer.close()
