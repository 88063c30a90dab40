"""Runs one pod bound to the emulated node: network, init containers, containers, probes, restarts, deletion."""
import logging
import threading
import time

from meshlab_lab import network
from meshlab_lab.node import events, pod_status
from meshlab_lab.node.container import Container, PodContext, now_rfc3339
from meshlab_lab.node.images import lookup
from meshlab_lab.node.probes import ProbeState, run_probe
from meshlab_lab.node.spec import qos_class, resolve_env, run_as_group, run_as_user

log = logging.getLogger("meshlab.node.pod")
TICK = 0.25
MAX_BACKOFF = 300.0
PULL_BACKOFF_AFTER = 2.0


def backoff_seconds(restart_count: int) -> float:
    """Kubelet-like crash back-off: first restart at once, then 10s, 20s, ... capped at 5 minutes."""
    return 0.0 if restart_count == 0 else min(10.0 * 2 ** (restart_count - 1), MAX_BACKOFF)


class PodWorker(threading.Thread):
    def __init__(self, node, pod: dict):
        super().__init__(daemon=True, name=f"pod-{pod['metadata']['namespace']}/{pod['metadata']['name']}")
        self.node, self.pod = node, pod
        meta, spec = pod["metadata"], pod["spec"]
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.host_network = bool(spec.get("hostNetwork"))
        self.restart_policy = spec.get("restartPolicy") or "Always"
        self.qos = qos_class(pod)
        self.conditions = pod_status.Conditions()
        self.containers: list[Container] = []
        self.init_containers: list[Container] = []
        self.init_done = False
        self.failed_init = False
        self.pod_ip = ""
        self.start_time = now_rfc3339()
        self.pod_dir = node.pods_dir / f"{self.namespace}_{self.name}"
        self._delete_grace: float | None = None
        self._forced = threading.Event()
        self._wake = threading.Event()
        self._last_pushed: dict | None = None
        self._restart_at: dict = {}
        self._probes: dict = {}
        self._pull_failed_at: dict = {}

    # --- control from the node's watch loop -------------------------------------------------------------
    def request_delete(self, grace: float) -> None:
        if self._delete_grace is None:
            self._delete_grace = grace
            self._wake.set()

    def force_stop(self) -> None:
        self._forced.set()
        self.request_delete(0)

    def container(self, name: str | None) -> Container | None:
        all_containers = self.containers + self.init_containers
        if name is None:
            return self.containers[0] if self.containers else None
        return next((c for c in all_containers if c.name == name), None)

    def _event(self, c: Container | None, reason: str, message: str, kind: str = "Normal") -> None:
        events.record(self.node.core, self.node.name, self.pod, c.name if c else None, reason, message, kind)

    # --- lifecycle --------------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except Exception:  # noqa: BLE001 - one broken pod must not stop the node
            log.exception("pod %s/%s failed", self.namespace, self.name)
            self._stop_all(0)
        finally:
            self._cleanup()

    def _run(self) -> None:
        self.pod_dir.mkdir(parents=True, exist_ok=True)
        self.pod_dir.chmod(0o1777)
        if self.host_network:
            self.pod_ip, netns = self.node.host_ip, None
        else:
            self.pod_ip = self.node.allocate_ip(self.uid, (self.pod.get("status") or {}).get("podIP"))
            search = [f"{self.namespace}.svc.cluster.local", "svc.cluster.local", "cluster.local"]
            netns = network.setup_pod(self.namespace, self.name, self.pod_ip, search)
        self.pod.setdefault("status", {})["podIP"] = self.pod_ip
        self.pod["status"]["hostIP"] = self.node.host_ip
        ctx = PodContext(self.namespace, self.name, self.uid, self.pod_ip, self.node.host_ip, netns, self.pod_dir,
                         self._base_env())
        spec = self.pod["spec"]
        self.init_containers = [self._make(ctx, c) for c in spec.get("initContainers") or []]
        self.containers = [self._make(ctx, c) for c in spec["containers"]]
        self._push()
        if not self._run_init_containers():
            self._finish()
            return
        self.init_done = True
        for c in self.containers:
            if c.entry is not None:
                self._start(c)
        while not self._deleting():
            self._tick()
            self._push()
            self._wake.wait(TICK)
            self._wake.clear()
        self._finish()

    def _base_env(self) -> dict:
        return {"MESHLAB_POD_NAME": self.name, "MESHLAB_POD_NAMESPACE": self.namespace, "MESHLAB_POD_UID": self.uid,
                "MESHLAB_POD_IP": self.pod_ip, "MESHLAB_NODE_NAME": self.node.name,
                "MESHLAB_SERVICE_ACCOUNT": self.pod["spec"].get("serviceAccountName") or "default",
                "MESHLAB_POD_DIR": str(self.pod_dir), "MESHLAB_STATE_DIR": str(self.node.state_dir),
                "MESHLAB_KUBECONFIG": str(self.node.admin_kubeconfig), "MESHLAB_REPO": str(self.node.repo)}

    def _make(self, ctx: PodContext, spec: dict) -> Container:
        entry = lookup(self.node.image_table, spec["image"])
        uid = run_as_user(self.pod, spec, entry.uid if entry else None)
        env = resolve_env(self.pod, spec, lambda kind, name, key: self.node.read_key(self.namespace, kind, name, key))
        c = Container(ctx, spec, entry, uid, run_as_group(self.pod, spec), env)
        if entry is None:
            c.state = {"waiting": {"reason": "ErrImagePull",
                                   "message": f"image {spec['image']!r} is not in the lab image table (lab/images/)"}}
            self._pull_failed_at[c.name] = time.monotonic()
            self._event(c, "Failed", f"Failed to pull image \"{spec['image']}\": not in the lab image table",
                        "Warning")
        return c

    def _deleting(self) -> bool:
        return self._delete_grace is not None

    def _run_init_containers(self) -> bool:
        for c in self.init_containers:
            while True:
                if self._deleting():
                    return False
                if c.entry is None:
                    self._image_pull_backoff(c)
                elif "terminated" in c.state and c.exit_code == 0:
                    break
                elif "running" not in c.state and time.monotonic() >= self._restart_at.get(c.name, 0):
                    if c.container_id:
                        c.restart_count += 1
                    self._start(c)
                else:
                    code = c.poll()
                    if code is not None and code != 0:
                        if self.restart_policy == "Never":
                            self.failed_init = True
                            self._push()
                            return False
                        c.last_state = c.state
                        self._restart_at[c.name] = time.monotonic() + backoff_seconds(c.restart_count)
                        c.state = {"waiting": {"reason": "CrashLoopBackOff", "message": f"init container {c.name} "
                                               f"exited with {code}"}}
                self._push()
                self._wake.wait(TICK)
                self._wake.clear()
        return True

    def _start(self, c: Container) -> None:
        if not c.container_id:
            self._event(c, "Pulled", f'Container image "{c.image}" already present on machine')
        try:
            c.start()
        except (OSError, ValueError) as exc:
            c.state = {"waiting": {"reason": "CreateContainerError", "message": str(exc)}}
            self._restart_at[c.name] = time.monotonic() + backoff_seconds(c.restart_count + 1)
            self._event(c, "Failed", f"Error: {exc}", "Warning")
            return
        self._event(c, "Created", f"Created container {c.name}")
        self._event(c, "Started", f"Started container {c.name}")
        probe = c.spec.get("readinessProbe")
        default_period = 10
        if not probe and c.entry is not None and c.entry.ready_probe:
            probe, default_period = c.entry.ready_probe, 1
        self._probes[c.name] = {"readiness": ProbeState(probe, time.monotonic(), default_period) if probe else None,
                                "liveness": ProbeState(c.spec["livenessProbe"], time.monotonic())
                                if c.spec.get("livenessProbe") else None}

    def _image_pull_backoff(self, c: Container) -> None:
        if time.monotonic() - self._pull_failed_at.get(c.name, 0) >= PULL_BACKOFF_AFTER:
            c.state = {"waiting": {"reason": "ImagePullBackOff",
                                   "message": f"Back-off pulling image {c.image!r}: not in the lab image table"}}

    def _tick(self) -> None:
        now = time.monotonic()
        for c in self.containers:
            if c.entry is None:
                self._image_pull_backoff(c)
                continue
            code = c.poll()
            if code is not None:
                self._on_exit(c, code, now)
            if "running" not in c.state:
                if c.name in self._restart_at and now >= self._restart_at[c.name]:
                    del self._restart_at[c.name]
                    c.restart_count += 1
                    self._start(c)
                continue
            self._run_probes(c, now)

    def _on_exit(self, c: Container, code: int, now: float) -> None:
        restart = self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and code != 0)
        if not restart:
            return
        delay = backoff_seconds(c.restart_count)
        c.last_state = c.state
        self._restart_at[c.name] = now + delay
        if delay:
            self._event(c, "BackOff", "Back-off restarting failed container", "Warning")
            c.state = {"waiting": {"reason": "CrashLoopBackOff",
                                   "message": f"back-off {delay:g}s restarting failed container={c.name} "
                                              f"pod={self.name}_{self.namespace}({self.uid})"}}

    def _run_probes(self, c: Container, now: float) -> None:
        probes = self._probes.get(c.name) or {}
        live = probes.get("liveness")
        if live and live.due(now):
            live.record(run_probe(live.probe, self.pod_ip, c.spec, c.exec_argv, c.env), now)
            if live.result is False:
                log.info("liveness probe of %s/%s:%s failed, restarting", self.namespace, self.name, c.name)
                c.stop(float(self.pod["spec"].get("terminationGracePeriodSeconds") or 30))
                self._on_exit(c, c.exit_code or 137, now)
                return
        ready = probes.get("readiness")
        if ready is None:
            c.ready = True
        elif ready.due(now):
            ready.record(run_probe(ready.probe, self.pod_ip, c.spec, c.exec_argv, c.env), now)
            c.ready = bool(ready.result)

    def _stop_all(self, grace: float) -> None:
        for c in self.containers + self.init_containers:
            if "running" in c.state and not self._forced.is_set():
                self._event(c, "Killing", f"Stopping container {c.name}")
            c.stop(grace)

    def _finish(self) -> None:
        grace = 0 if self._forced.is_set() else min(self._delete_grace or 0, 30)
        self._stop_all(grace)

    def _cleanup(self) -> None:
        """Network down first, then the API object goes (grace 0) so that controllers see the pod gone."""
        try:
            if not self.host_network:
                network.teardown_pod(self.namespace, self.name)
                self.node.release_ip(self.uid)
            if self._deleting() and not self._forced.is_set():
                self.node.delete_pod(self.namespace, self.name, self.uid)
        finally:
            self.node.worker_done(self)

    def _push(self) -> None:
        if self._forced.is_set():
            return
        status = pod_status.build(self)
        comparable = {k: v for k, v in status.items() if k != "conditions"}
        comparable["conds"] = [(c["type"], c["status"]) for c in status["conditions"]]
        if comparable == self._last_pushed:
            return
        if self.node.patch_pod_status(self.namespace, self.name, status):
            self._last_pushed = comparable
