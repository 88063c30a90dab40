# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Run a wire check against a cluster: stats snapshots around a burst, or a packet capture."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.meshlab.mtls.plugins.module_utils.k8s_exec import (
    K8sExecError, container_names, describe_pod, exec_in_pod, find_pod, require_container,
)
from ansible_collections.meshlab.mtls.plugins.module_utils.pcap_tls import summarize as summarize_pcap
from ansible_collections.meshlab.mtls.plugins.module_utils.probe_runner import run_in_pod_script, summarize_pod_output
from ansible_collections.meshlab.mtls.plugins.module_utils.wire_capture import (
    CaptureError, capture_pod_manifest, container_id, decode_pcap, pid_from_crictl, start_script, stop_script,
)
from ansible_collections.meshlab.mtls.plugins.module_utils.wire_stats import classify, parse_stats
from ansible_collections.meshlab.mtls.plugins.module_utils.wire_telemetry import wire_evidence

STATS_ARGV = ["pilot-agent", "request", "GET", "stats"]
TELEMETRY_ARGV = ["pilot-agent", "request", "GET", "stats/prometheus"]


def workload_name(pod):
    """The workload name Istio reports for a pod: a ReplicaSet-owned pod's Deployment, else its owner or itself."""
    meta = pod["metadata"]
    owner = next(iter(meta.get("ownerReferences") or []), None)
    if owner is None:
        return meta["name"]
    template_hash = (meta.get("labels") or {}).get("pod-template-hash")
    if owner.get("kind") == "ReplicaSet" and template_hash and owner["name"].endswith("-" + template_hash):
        return owner["name"][:-len(template_hash) - 1]
    return owner["name"]


class WireCheck:
    """Holds the API clients and the validated options of one check (see mtls_wire_check)."""

    def __init__(self, api, apps_api, opts):
        self.api, self.apps_api, self.opts = api, apps_api, opts
        self.timeout = opts["timeout"]

    def pod_of(self, ref):
        return find_pod(self.api, self.apps_api, ref["namespace"], pod=ref["pod"], deployment=ref["deployment"],
                        label_selector=ref["label_selector"])

    def run(self, pod, container, argv, what, budget=None):
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        rc, out, err = exec_in_pod(self.api, ns, name, container, argv, budget or self.timeout + 60)
        if rc != 0:
            raise K8sExecError("%s in %s/%s (%s) exited %d: %s" % (what, ns, name, container, rc, err.strip()[-500:]))
        return out

    def stats(self, pod, container):
        return parse_stats(self.run(pod, container, STATS_ARGV, "reading Envoy stats"))

    def burst(self):
        """Send the traffic from the traffic source; returns a probe row (or the command's output)."""
        ref = self.opts["traffic_source"]
        pod = self.pod_of(ref)
        container = require_container(pod, ref["container"])
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        count = self.opts["count"]
        if self.opts["traffic_command"]:
            out = self.run(pod, container, ["sh", "-c", self.opts["traffic_command"]], "traffic_command",
                           self.timeout * count + 60)
            return {"source": name, "command": self.opts["traffic_command"], "output": out[-2000:]}
        script = run_in_pod_script([self.opts["url"]], count, self.timeout)
        rc, out, err = exec_in_pod(self.api, ns, name, container, ["sh", "-c", script], (self.timeout + 2) * count + 30)
        return summarize_pod_output(ref["name"], [self.opts["url"]], count, rc, out, err)[0]

    def stats_check(self):
        proxy = self.opts["proxy_container"]
        server = self.pod_of(self.opts["server"])
        if proxy not in container_names(server):
            raise K8sExecError("server pod %s has no %s container, so it has no Envoy stats to read (containers: %s)"
                               % (server["metadata"]["name"], proxy, ", ".join(container_names(server))))
        client = self.pod_of(self.opts["client"])
        client_has_proxy = proxy in container_names(client)
        server_before = self.stats(server, proxy)
        client_before = self.stats(client, proxy) if client_has_proxy else None
        traffic = self.burst()
        client_after = self.stats(client, proxy) if client_has_proxy else None
        server_after = self.stats(server, proxy)
        verdict, evidence = classify(client_before, client_after, server_before, server_after, self.opts["cluster"])
        if not client_has_proxy:
            evidence["client"] = {"verdict": None, "basis": "client pod has no %s container" % proxy}
        evidence["traffic"] = traffic
        return {"verdict": verdict, "evidence": evidence, "method": "stats",
                "pods": {"client": client["metadata"]["name"], "server": server["metadata"]["name"]}}

    def telemetry_check(self):
        """Istio's request telemetry on the server sidecar, read around the burst (works with default stats)."""
        proxy = self.opts["proxy_container"]
        server = self.pod_of(self.opts["server"])
        if proxy not in container_names(server):
            names = ", ".join(container_names(server))
            raise K8sExecError("server pod %s has no %s container, so it has no Istio telemetry to read "
                               "(containers: %s)" % (server["metadata"]["name"], proxy, names))
        client = self.pod_of(self.opts["client"])
        source = workload_name(client)
        before = self.run(server, proxy, TELEMETRY_ARGV, "reading Istio telemetry")
        traffic = self.burst()
        after = self.run(server, proxy, TELEMETRY_ARGV, "reading Istio telemetry")
        evidence = wire_evidence(before, after, source_workload=source)
        evidence["source_workload"] = source
        evidence["traffic"] = traffic
        return {"verdict": evidence["verdict"], "evidence": evidence, "method": "telemetry",
                "pods": {"client": client["metadata"]["name"], "server": server["metadata"]["name"]}}

    # ------------------------------------------------------------------ capture

    def capture_check(self, check_mode=False):
        server = self.pod_of(self.opts["server"])
        app = self.opts["server"]["container"] or next(
            (c for c in container_names(server) if c != self.opts["proxy_container"]), None)
        app = require_container(server, app)
        cid = container_id(server, app)
        name = "meshlab-capture-" + os.urandom(4).hex()
        ns = self.opts["capture_namespace"] or server["metadata"]["namespace"]
        node = (server.get("spec") or {}).get("nodeName")
        manifest = capture_pod_manifest(name, ns, node, self.opts["capture_image"])
        result = {"method": "capture", "capture_pod": name, "capture_pod_deleted": False,
                  "pods": {"server": server["metadata"]["name"]}}
        if check_mode:  # a privileged pod is a change to the cluster: say what would happen, create nothing
            result.update(verdict="unknown", evidence={"basis": (
                "check mode: would create privileged pod %s/%s (hostPID, image %s) on node %s and capture "
                "container %s of %s on port %s" % (ns, name, self.opts["capture_image"], node, app,
                                                   server["metadata"]["name"], self.opts["port"]))})
            return result
        self.api.create_namespaced_pod(ns, manifest)
        deleted = None
        try:
            pod = self.wait_running(ns, name)
            result.update(self.capture_in(pod, cid))
        except Exception as exc:
            deleted = self.delete_pod(ns, name)
            raise CaptureError("%s (capture pod %s/%s %s)" % (
                exc, ns, name, "deleted" if deleted else "could NOT be deleted: delete it by hand")) from exc
        finally:
            if deleted is None:  # success, or an exit that skipped the handler above
                deleted = self.delete_pod(ns, name)
        result["capture_pod_deleted"] = deleted
        return result

    def capture_in(self, pod, cid):
        pid = pid_from_crictl(self.run(pod, "capture", ["crictl", "inspect", "--output", "json", cid],
                                       "crictl inspect"))
        base = "/tmp/meshlab-%s" % os.urandom(4).hex()
        self.run(pod, "capture", ["sh", "-c", start_script(pid, self.opts["port"], base)], "starting tcpdump")
        traffic = self.burst()
        pcap = decode_pcap(self.run(pod, "capture", ["sh", "-c", stop_script(base)], "stopping tcpdump"))
        evidence = summarize_pcap(pcap)
        evidence["traffic"] = traffic
        evidence["server_pid"] = pid
        out = {"verdict": evidence["verdict"], "evidence": evidence}
        if self.opts["dest"]:
            with open(self.opts["dest"], "wb") as handle:
                handle.write(pcap)
            out["pcap_path"] = self.opts["dest"]
        return out

    def wait_running(self, ns, name):
        """Wait (watch, bounded by capture_timeout) until the capture pod runs; explain what was seen if not."""
        from kubernetes import watch

        last = None
        watcher = watch.Watch()
        for event in watcher.stream(self.api.list_namespaced_pod, ns, field_selector="metadata.name=" + name,
                                    timeout_seconds=self.opts["capture_timeout"]):
            last = self.api.api_client.sanitize_for_serialization(event["object"])
            phase = (last.get("status") or {}).get("phase")
            if phase == "Running" and all((cs.get("state") or {}).get("running")
                                          for cs in last["status"].get("containerStatuses") or [{}]):
                watcher.stop()
                return last
            if phase in ("Failed", "Succeeded") or event["type"] == "DELETED":
                watcher.stop()
                raise CaptureError("capture pod %s/%s ended before it ran: %s" % (ns, name, describe_pod(last)))
        raise CaptureError("capture pod %s/%s was not running within %ss (last seen: %s)"
                           % (ns, name, self.opts["capture_timeout"], describe_pod(last) if last else "nothing"))

    def delete_pod(self, ns, name):
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.delete_namespaced_pod(name, ns, grace_period_seconds=0)
            return True
        except ApiException as exc:
            return exc.status == 404
        except Exception:  # pylint: disable=broad-except  # the caller reports the pod as not deleted
            return False
