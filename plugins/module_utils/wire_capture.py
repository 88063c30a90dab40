# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Pieces of a privileged packet capture next to a server pod (the idea of ksniff's privileged mode).

A short-lived pod on the server pod's node shares the host PID and network namespaces, finds the
server container's PID with ``crictl inspect`` and runs tcpdump inside that PID's network namespace.
The scripts below run in that pod's shell; every wait in them is bounded.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import json
import re
import shlex

PCAP_HEADER_BYTES = 24
DEFAULT_IMAGE = "docker.io/nicolaka/netshoot:latest"
_NAME_OK = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class CaptureError(Exception):
    """The capture could not be set up, run or read back."""


def capture_pod_manifest(name, namespace, node_name, image=DEFAULT_IMAGE, lifetime_s=900):
    """A privileged pod pinned to ``node_name``; it sleeps ``lifetime_s`` so a lost pod ends by itself."""
    if not _NAME_OK.match(name) or len(name) > 63:
        raise CaptureError("bad capture pod name %r" % name)
    if not node_name:
        raise CaptureError("the server pod is not scheduled on a node yet")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": "meshlab-capture",
                                "app.kubernetes.io/managed-by": "meshlab.mtls"},
                     "annotations": {"sidecar.istio.io/inject": "false"}},
        "spec": {
            "nodeName": node_name,
            "hostPID": True,
            "hostNetwork": True,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{
                "name": "capture",
                "image": image,
                "command": ["sleep", str(int(lifetime_s))],
                "securityContext": {"privileged": True},
            }],
        },
    }


def container_id(pod, container):
    """The runtime container ID of ``container`` in ``pod`` without its 'runtime://' prefix."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == container:
            cid = cs.get("containerID") or ""
            cid = cid.split("://", 1)[-1]
            if not cid:
                raise CaptureError("container %s of pod %s has no containerID yet"
                                   % (container, pod["metadata"]["name"]))
            return cid
    raise CaptureError("pod %s has no status for container %s" % (pod["metadata"]["name"], container))


def pid_from_crictl(text):
    """The host PID from ``crictl inspect --output json`` (``.info.pid``)."""
    try:
        pid = json.loads(text)["info"]["pid"]
    except (ValueError, KeyError, TypeError):
        raise CaptureError("crictl inspect gave no .info.pid: %r" % text[:300]) from None
    if not isinstance(pid, int) or pid <= 0:
        raise CaptureError("crictl inspect gave an unusable pid %r" % (pid,))
    return pid


def start_script(pid, port, base, wait_s=20, interface="eth0"):
    """Start tcpdump in the background and return once the pcap file holds its header.

    The capture is on the pod's own interface (``eth0``): that is the wire between pods. ``any`` would
    also record the sidecar's hop to the application over loopback, which is plaintext in every mode.

    Prints the tcpdump PID. Fails (exit 3) with tcpdump's own output if tcpdump dies, or (exit 4)
    if the header does not appear within ``wait_s`` seconds.
    """
    return (
        # --immediate-mode: packets reach the file at once, so none is still buffered when SIGINT comes
        "nsenter -n -t {pid} tcpdump -i {interface} -U --immediate-mode -w {base}.pcap tcp port {port} "
        "</dev/null >{base}.log 2>&1 &\n"
        "tp=$!; echo $tp >{base}.pid; end=$(( $(date +%s) + {wait} ))\n"
        "while [ ! -f {base}.pcap ] || [ $(wc -c <{base}.pcap) -lt {hdr} ]; do\n"
        "  if ! kill -0 $tp 2>/dev/null; then cat {base}.log >&2; exit 3; fi\n"
        "  if [ $(date +%s) -gt $end ]; then echo 'no pcap header after {wait}s' >&2; cat {base}.log >&2; exit 4; fi\n"
        "  sleep 0.05\n"
        "done\n"
        "echo $tp\n"
    ).format(pid=int(pid), port=int(port), base=base, wait=int(wait_s), hdr=PCAP_HEADER_BYTES,
             interface=shlex.quote(interface))


def stop_script(base, wait_s=20):
    """SIGINT tcpdump, wait until it has exited (gone or a zombie), then print the pcap as base64."""
    return (
        "tp=$(cat {base}.pid); kill -INT $tp 2>/dev/null; end=$(( $(date +%s) + {wait} ))\n"
        "while s=$(awk '{{print $3}}' /proc/$tp/stat 2>/dev/null) && [ -n \"$s\" ] && [ \"$s\" != Z ]; do\n"
        "  if [ $(date +%s) -gt $end ]; then echo 'tcpdump did not stop within {wait}s' >&2; exit 5; fi\n"
        "  sleep 0.05\n"
        "done\n"
        "cat {base}.log >&2; base64 {base}.pcap\n"
    ).format(base=base, wait=int(wait_s))


def decode_pcap(b64_text):
    try:
        data = base64.b64decode("".join(b64_text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CaptureError("the pcap did not come back as base64: %s" % exc) from None
    if len(data) < PCAP_HEADER_BYTES:
        raise CaptureError("the pcap is %d bytes, shorter than a pcap header" % len(data))
    return data
