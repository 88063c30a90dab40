"""Test helpers for the kubelet API: a local-process runner and the server on a background event loop.

`LocalRunner` is an emulation for tests: a "container" is just a name; exec runs plain local
processes in a scratch directory (no network namespace, no uid switch) and the log is a file the
test writes in CRI format.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import threading
from pathlib import Path

from . import serve_kubelet_api, stop_kubelet_api, take_controlling_tty


class LocalRunner:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.running: set[tuple[str, str, str]] = set()
        self.known: set[tuple[str, str, str]] = set()
        self.spawned: list[asyncio.subprocess.Process] = []

    def add(self, namespace: str, pod: str, container: str) -> None:
        self.known.add((namespace, pod, container))
        self.running.add((namespace, pod, container))

    def resolve(self, namespace, pod, container):
        key = (namespace, pod, container)
        if key not in self.known:
            return f'container "{container}" in pod "{pod}" in namespace "{namespace}" not found'
        return True if key in self.running else f'container "{container}" is not running'

    async def spawn(self, namespace, pod, container, argv, tty, stdin, stdout, stderr):
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=stdin, stdout=stdout, stderr=stderr, cwd=self.workdir,
            start_new_session=tty, preexec_fn=take_controlling_tty if tty else None)
        self.spawned.append(process)
        return process

    def log_path(self, namespace, pod, container, previous):
        path = self.workdir / f"{namespace}_{pod}_{container}{'.previous' if previous else ''}.log"
        return path if path.exists() else None

    def append_log(self, namespace, pod, container, text: str, stream: str = "stdout") -> None:
        path = self.workdir / f"{namespace}_{pod}_{container}.log"
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with path.open("a") as log:
            for line in text.splitlines():
                log.write(f"{stamp} {stream} F {line}\n")


class RecordedLog(logging.Handler):
    """Keeps the kubelet API's log messages so tests can see which protocol a client used."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[str] = []
        logger = logging.getLogger("meshlab_lab.kubelet_api")
        logger.setLevel(logging.INFO)
        logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def since(self, mark: int) -> list[str]:
        return self.messages[mark:]


class KubeletThread:
    """serve_kubelet_api() on its own event loop thread, so blocking clients can be used from tests."""

    def __init__(self, runner, certfile: str, keyfile: str, client_ca: str | None):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="kubelet-api", daemon=True)
        self.thread.start()
        coro = serve_kubelet_api(runner, "127.0.0.1", 0, certfile, keyfile, client_ca)
        self.server = asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)
        self.port = self.server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close():
            await stop_kubelet_api(self.server)
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            await asyncio.wait_for(asyncio.gather(*others, return_exceptions=True), 30)
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
