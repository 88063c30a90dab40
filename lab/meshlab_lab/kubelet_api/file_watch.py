"""Wait for a file to change, with Linux inotify through libc (the stdlib has no binding)."""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os

IN_MODIFY, IN_CLOSE_WRITE, IN_ATTRIB = 0x002, 0x008, 0x004
IN_MOVE_SELF, IN_DELETE_SELF = 0x800, 0x400
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class FileWatch:
    """`await changed(timeout)` returns when the file was written to (True) or the timeout ran out."""

    def __init__(self, path: os.PathLike | str):
        self._fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        mask = IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF
        if _libc.inotify_add_watch(self._fd, os.fsencode(path), mask) < 0:
            err = ctypes.get_errno()
            os.close(self._fd)
            raise OSError(err, f"inotify_add_watch failed for {path}")
        self._event = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            while os.read(self._fd, 4096):
                pass
        except BlockingIOError:
            pass
        self._event.set()

    async def changed(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        self._event.clear()
        return True

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
