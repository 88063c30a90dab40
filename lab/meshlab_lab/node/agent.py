"""The emulated node: Node object, Lease heartbeat, watch of the pods bound to it."""
import base64
import datetime
import ipaddress
import json
import logging
import os
import platform
import threading
import time
import uuid

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from meshlab_lab import addresses as A
from meshlab_lab import paths
from meshlab_lab.k8s import api_client
from meshlab_lab.node.images import load_table
from meshlab_lab.node.pod_worker import PodWorker

log = logging.getLogger("meshlab.node")
LEASE_SECONDS = 40
HEARTBEAT = 10.0


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class Node:
    def __init__(self, index: int, kubeconfig: str):
        self.index, self.name = index, A.node_name(index)
        self.host_ip = "127.0.0.1"
        self.kubelet_port = A.kubelet_port(index)
        self.api = api_client(kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.coord = client.CoordinationV1Api(self.api)
        self.state_dir, self.repo = paths.state_dir(), paths.REPO_ROOT
        self.pods_dir = paths.pods_dir()
        self.admin_kubeconfig = paths.kubeconfig_path()
        self.image_table = load_table()
        self.subnet = ipaddress.ip_network(A.node_pod_subnet(index))
        self._ips: dict = {}
        self._lock = threading.Lock()
        self.workers: dict = {}
        self.stopping = threading.Event()

    # --- IPs ---------------------------------------------------------------------------------------------
    def allocate_ip(self, pod_uid: str, preferred: str | None = None) -> str:
        """A free pod IP; ``preferred`` (the IP the API already records for an adopted pod) when possible."""
        with self._lock:
            used = set(self._ips.values())
            if preferred and preferred not in used and ipaddress.ip_address(preferred) in self.subnet:
                self._ips[pod_uid] = preferred
                return preferred
            for host in list(self.subnet.hosts())[1:]:
                if str(host) not in used:
                    self._ips[pod_uid] = str(host)
                    return str(host)
        raise RuntimeError(f"pod subnet {self.subnet} of {self.name} is full")

    def release_ip(self, pod_uid: str) -> None:
        with self._lock:
            self._ips.pop(pod_uid, None)

    # --- Node object and heartbeat -----------------------------------------------------------------------
    def _node_status(self) -> dict:
        now = _now().strftime("%Y-%m-%dT%H:%M:%SZ")
        cond = [("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available")]
        capacity = {"cpu": str(os.cpu_count() or 2), "memory": f"{_mem_kib()}Ki", "pods": "110",
                    "ephemeral-storage": "20Gi"}
        return {
            "capacity": capacity, "allocatable": capacity,
            "conditions": [{"type": t, "status": s, "reason": r, "message": m, "lastHeartbeatTime": now,
                            "lastTransitionTime": self._started} for t, s, r, m in cond],
            "addresses": [{"type": "InternalIP", "address": self.host_ip}, {"type": "Hostname", "address": self.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": {"machineID": self._machine_id, "systemUUID": self._machine_id, "bootID": self._machine_id,
                         "kernelVersion": platform.release(), "osImage": "meshlab emulated node (Debian)",
                         "containerRuntimeVersion": "cri-o://1.20.0", "kubeletVersion": "v1.20.2",
                         "kubeProxyVersion": "v1.20.2", "operatingSystem": "linux", "architecture": "amd64"},
        }

    def register(self) -> None:
        self._started = _now().strftime("%Y-%m-%dT%H:%M:%SZ")
        self._machine_id = uuid.uuid5(uuid.NAMESPACE_DNS, self.name).hex
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": {"kubernetes.io/hostname": self.name,
                                                           "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}}}
        try:
            self.core.create_node(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
        self.core.patch_node_status(self.name, {"status": self._node_status()})

    def heartbeat_loop(self) -> None:
        next_status = 0.0
        while not self.stopping.is_set():
            try:
                self._renew_lease()
                if time.monotonic() >= next_status:
                    self.core.patch_node_status(self.name, {"status": self._node_status()})
                    next_status = time.monotonic() + 30
            except Exception:  # noqa: BLE001 - keep beating; the API server may be restarting
                log.exception("heartbeat failed")
            self.stopping.wait(HEARTBEAT)

    def _renew_lease(self) -> None:
        now = _now()
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now}
        try:
            self.coord.patch_namespaced_lease(self.name, "kube-node-lease", {"spec": {
                "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}})
        except ApiException as exc:
            if exc.status != 404:
                raise
            node = self.core.read_node(self.name)
            owner = client.V1OwnerReference(api_version="v1", kind="Node", name=self.name, uid=node.metadata.uid)
            meta = client.V1ObjectMeta(name=self.name, owner_references=[owner])
            self.coord.create_namespaced_lease("kube-node-lease",
                                               client.V1Lease(metadata=meta, spec=client.V1LeaseSpec(**spec)))

    # --- pods --------------------------------------------------------------------------------------------
    def read_key(self, namespace: str, kind: str, name: str, key: str | None):
        """Values of configMap/secret keys for env (``key`` None: the whole map)."""
        if kind.startswith("secret"):
            data = self.core.read_namespaced_secret(name, namespace).data or {}
            data = {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
        else:
            data = self.core.read_namespaced_config_map(name, namespace).data or {}
        return data if key is None else data.get(key)

    def patch_pod_status(self, namespace: str, name: str, status: dict) -> bool:
        try:
            self.core.patch_namespaced_pod_status(name, namespace, {"status": status}, _preload_content=False)
            return True
        except ApiException as exc:
            if exc.status != 404:
                log.warning("status of %s/%s not updated: %s %s", namespace, name, exc.reason, exc.body)
            return False

    def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        try:
            self.core.delete_namespaced_pod(name, namespace, body=client.V1DeleteOptions(
                grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)), _preload_content=False)
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("delete of %s/%s failed: %s", namespace, name, exc.reason)

    def worker_done(self, worker: PodWorker) -> None:
        with self._lock:
            if self.workers.get(worker.uid) is worker:
                del self.workers[worker.uid]

    def handle(self, kind: str, pod: dict) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        with self._lock:
            worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker:
                worker.force_stop()
            return
        if meta.get("deletionTimestamp"):
            grace = float(meta.get("deletionGracePeriodSeconds") or 0)
            if worker:
                worker.request_delete(grace)
            else:
                self.delete_pod(meta["namespace"], meta["name"], uid)
            return
        if worker is None and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            worker = PodWorker(self, pod)
            with self._lock:
                self.workers[uid] = worker
            worker.start()

    def watch_loop(self) -> None:
        selector = f"spec.nodeName={self.name}"
        while not self.stopping.is_set():
            try:
                resp = self.core.list_pod_for_all_namespaces(field_selector=selector, _preload_content=False)
                listing = json.loads(resp.data)
                for pod in listing["items"]:
                    self.handle("ADDED", pod)
                rv = listing["metadata"]["resourceVersion"]
                w = watch.Watch()
                for event in w.stream(self.core.list_pod_for_all_namespaces, field_selector=selector,
                                      resource_version=rv, timeout_seconds=300, _preload_content=False):
                    raw = event["raw_object"] if "raw_object" in event else event["object"]
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self.handle(event["type"], raw)
                    if self.stopping.is_set():
                        break
            except Exception:  # noqa: BLE001 - relist after any watch failure
                log.exception("pod watch failed; relisting")
                self.stopping.wait(1)

    def shutdown(self) -> None:
        self.stopping.set()
        with self._lock:
            workers = list(self.workers.values())
        for w in workers:
            w.force_stop()
        for w in workers:
            w.join(timeout=40)


def _mem_kib() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    return 8 * 1024 * 1024
