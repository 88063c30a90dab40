"""The lab node's kubelet API: exec (WebSocket and SPDY/3.1), container logs and /healthz over HTTPS.

The kube-apiserver proxies `kubectl exec` / `kubectl logs` (and the Python client's `stream()`) to the
node's kubelet port; an emulated node serves this package there:

    server = await serve_kubelet_api(runner, "127.0.0.1", port, certfile, keyfile, client_ca)
    ...
    await stop_kubelet_api(server)   # stops listening and drops open exec/log connections

Endpoints (paths as the API server writes them):

- `GET|POST /exec/<ns>/<pod>/<container>?command=..&command=..&input=1&output=1&error=1&tty=1`
  (`stdin`/`stdout`/`stderr` are accepted as names too). Upgrade to WebSocket with subprotocol
  `v5.channel.k8s.io`, `v4.channel.k8s.io`, `v3`, `v2` or `channel.k8s.io`, or to `SPDY/3.1` with
  `X-Stream-Protocol-Version` v4/v3/v2/v1. On v4/v5 the exit status is the kubelet's JSON
  `metav1.Status` on the error channel. A command that cannot be started ends with exit code 127
  (not found) or 126 (not executable) and runc's message on stderr. If the client disconnects while
  the command runs, the process is killed.
- `/attach/...` answers 400 (not supported).
- `GET /containerLogs/<ns>/<pod>/<container>?follow=&tailLines=&timestamps=&previous=&limitBytes=
  &sinceSeconds=&sinceTime=`: plain text; `follow` streams appended records until the client leaves
  or `resolve()` stops returning True for the container.
- `GET /healthz` -> `ok`.

Authentication: with `client_ca` the TLS handshake requires a client certificate signed by it (the
API server's `--kubelet-client-certificate`); there is no authorisation step beyond that.

The node supplies a runner object with these methods (the contract below is all this package uses):
"""
from __future__ import annotations

import asyncio
import fcntl
import pathlib
import termios
from typing import Protocol

from .server import serve_kubelet_api, stop_kubelet_api


class ContainerRunner(Protocol):
    def resolve(self, namespace: str, pod: str, container: str) -> bool | str:
        """True when the container runs; else an error text such as 'pod "x" not found' (sent as 404)."""

    async def spawn(self, namespace: str, pod: str, container: str, argv: list[str], tty: bool,
                    stdin, stdout, stderr) -> asyncio.subprocess.Process:
        """Start argv in the container: in the pod's network namespace, with the container's uid, env, PATH.

        `stdin`, `stdout`, `stderr` are to be passed unchanged to `asyncio.create_subprocess_exec`:
        each is `asyncio.subprocess.PIPE`, `asyncio.subprocess.DEVNULL` or, when `tty` is true, the
        same pty slave fd for all three; then also pass `start_new_session=True` and
        `preexec_fn=take_controlling_tty` so the shell gets job control and ^C.
        Raise FileNotFoundError / PermissionError when argv[0] cannot be executed (as
        `create_subprocess_exec` itself does); any other exception is reported as an internal error.
        """

    def log_path(self, namespace: str, pod: str, container: str, previous: bool) -> pathlib.Path | None:
        """The container's log file in CRI format (`<RFC3339Nano> <stdout|stderr> <F|P> <text>` lines),
        of the previous instance when `previous`; None when there is none."""


def take_controlling_tty() -> None:
    """preexec_fn for a tty exec: make fd 0 (the pty slave) the new session's controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


__all__ = ["ContainerRunner", "serve_kubelet_api", "stop_kubelet_api", "take_controlling_tty"]
