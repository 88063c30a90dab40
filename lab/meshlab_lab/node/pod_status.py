"""Pod status as a kubelet reports it: phase, conditions, container statuses."""
from meshlab_lab.node.container import Container, now_rfc3339


class Conditions:
    """Pod conditions with lastTransitionTime kept across updates."""

    def __init__(self):
        self._state: dict = {}

    def set(self, kind: str, value: bool, reason: str | None = None) -> None:
        text = "True" if value else "False"
        current = self._state.get(kind)
        if current is None or current["status"] != text:
            self._state[kind] = {"type": kind, "status": text, "lastProbeTime": None,
                                 "lastTransitionTime": now_rfc3339()}
        if reason and not value:
            self._state[kind]["reason"] = reason
        else:
            self._state[kind].pop("reason", None)

    def as_list(self) -> list:
        order = ["Initialized", "Ready", "ContainersReady", "PodScheduled"]
        return [self._state[k] for k in order if k in self._state]


def phase(init_done: bool, containers: list[Container], restart_policy: str, failed_init: bool) -> str:
    if failed_init:
        return "Failed"
    if not init_done:
        return "Pending"
    states = [c.state for c in containers]
    if any("running" in s for s in states):
        return "Running"
    if states and all("terminated" in s for s in states):
        if restart_policy == "Always":
            return "Running"
        codes = [s["terminated"]["exitCode"] for s in states]
        return "Succeeded" if all(code == 0 for code in codes) else "Failed"
    if any(c.restart_count for c in containers):
        return "Running"
    return "Pending"


def build(worker) -> dict:
    """The status dict of a ``PodWorker``."""
    conds = worker.conditions
    conds.set("PodScheduled", True)
    init_ready = worker.init_done
    conds.set("Initialized", init_ready, None if init_ready else "ContainersNotInitialized")
    all_ready = init_ready and bool(worker.containers) and all(c.ready for c in worker.containers)
    conds.set("ContainersReady", all_ready, None if all_ready else "ContainersNotReady")
    conds.set("Ready", all_ready, None if all_ready else "ContainersNotReady")
    status = {
        "phase": phase(worker.init_done, worker.containers, worker.restart_policy, worker.failed_init),
        "conditions": conds.as_list(), "hostIP": worker.node.host_ip, "startTime": worker.start_time,
        "qosClass": worker.qos, "containerStatuses": [c.status() for c in worker.containers],
    }
    if worker.init_containers:
        status["initContainerStatuses"] = [c.status() for c in worker.init_containers]
    if worker.pod_ip:
        status["podIP"] = worker.pod_ip
        status["podIPs"] = [{"ip": worker.pod_ip}]
    return status
