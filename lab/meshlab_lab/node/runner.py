"""The node's ContainerRunner for the kubelet API (exec and logs go to the real container processes)."""
import asyncio
import os
import shutil
from pathlib import Path

from meshlab_lab.kubelet_api import take_controlling_tty


class NodeRunner:
    def __init__(self, node):
        self.node = node

    def _container(self, namespace: str, pod: str, container: str):
        with self.node._lock:
            workers = [w for w in self.node.workers.values() if w.namespace == namespace and w.name == pod]
        if not workers:
            return None, f'pod "{pod}" not found'
        c = workers[0].container(container or None)
        if c is None:
            return None, f'container "{container}" not found in pod "{pod}"'
        return c, None

    def resolve(self, namespace: str, pod: str, container: str) -> bool | str:
        c, err = self._container(namespace, pod, container)
        if err:
            return err
        if "running" not in c.state:
            return f'container "{c.name}" in pod "{pod}" is not running'
        return True

    async def spawn(self, namespace: str, pod: str, container: str, argv: list, tty: bool, stdin, stdout, stderr):
        c, err = self._container(namespace, pod, container)
        if err:
            raise RuntimeError(err)
        if not argv:
            raise FileNotFoundError("no command given")
        exe = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=c.env.get("PATH", ""))
        if exe is None or not os.path.exists(exe):
            raise FileNotFoundError(f'exec: "{argv[0]}": executable file not found in $PATH')
        if not os.access(exe, os.X_OK) or os.path.isdir(exe):
            raise PermissionError(f'exec: "{argv[0]}": permission denied')
        cwd = c.spec.get("workingDir") or str(c.workdir)
        extra = {"start_new_session": True, "preexec_fn": take_controlling_tty} if tty else {}
        return await asyncio.create_subprocess_exec(*c.exec_argv(argv), stdin=stdin, stdout=stdout, stderr=stderr,
                                                    env=c.env, cwd=cwd if os.path.isdir(cwd) else None, **extra)

    def log_path(self, namespace: str, pod: str, container: str, previous: bool) -> Path | None:
        c, err = self._container(namespace, pod, container)
        if err:
            return None
        path = c.previous_log_path if previous else c.log_path
        return path if path.exists() else None
