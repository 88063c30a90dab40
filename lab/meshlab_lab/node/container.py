"""One container of a pod on the emulated node: a process tree in the pod's network namespace."""
import datetime
import json
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from meshlab_lab.netns import IP, uid_argv
from meshlab_lab.node.cri_log import pump_to_cri_log
from meshlab_lab.node.images import ImageEntry, container_argv, expand
from meshlab_lab.node.spec import expand_vars


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PodContext:
    namespace: str
    name: str
    uid: str
    pod_ip: str
    host_ip: str
    netns: str | None
    pod_dir: Path
    base_env: dict

    def argv_prefix(self) -> list:
        return [IP, "netns", "exec", self.netns] if self.netns else []


class Container:
    def __init__(self, ctx: PodContext, spec: dict, entry: ImageEntry | None, uid: int | None, gid: int | None,
                 env: dict):
        self.ctx, self.spec, self.entry = ctx, spec, entry
        self.name, self.image = spec["name"], spec["image"]
        self.uid, self.gid = uid, gid
        self.env = self._full_env(env)
        self.restart_count = 0
        self.proc: subprocess.Popen | None = None
        self.container_id = ""
        self.state: dict = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict = {}
        self.ready = False
        self.started_mono = 0.0
        self.exit_code: int | None = None
        self.logs_dir = ctx.pod_dir / "logs"
        self.workdir = ctx.pod_dir / "containers" / self.name

    def _full_env(self, spec_env: dict) -> dict:
        env = {"PATH": ":".join(expand(p, self.ctx.pod_dir) for p in (self.entry.path if self.entry else []))
               or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOSTNAME": self.ctx.name, "HOME": str(self.ctx.pod_dir / "containers" / self.name),
               "KUBERNETES_SERVICE_HOST": "198.19.0.1", "KUBERNETES_SERVICE_PORT": "443"}
        env.update({k: expand(str(v), self.ctx.pod_dir) for k, v in (self.entry.env if self.entry else {}).items()})
        env.update(self.ctx.base_env)
        env["MESHLAB_CONTAINER_NAME"] = self.name
        env.update(spec_env)
        return env

    @property
    def log_path(self) -> Path:
        return self.logs_dir / f"{self.name}.log"

    @property
    def previous_log_path(self) -> Path:
        return self.logs_dir / f"{self.name}.previous.log"

    def argv(self) -> list:
        cmd = [expand_vars(a, self.env) for a in self.spec.get("command") or []]
        args = [expand_vars(a, self.env) for a in self.spec.get("args") or []]
        return container_argv(self.entry, cmd, args, self.ctx.pod_dir)

    def exec_argv(self, argv: list) -> list:
        """argv that runs a command inside this container (namespace, uid)."""
        return self.ctx.argv_prefix() + uid_argv(self.uid, self.gid) + list(argv)

    def start(self) -> None:
        argv = self.argv()
        if not argv:
            raise ValueError(f"container {self.name}: no command and the image entry has no entrypoint/cmd")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.uid:
            os.chown(self.workdir, self.uid, self.gid if self.gid is not None else self.uid)
        if self.log_path.exists() and self.restart_count:
            self.log_path.replace(self.previous_log_path)
        cwd = self.spec.get("workingDir") or str(self.workdir)
        # Own pipes, owned by the container's user: programs that reopen /dev/stdout (nginx) need that.
        (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
        if self.uid:
            for fd in (out_w, err_w):
                os.fchown(fd, self.uid, self.gid if self.gid is not None else self.uid)
        try:
            self.proc = subprocess.Popen(self.exec_argv(argv), stdout=out_w, stderr=err_w, stdin=subprocess.DEVNULL,
                                         env=self.env, cwd=cwd, start_new_session=True)
        except OSError:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        pump_to_cri_log(os.fdopen(out_r, "rb"), os.fdopen(err_r, "rb"), self.log_path)
        self.container_id = secrets.token_hex(32)
        self.state = {"running": {"startedAt": now_rfc3339()}}
        self.started_mono = time.monotonic()
        self.exit_code = None
        self._write_state_file()

    def _write_state_file(self) -> None:
        data = {"id": self.container_id, "name": self.name, "pod": self.ctx.name, "namespace": self.ctx.namespace,
                "pod_uid": self.ctx.uid, "image": self.image, "pid": self.proc.pid if self.proc else 0,
                "state": "CONTAINER_RUNNING" if "running" in self.state else "CONTAINER_EXITED",
                "netns": self.ctx.netns}
        path = self.ctx.pod_dir / "containers" / f"{self.name}.json"
        path.write_text(json.dumps(data))

    def poll(self) -> int | None:
        """Exit code if the process just ended (state becomes terminated), else None."""
        if self.proc is None or "running" not in self.state:
            return None
        code = self.proc.poll()
        if code is None:
            return None
        self._terminated(code)
        return code

    def _terminated(self, code: int) -> None:
        started = self.state.get("running", {}).get("startedAt")
        if code < 0:
            code = 128 - code
        self.exit_code = code
        self.state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                     "startedAt": started, "finishedAt": now_rfc3339(),
                                     "containerID": f"cri-o://{self.container_id}"}}
        self.ready = False
        self._write_state_file()
        _kill_group(self.proc.pid, signal.SIGKILL)

    def stop(self, grace: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                _kill_group(self.proc.pid, signal.SIGKILL)
            return
        _kill_group(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=max(grace, 0.1))
        except subprocess.TimeoutExpired:
            _kill_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        _kill_group(self.proc.pid, signal.SIGKILL)
        if "running" in self.state:
            self._terminated(self.proc.returncode)

    def status(self) -> dict:
        image_id = f"{self.image.split('@')[0].split(':')[0]}@sha256:{_digest(self.image)}"
        st = {"name": self.name, "image": self.image, "imageID": image_id if self.container_id else "",
              "ready": self.ready, "restartCount": self.restart_count, "state": self.state,
              "started": "running" in self.state}
        if self.container_id:
            st["containerID"] = f"cri-o://{self.container_id}"
        if self.last_state:
            st["lastState"] = self.last_state
        return st


def _digest(text: str) -> str:
    import hashlib
    return hashlib.sha256(text.encode()).hexdigest()


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
