"""Wire-level checks of the kubelet API's protocol pieces, against peers written here from the specs.

The end-to-end file drives the same code with real clients (kubectl's spdystream, websocket-client);
these tests cover what those clients never do, such as a SPDY peer that really uses flow control.
"""
from __future__ import annotations

import asyncio
import struct
import zlib

import pytest

from meshlab_lab.kubelet_api import exec_status
from meshlab_lab.kubelet_api.logs import LogOptions, render
from meshlab_lab.kubelet_api.spdy import DEFAULT_WINDOW, SpdySession
from meshlab_lab.kubelet_api.spdy_dictionary import SPDY3_DICTIONARY
from meshlab_lab.kubelet_api.websocket import accept_key

SPDY3_DICTIONARY_ADLER32 = 0xE3C6A7C2  # DICTID of the SPDY/3 dictionary, as peers put it in zlib headers


def test_spdy_dictionary_has_the_spec_identity():
    assert len(SPDY3_DICTIONARY) == 1423
    assert zlib.adler32(SPDY3_DICTIONARY) == SPDY3_DICTIONARY_ADLER32


def test_websocket_accept_key_matches_rfc6455_example():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_nonzero_exit_status_is_byte_exact():
    assert exec_status.encode(exec_status.nonzero_exit(["sh", "-c", "exit 3"], 3)) == (
        b'{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: '
        b'error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode",'
        b'"details":{"causes":[{"reason":"ExitCode","message":"3"}]}}')
    assert exec_status.encode(exec_status.success()) == b'{"metadata":{},"status":"Success"}'


def _options(**overrides) -> LogOptions:
    values = dict(follow=False, timestamps=False, previous=False, tail_lines=None, limit_bytes=None, since=None)
    values.update(overrides)
    return LogOptions(**values)


def test_log_render_joins_partial_records_and_adds_timestamps():
    partial = b"2026-01-01T00:00:00.123456789Z stdout P half \n"
    full = b"2026-01-01T00:00:00.223456789Z stderr F line\n"
    assert render(partial, _options()) + render(full, _options()) == b"half line\n"
    assert render(full, _options(timestamps=True)) == b"2026-01-01T00:00:00.223456789Z line\n"
    assert render(b"not a cri line\n", _options()) == b"not a cri line\n"


# ---------------------------------------------------------------- a small SPDY/3.1 client
class SpdyTestClient:
    """Client side written from the draft: compressed SYN_STREAM, DATA accounting, WINDOW_UPDATE, PING."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.deflate = zlib.compressobj(zdict=SPDY3_DICTIONARY)
        self.inflate = zlib.decompressobj(zdict=SPDY3_DICTIONARY)

    def syn_stream(self, stream_id: int, headers: dict[str, str]) -> None:
        block = struct.pack(">I", len(headers)) + b"".join(
            struct.pack(">I", len(part)) + part for name, value in headers.items()
            for part in (name.encode(), value.encode()))
        compressed = self.deflate.compress(block) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.control(1, struct.pack(">IIH", stream_id, 0, 0) + compressed)

    def control(self, frame_type: int, payload: bytes, flags: int = 0) -> None:
        self.writer.write(struct.pack(">HHI", 0x8003, frame_type, (flags << 24) | len(payload)) + payload)

    async def frame(self):
        first, second = struct.unpack(">II", await self.reader.readexactly(8))
        payload = await self.reader.readexactly(second & 0xFFFFFF)
        if first & 0x80000000:
            return "control", first & 0xFFFF, second >> 24, payload
        return "data", first & 0x7FFFFFFF, second >> 24, payload


async def _spdy_pair():
    """A SpdySession on one end of a local TCP connection and a SpdyTestClient on the other."""
    accepted: asyncio.Future = asyncio.get_running_loop().create_future()
    server = await asyncio.start_server(lambda r, w: accepted.set_result((r, w)), "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    session = SpdySession(*await accepted)
    return server, session, SpdyTestClient(reader, writer), asyncio.create_task(session.run())


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_spdy_server_never_overruns_a_flow_controlled_peer():
    total = 5 * DEFAULT_WINDOW + 1234

    async def scenario():
        server, session, client, reader_task = await _spdy_pair()
        client.syn_stream(1, {"streamtype": "stdout"})
        stream = await session.accept()
        assert stream.headers == {"streamtype": "stdout"}
        sender = asyncio.create_task(stream.write(b"x" * total, fin=True))
        received, granted, outstanding_max, replied = 0, 0, 0, False
        while True:
            kind, ident, flags, payload = await client.frame()
            if kind == "control":
                if ident == 2:  # SYN_REPLY
                    replied = True
                continue
            received += len(payload)
            outstanding_max = max(outstanding_max, received - granted)
            if received - granted >= DEFAULT_WINDOW // 2:
                delta = received - granted
                client.control(9, struct.pack(">II", 1, delta))
                client.control(9, struct.pack(">II", 0, delta))
                granted = received
            if flags & 1:
                break
        await sender
        reader_task.cancel()
        server.close()
        return replied, received, outstanding_max, session.peer_flow_control

    replied, received, outstanding_max, flow_control = _run(scenario())
    assert replied
    assert received == total
    assert outstanding_max <= DEFAULT_WINDOW
    assert flow_control is True


def test_spdy_server_detects_a_peer_without_flow_control():
    total = 3 * DEFAULT_WINDOW

    async def scenario():
        server, session, client, reader_task = await _spdy_pair()
        client.syn_stream(1, {"streamtype": "stdout"})
        stream = await session.accept()
        sender = asyncio.create_task(stream.write(b"y" * total, fin=True))
        received, pings = 0, 0
        while True:
            kind, ident, flags, payload = await client.frame()
            if kind == "control" and ident == 6:  # PING: echo it, never send WINDOW_UPDATE
                pings += 1
                client.control(6, payload)
            elif kind == "data":
                received += len(payload)
                if flags & 1:
                    break
        await sender
        reader_task.cancel()
        server.close()
        return received, pings, session.peer_flow_control

    received, pings, flow_control = _run(scenario())
    assert received == total
    assert pings == 1
    assert flow_control is False


def test_spdy_server_answers_client_pings_and_rejects_even_stream_ids():
    async def scenario():
        server, session, client, reader_task = await _spdy_pair()
        client.control(6, struct.pack(">I", 7))
        client.syn_stream(2, {"streamtype": "error"})
        frames = [await client.frame(), await client.frame()]
        reader_task.cancel()
        server.close()
        return frames

    frames = _run(scenario())
    assert ("control", 6, 0, struct.pack(">I", 7)) in frames
    rst = [frame for frame in frames if frame[1] == 3]
    assert rst and struct.unpack(">II", rst[0][3]) == (2, 1)


@pytest.mark.parametrize("raw", ["1", "true", "True"])
def test_exec_flags_accept_the_forms_kubernetes_writes(raw):
    from meshlab_lab.kubelet_api.exec_session import ExecOptions
    from meshlab_lab.kubelet_api.http1 import Request
    request = Request("POST", "/exec/ns/pod/c", {"command": ["ls"], "input": [raw], "output": [raw], "tty": ["0"]})
    options = ExecOptions.from_request(request)
    assert (options.stdin, options.stdout, options.stderr, options.tty) == (True, True, False, False)
