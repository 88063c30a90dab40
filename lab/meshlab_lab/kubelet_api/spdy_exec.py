"""Kubernetes remotecommand over SPDY/3.1: one SPDY stream per channel, named by a `streamtype` header.

The client (kubectl's SPDY executor) opens error, stdin, stdout, stderr and resize streams as the
options need; the server collects them, runs the command, writes the status on the error stream and
half-closes every stream it writes to.
"""
from __future__ import annotations

import asyncio
import contextlib

from . import exec_status
from .exec_session import RESIZE, STDERR, STDIN, STDOUT, ExecOptions
from .spdy import SpdySession, SpdyStream

V4, V3, V2, V1 = "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"
SUPPORTED = (V4, V3, V2, V1)
STREAM_CREATION_TIMEOUT_S = 30.0
CLOSE_WAIT_S = 5.0


def choose_protocol(offered: list[str]) -> str | None:
    """The first offered X-Stream-Protocol-Version we speak; "" when none was offered (legacy v1)."""
    if not offered:
        return ""
    return next((proto for proto in offered if proto in SUPPORTED), None)


def expected_stream_types(options: ExecOptions, protocol: str) -> set[str]:
    wanted = {"error"}
    if options.stdin:
        wanted.add("stdin")
    if options.stdout:
        wanted.add("stdout")
    if options.stderr:
        wanted.add("stderr")
    if options.tty and protocol in (V4, V3):
        wanted.add("resize")
    return wanted


class SpdyChannels:
    """ChannelTransport over a SPDY session whose streams have all been opened by the client."""

    def __init__(self, session: SpdySession, streams: dict[str, SpdyStream], protocol: str):
        self._session = session
        self._streams = streams
        self.protocol = protocol or V1
        self._inputs: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._copy_in(kind, channel))
                       for kind, channel in (("stdin", STDIN), ("resize", RESIZE)) if kind in streams]
        self._tasks.append(asyncio.create_task(self._watch_connection()))

    async def _copy_in(self, kind: str, channel: int) -> None:
        stream = self._streams[kind]
        while chunk := await stream.read():
            self._inputs.put_nowait((channel, chunk))
        if channel == STDIN and not self._session.closed.is_set():
            self._inputs.put_nowait((STDIN, b""))

    async def _watch_connection(self) -> None:
        await self._session.closed.wait()
        self._inputs.put_nowait(None)

    async def next_input(self) -> tuple[int, bytes] | None:
        item = await self._inputs.get()
        if item is None:
            self._inputs.put_nowait(None)
        return item

    async def write_output(self, channel: int, data: bytes) -> None:
        stream = self._streams.get({STDOUT: "stdout", STDERR: "stderr"}[channel])
        if stream is not None:
            await stream.write(data)

    async def finish(self, status: dict) -> None:
        with contextlib.suppress(ConnectionError):
            for kind in ("stdout", "stderr"):
                if kind in self._streams:
                    await self._streams[kind].close()
            error = self._streams["error"]
            payload = exec_status.encode(status) if self.protocol == V4 else exec_status.legacy_error_text(status)
            await error.write(payload, fin=True)
            await self._session.go_away()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._session.closed.wait(), CLOSE_WAIT_S)
        for task in self._tasks:
            task.cancel()


async def collect_streams(session: SpdySession, options: ExecOptions, protocol: str) -> dict[str, SpdyStream]:
    """Wait (bounded) until the client opened every stream the options call for."""
    wanted = expected_stream_types(options, protocol)
    streams: dict[str, SpdyStream] = {}

    async def gather() -> None:
        while not wanted <= streams.keys():
            stream = await session.accept()
            if stream is None:
                raise ConnectionResetError("client went away while opening streams")
            kind = stream.headers.get("streamtype", "")
            if kind in wanted:
                streams[kind] = stream

    await asyncio.wait_for(gather(), STREAM_CREATION_TIMEOUT_S)
    return streams
