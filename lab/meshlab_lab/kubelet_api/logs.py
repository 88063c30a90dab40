"""GET /containerLogs/<ns>/<pod>/<container>: the container's log as plain text, like a kubelet.

The runner's log file is in the CRI log format, one record per line:
`<RFC3339Nano time> <stdout|stderr> <F|P> <content>` (P: partial line, continued by the next record).
Lines that do not parse are served as they are (no timestamp known for them).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .file_watch import FileWatch
from .http1 import Request, response_head, send_simple

log = logging.getLogger(__name__)
_CRI_LINE = re.compile(rb"^(\S+) (stdout|stderr) ([FP]) ?(.*)$", re.S)
FOLLOW_RECHECK_S = 1.0


@dataclass
class LogOptions:
    follow: bool
    timestamps: bool
    previous: bool
    tail_lines: int | None
    limit_bytes: int | None
    since: datetime | None

    @classmethod
    def from_request(cls, request: Request) -> LogOptions:
        """Raises ValueError with a readable text for malformed parameters."""
        since = None
        if request.first("sinceSeconds"):
            since = datetime.now(timezone.utc) - timedelta(seconds=_non_negative(request, "sinceSeconds"))
        elif request.first("sinceTime"):
            since = _parse_time(request.first("sinceTime").encode())
            if since is None:
                raise ValueError(f"sinceTime: cannot parse {request.first('sinceTime')!r} as RFC 3339")
        return cls(
            follow=request.flag("follow"),
            timestamps=request.flag("timestamps"),
            previous=request.flag("previous"),
            tail_lines=_non_negative(request, "tailLines") if request.first("tailLines") else None,
            limit_bytes=_non_negative(request, "limitBytes") if request.first("limitBytes") else None,
            since=since,
        )


def _non_negative(request: Request, name: str) -> int:
    try:
        value = int(request.first(name))
    except ValueError as exc:
        raise ValueError(f"{name}: {request.first(name)!r} is not an integer") from exc
    if value < 0:
        raise ValueError(f"{name}: must not be negative")
    return value


def _parse_time(raw: bytes) -> datetime | None:
    text = raw.decode("ascii", "replace").replace("Z", "+00:00")
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?([+-]\d\d:\d\d)$", text)
    if not match:
        return None
    fraction = (match.group(2) or "")[:7]  # fromisoformat takes at most microseconds
    try:
        return datetime.fromisoformat(match.group(1) + fraction + match.group(3))
    except ValueError:
        return None


def render(line: bytes, options: LogOptions) -> bytes | None:
    """One stored line as the client sees it; None when `since` filters it out."""
    match = _CRI_LINE.match(line.rstrip(b"\n"))
    if not match:
        return line
    stamp, _stream, tag, content = match.groups()
    if options.since is not None:
        when = _parse_time(stamp)
        if when is not None and when < options.since:
            return None
    text = content + (b"\n" if tag == b"F" else b"")
    return stamp + b" " + text if options.timestamps else text


async def serve_logs(runner, request: Request, writer: asyncio.StreamWriter, reader: asyncio.StreamReader,
                     namespace: str, pod: str, container: str) -> None:
    try:
        options = LogOptions.from_request(request)
    except ValueError as exc:
        await send_simple(writer, 400, f"{exc}\n")
        return
    path = runner.log_path(namespace, pod, container, options.previous)
    if path is None or not path.exists():
        kind = "previous terminated container" if options.previous else "container"
        await send_simple(writer, 404, f'{kind} "{container}" in pod "{pod}" not found\n')
        return
    writer.write(response_head(200, {"Content-Type": "text/plain", "Transfer-Encoding": "chunked",
                                     "Cache-Control": "no-cache, private", "Connection": "close"}))
    budget = [options.limit_bytes]
    with open(path, "rb") as log_file:
        lines = log_file.readlines()
        if lines and not lines[-1].endswith(b"\n"):
            log_file.seek(-len(lines.pop()), 1)  # an unfinished record: leave it for follow to complete
        if options.tail_lines is not None:
            lines = lines[-options.tail_lines:] if options.tail_lines else []
        for line in lines:
            if not await _emit(writer, render(line, options), budget):
                break
        else:
            if options.follow:
                await _follow(runner, log_file, path, options, writer, reader, budget, (namespace, pod, container))
    with contextlib.suppress(ConnectionError):
        writer.write(b"0\r\n\r\n")
        await writer.drain()


async def _emit(writer: asyncio.StreamWriter, text: bytes | None, budget: list) -> bool:
    """Send one chunk; False when the limitBytes budget is used up."""
    if not text:
        return True
    if budget[0] is not None:
        text = text[: budget[0]]
        budget[0] -= len(text)
    if text:
        writer.write(b"%x\r\n%s\r\n" % (len(text), text))
        await writer.drain()
    return budget[0] is None or budget[0] > 0


async def _follow(runner, log_file, path, options, writer, reader, budget, target) -> None:
    """Stream records as they are appended until the client leaves or the container ends."""
    client_left = asyncio.create_task(reader.read(1))
    watch = FileWatch(path)
    pending, why = b"", "client left"
    try:
        while True:
            chunk = log_file.read()
            if chunk:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    if not await _emit(writer, render(line + b"\n", options), budget):
                        why = "limitBytes reached"
                        return
                continue
            if client_left.done():
                return
            if runner.resolve(*target) is not True:
                why = "container ended"
                return
            changed = asyncio.create_task(watch.changed(FOLLOW_RECHECK_S))
            await asyncio.wait({changed, client_left}, return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
    except ConnectionError:
        return
    finally:
        client_left.cancel()
        watch.close()
        log.info("logs follow of %s/%s/%s ended: %s", *target, why)
