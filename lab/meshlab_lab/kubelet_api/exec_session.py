"""Runs one exec between a container process and a channel transport (WebSocket or SPDY).

The transport is protocol-specific; this module only moves bytes: transport stdin -> process stdin,
process stdout/stderr -> transport, resize messages -> the pty, then the exit status -> error channel.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import struct
import termios
from dataclasses import dataclass
from typing import Protocol

from . import exec_status

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
READ_CHUNK = 32 * 1024


@dataclass
class ExecOptions:
    command: list[str]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def from_request(cls, request) -> ExecOptions:
        """Query as the API server forwards it (input/output/error/tty) or as clients write it."""
        tty = request.flag("tty")
        return cls(
            command=list(request.query.get("command", [])),
            stdin=request.flag("input", "stdin"),
            stdout=request.flag("output", "stdout"),
            stderr=request.flag("error", "stderr") and not tty,
            tty=tty,
        )

    def problem(self, attach: bool) -> str | None:
        if not attach and not self.command:
            return "you must specify at least 1 command"
        if not (self.stdin or self.stdout or self.stderr):
            return "you must specify at least 1 of stdin, stdout, stderr"
        return None


class ChannelTransport(Protocol):
    async def next_input(self) -> tuple[int, bytes] | None:
        """(STDIN, data), (STDIN, b"") at stdin EOF, (RESIZE, json); None when the client is gone."""

    async def write_output(self, channel: int, data: bytes) -> None: ...

    async def finish(self, status: dict) -> None:
        """Write the exit status on the error channel and close the connection."""


async def run_exec(runner, namespace: str, pod: str, container: str, options: ExecOptions,
                   transport: ChannelTransport) -> dict:
    """Spawn the command through the runner, pump the streams, finish the transport; returns the status."""
    master = slave = None
    if options.tty:
        master, slave = os.openpty()
        stdio = (slave, slave, slave)
    else:
        stdio = tuple(asyncio.subprocess.PIPE if wanted else asyncio.subprocess.DEVNULL
                      for wanted in (options.stdin, options.stdout, options.stderr))
    try:
        process = await runner.spawn(namespace, pod, container, options.command, options.tty, *stdio)
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        status = await _start_failure(options, transport, exc)
        _close_fds(master, slave)
        return status
    except Exception as exc:  # noqa: BLE001 - any runner failure goes to the client as a status
        status = exec_status.internal_error(str(exc))
        await transport.finish(status)
        _close_fds(master, slave)
        return status
    if slave is not None:
        os.close(slave)

    pumps = []
    if options.tty:
        pumps.append(asyncio.create_task(_pump_pty(master, transport)))
    else:
        for stream, channel in ((process.stdout, STDOUT), (process.stderr, STDERR)):
            if stream is not None:
                pumps.append(asyncio.create_task(_pump(stream, channel, transport)))
    feeder = asyncio.create_task(_feed_input(process, master, options, transport))
    waiter = asyncio.create_task(process.wait())
    await asyncio.wait({waiter, feeder}, return_when=asyncio.FIRST_COMPLETED)
    client_gone = feeder.done() and not feeder.cancelled() and feeder.exception() is None and feeder.result()
    if not waiter.done() and client_gone == "gone":
        # The client disconnected: nobody can read the output or send input any more.
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    code = await waiter
    await asyncio.gather(*pumps, return_exceptions=True)
    feeder.cancel()
    await asyncio.gather(feeder, return_exceptions=True)
    _close_fds(master)
    status = exec_status.success() if code == 0 else exec_status.nonzero_exit(options.command, _exit_code(code))
    with contextlib.suppress(ConnectionError):
        await transport.finish(status)
    return status


def _exit_code(returncode: int) -> int:
    # A process killed by signal N shows up in a shell (and from runc) as 128 + N.
    return 128 - returncode if returncode < 0 else returncode


async def _start_failure(options: ExecOptions, transport: ChannelTransport, exc: OSError) -> dict:
    """What runc reports when the executable cannot be started: a message on stderr, exit 127/126."""
    name = options.command[0] if options.command else ""
    if isinstance(exc, FileNotFoundError):
        code, why = 127, f"exec: {json.dumps(name)}: executable file not found in $PATH"
    else:
        code, why = 126, f"exec: {json.dumps(name)}: permission denied"
    message = f"OCI runtime exec failed: exec failed: unable to start container process: {why}: unknown\r\n"
    channel = STDERR if options.stderr else STDOUT
    if options.stderr or options.stdout:
        with contextlib.suppress(ConnectionError):
            await transport.write_output(channel, message.encode())
    status = exec_status.nonzero_exit(options.command, code)
    with contextlib.suppress(ConnectionError):
        await transport.finish(status)
    return status


async def _pump(stream: asyncio.StreamReader, channel: int, transport: ChannelTransport) -> None:
    while chunk := await stream.read(READ_CHUNK):
        try:
            await transport.write_output(channel, chunk)
        except ConnectionError:
            # Keep draining so the process never blocks on a full pipe.
            while await stream.read(READ_CHUNK):
                pass
            return


async def _pump_pty(master: int, transport: ChannelTransport) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        try:
            chunk = os.read(master, READ_CHUNK)
        except OSError:  # EIO: every slave end is closed
            chunk = b""
        if not chunk:
            loop.remove_reader(master)
        queue.put_nowait(chunk)

    loop.add_reader(master, readable)
    try:
        while chunk := await queue.get():
            with contextlib.suppress(ConnectionError):
                await transport.write_output(STDOUT, chunk)
    finally:
        loop.remove_reader(master)


async def _feed_input(process, master: int | None, options: ExecOptions, transport: ChannelTransport) -> str:
    """Copy client input until the client goes away; returns "gone" then."""
    stdin_open = options.stdin
    while True:
        item = await transport.next_input()
        if item is None:
            _close_stdin(process, master if stdin_open else None)
            return "gone"
        channel, data = item
        if channel == RESIZE and master is not None:
            _resize(master, data)
        elif channel == STDIN and stdin_open:
            if not data:
                stdin_open = False
                _close_stdin(process, master)
            elif master is not None:
                await _write_all(master, data)
            elif process.stdin is not None:
                try:
                    process.stdin.write(data)
                    await process.stdin.drain()
                except (BrokenPipeError, ConnectionResetError):
                    stdin_open = False


async def _write_all(fd: int, data: bytes) -> None:
    await asyncio.get_running_loop().run_in_executor(None, _blocking_write_all, fd, data)


def _blocking_write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):
        while data:
            data = data[os.write(fd, data):]


def _close_stdin(process, master: int | None) -> None:
    if master is not None:
        # End-of-file on a terminal is the EOF character at the start of a line.
        _blocking_write_all(master, b"\x04")
    elif process.stdin is not None and not process.stdin.is_closing():
        process.stdin.close()


def _resize(master: int, data: bytes) -> None:
    try:
        size = json.loads(data)
        rows, cols = int(size.get("Height", 0)), int(size.get("Width", 0))
    except (ValueError, AttributeError, TypeError):
        return
    if rows > 0 and cols > 0:
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _close_fds(*fds: int | None) -> None:
    for fd in fds:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
