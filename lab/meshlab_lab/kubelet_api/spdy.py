"""A server-side SPDY/3.1 session: just enough of the framing layer for Kubernetes exec/attach.

Frame layouts, the header block format and the flow-control rules follow "SPDY Protocol - Draft 3.1".
Header blocks are zlib streams primed with the SPDY/3 dictionary, one stream per direction for the
whole connection, each block ended with a sync flush.

Flow control: the peer's per-stream and connection windows (64 KiB unless SETTINGS says otherwise)
are respected when sending, and WINDOW_UPDATEs are sent as received data is consumed. The SPDY client
of every kubectl (spdystream) implements no flow control at all: it never sends WINDOW_UPDATE. So
when a window runs dry and the peer has never sent one, the session sends a PING; a PING reply with
still no WINDOW_UPDATE proves the peer read everything sent so far without opening its window, and
from then on the session treats the peer as not flow-controlled, as a kubelet (also spdystream) does.
"""
from __future__ import annotations

import asyncio
import logging
import struct
import zlib

from .spdy_dictionary import SPDY3_DICTIONARY

log = logging.getLogger(__name__)
VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
SETTINGS_INITIAL_WINDOW_SIZE = 7
DEFAULT_WINDOW = 64 * 1024
MAX_DATA_CHUNK = 16 * 1024
RST_PROTOCOL_ERROR, RST_INVALID_STREAM, RST_REFUSED_STREAM, RST_CANCEL = 1, 2, 3, 5


class SpdyError(Exception):
    """The peer broke the SPDY framing rules."""


class HeaderCodec:
    """One direction's zlib context for header blocks (shared by every frame of the connection)."""

    def __init__(self):
        self._compress = zlib.compressobj(zdict=SPDY3_DICTIONARY)
        self._decompress = zlib.decompressobj(zdict=SPDY3_DICTIONARY)

    def encode(self, headers: dict[str, str]) -> bytes:
        block = bytearray(struct.pack(">I", len(headers)))
        for name, value in headers.items():
            for part in (name.lower().encode(), value.encode()):
                block += struct.pack(">I", len(part)) + part
        return self._compress.compress(bytes(block)) + self._compress.flush(zlib.Z_SYNC_FLUSH)

    def decode(self, compressed: bytes) -> dict[str, str]:
        try:
            block = self._decompress.decompress(compressed)
        except zlib.error as exc:
            raise SpdyError(f"bad header block: {exc}") from exc
        count, = struct.unpack_from(">I", block, 0)
        offset, headers = 4, {}
        for _ in range(count):
            name, offset = _length_prefixed(block, offset)
            value, offset = _length_prefixed(block, offset)
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        return headers


def _length_prefixed(block: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 4 > len(block):
        raise SpdyError("truncated header block")
    size, = struct.unpack_from(">I", block, offset)
    end = offset + 4 + size
    if end > len(block):
        raise SpdyError("truncated header block")
    return block[offset + 4 : end], end


def control_frame(frame_type: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, frame_type, (flags << 24) | len(payload)) + payload


def data_frame(stream_id: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(payload)) + payload


class SpdyStream:
    """One peer-initiated stream: its SYN_STREAM headers, received data and our send window."""

    def __init__(self, session: SpdySession, stream_id: int, headers: dict[str, str]):
        self.session = session
        self.id = stream_id
        self.headers = headers
        self.send_window = session.initial_send_window
        self.local_closed = False
        self.reset = False
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def read(self) -> bytes:
        """Next chunk of data from the peer; b"" once the peer half-closed (FIN), reset or went away."""
        chunk = await self._inbox.get()
        if chunk is None:
            self._inbox.put_nowait(None)
            return b""
        self.session.consumed(self, len(chunk))
        return chunk

    async def write(self, data: bytes, fin: bool = False) -> None:
        await self.session.send_data(self, data, fin)

    async def close(self) -> None:
        if not self.local_closed and not self.reset:
            await self.session.send_data(self, b"", True)

    def deliver(self, chunk: bytes | None) -> None:
        self._inbox.put_nowait(chunk)


class SpdySession:
    """Reads frames from the peer, answers control frames, hands new streams to `accept()`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader = reader
        self._writer = writer
        self._out = HeaderCodec()
        self._in = HeaderCodec()
        self.streams: dict[int, SpdyStream] = {}
        self._new_streams: asyncio.Queue[SpdyStream | None] = asyncio.Queue()
        self.initial_send_window = DEFAULT_WINDOW
        self.connection_send_window = DEFAULT_WINDOW
        self.peer_flow_control: bool | None = None  # None: not known yet
        self._window_changed = asyncio.Condition()
        self._next_ping_id = 2
        self._pending_pings: dict[int, asyncio.Future] = {}
        self.closed = asyncio.Event()

    # ---- reading
    async def run(self) -> None:
        """Read frames until the peer closes, sends GOAWAY or breaks the protocol."""
        try:
            while True:
                head = await self._reader.readexactly(8)
                first, second = struct.unpack(">II", head)
                flags, length = second >> 24, second & 0xFFFFFF
                payload = await self._reader.readexactly(length)
                if first & 0x80000000:
                    if (first >> 16) & 0x7FFF != VERSION:
                        raise SpdyError(f"unsupported SPDY version {(first >> 16) & 0x7FFF}")
                    if not await self._on_control(first & 0xFFFF, flags, payload):
                        break
                else:
                    self._on_data(first & 0x7FFFFFFF, flags, payload)
        except (asyncio.IncompleteReadError, ConnectionError, SpdyError):
            pass
        finally:
            await self._shut_down()

    async def _on_control(self, frame_type: int, flags: int, payload: bytes) -> bool:
        if frame_type == SYN_STREAM:
            stream_id, _associated = struct.unpack_from(">II", payload, 0)
            stream_id &= 0x7FFFFFFF
            headers = self._in.decode(payload[10:])
            if stream_id in self.streams or stream_id % 2 == 0:
                self._send_control(RST_STREAM, 0, struct.pack(">II", stream_id, RST_PROTOCOL_ERROR))
                return True
            stream = SpdyStream(self, stream_id, headers)
            self.streams[stream_id] = stream
            self._send_control(SYN_REPLY, 0, struct.pack(">I", stream_id) + self._out.encode({}))
            if flags & FLAG_FIN:
                stream.deliver(None)
            self._new_streams.put_nowait(stream)
        elif frame_type == RST_STREAM:
            stream = self.streams.get(struct.unpack_from(">I", payload, 0)[0] & 0x7FFFFFFF)
            if stream:
                stream.reset = True
                stream.deliver(None)
                await self._notify_window()
        elif frame_type == SETTINGS:
            await self._on_settings(payload)
        elif frame_type == PING:
            ping_id, = struct.unpack_from(">I", payload, 0)
            if ping_id % 2:
                self._send_control(PING, 0, payload[:4])
            elif ping_id in self._pending_pings:
                self._pending_pings.pop(ping_id).set_result(None)
                await self._notify_window()
        elif frame_type == GOAWAY:
            return False
        elif frame_type == WINDOW_UPDATE:
            stream_id, delta = struct.unpack_from(">II", payload, 0)
            stream_id, delta = stream_id & 0x7FFFFFFF, delta & 0x7FFFFFFF
            self.peer_flow_control = True
            if stream_id == 0:
                self.connection_send_window += delta
            elif stream_id in self.streams:
                self.streams[stream_id].send_window += delta
            await self._notify_window()
        # SYN_REPLY and HEADERS are never sent to a server here; unknown types are ignored (spec 2.2.1).
        return True

    async def _on_settings(self, payload: bytes) -> None:
        count, = struct.unpack_from(">I", payload, 0)
        for index in range(count):
            id_field, value = struct.unpack_from(">II", payload, 4 + 8 * index)
            if id_field & 0xFFFFFF == SETTINGS_INITIAL_WINDOW_SIZE:
                delta = value - self.initial_send_window
                self.initial_send_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
                self.peer_flow_control = True
        await self._notify_window()

    def _on_data(self, stream_id: int, flags: int, payload: bytes) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or stream.reset:
            self._send_control(RST_STREAM, 0, struct.pack(">II", stream_id, RST_INVALID_STREAM))
            return
        if payload:
            stream.deliver(payload)
        if flags & FLAG_FIN:
            stream.deliver(None)

    def consumed(self, stream: SpdyStream, size: int) -> None:
        """The application took `size` bytes off `stream`: give the peer that much window back."""
        if size and not self.closed.is_set():
            self._send_control(WINDOW_UPDATE, 0, struct.pack(">II", stream.id, size))
            self._send_control(WINDOW_UPDATE, 0, struct.pack(">II", 0, size))

    async def accept(self) -> SpdyStream | None:
        """The next stream the peer opened, or None once the connection is gone."""
        stream = await self._new_streams.get()
        if stream is None:
            self._new_streams.put_nowait(None)
        return stream

    # ---- writing
    def _send_control(self, frame_type: int, flags: int, payload: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(control_frame(frame_type, flags, payload))

    async def send_data(self, stream: SpdyStream, data: bytes, fin: bool) -> None:
        view = memoryview(data)
        while True:
            if stream.reset or self.closed.is_set():
                raise ConnectionResetError(f"SPDY stream {stream.id} is gone")
            size = min(len(view), MAX_DATA_CHUNK)
            if size and self.peer_flow_control is not False:
                size = min(size, stream.send_window, self.connection_send_window)
                if size <= 0:
                    await self._wait_for_window(stream)
                    continue
            last = size == len(view)
            self._writer.write(data_frame(stream.id, FLAG_FIN if (fin and last) else 0, bytes(view[:size])))
            stream.send_window -= size
            self.connection_send_window -= size
            view = view[size:]
            await self._writer.drain()
            if last:
                break
        if fin:
            stream.local_closed = True

    async def _wait_for_window(self, stream: SpdyStream) -> None:
        if self.peer_flow_control is None:
            ping_id = self._next_ping_id
            self._next_ping_id += 2
            answered = asyncio.get_running_loop().create_future()
            self._pending_pings[ping_id] = answered
            self._send_control(PING, 0, struct.pack(">I", ping_id))
            async with self._window_changed:
                await self._window_changed.wait_for(
                    lambda: answered.done() or self._has_window(stream) or self.closed.is_set() or stream.reset
                )
            if answered.done() and self.peer_flow_control is None:
                self.peer_flow_control = False
                log.info("SPDY peer read a full window without WINDOW_UPDATE: it does no flow control")
            return
        async with self._window_changed:
            await self._window_changed.wait_for(
                lambda: self._has_window(stream) or self.closed.is_set() or stream.reset
            )

    def _has_window(self, stream: SpdyStream) -> bool:
        return stream.send_window > 0 and self.connection_send_window > 0

    async def _notify_window(self) -> None:
        async with self._window_changed:
            self._window_changed.notify_all()

    async def go_away(self) -> None:
        self._send_control(GOAWAY, 0, struct.pack(">II", max(self.streams, default=0), 0))
        await self._writer.drain()

    async def _shut_down(self) -> None:
        self.closed.set()
        for stream in self.streams.values():
            stream.deliver(None)
        self._new_streams.put_nowait(None)
        for waiter in self._pending_pings.values():
            if not waiter.done():
                waiter.set_result(None)
        await self._notify_window()
