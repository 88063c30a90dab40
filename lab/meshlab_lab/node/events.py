"""Kubelet-style Events (Pulled, Created, Started, Killing, Failed, BackOff) for `kubectl describe pod`."""
import datetime
import logging
import secrets

from kubernetes.client.rest import ApiException

log = logging.getLogger("meshlab.node.events")


def record(core, node_name: str, pod: dict, container: str | None, reason: str, message: str,
           kind: str = "Normal") -> None:
    meta = pod["metadata"]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    involved = {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"],
                "apiVersion": "v1", "resourceVersion": meta.get("resourceVersion")}
    if container:
        involved["fieldPath"] = f"spec.containers{{{container}}}"
    body = {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": meta["namespace"]},
            "involvedObject": involved, "reason": reason, "message": message, "type": kind,
            "source": {"component": "kubelet", "host": node_name}, "firstTimestamp": now, "lastTimestamp": now,
            "count": 1, "reportingComponent": "kubelet", "reportingInstance": node_name}
    try:
        core.create_namespaced_event(meta["namespace"], body, _preload_content=False)
    except ApiException as exc:  # events are best effort, as in a kubelet
        log.debug("event %s for %s/%s not recorded: %s", reason, meta["namespace"], meta["name"], exc.reason)
