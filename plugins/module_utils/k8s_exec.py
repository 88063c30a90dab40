# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Find the pod behind a source and run one command in one of its containers.

The pure parts (pod selection, decoding the exec status channel) take plain Kubernetes-shaped
dicts so that they can be tested without a cluster; the parts that talk to the API server take a
``kubernetes.client.CoreV1Api``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time

try:
    from kubernetes.stream import stream
except ImportError:  # reported by the module through AnsibleK8SModule's dependency check
    stream = None

EXEC_STATUS_CHANNEL = 3


class K8sExecError(Exception):
    """A pod could not be found or a command could not be run in it."""


def is_running_and_ready(pod):
    """True when a pod (dict) is Running, Ready and not being deleted."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    if meta.get("deletionTimestamp") or status.get("phase") != "Running":
        return False
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            return str(cond.get("status")) == "True"
    return False


def describe_pod(pod):
    """A short 'name phase ready=x' line, used in error messages."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    waiting = []
    for cs in status.get("containerStatuses") or []:
        reason = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
        if reason:
            waiting.append("%s:%s" % (cs.get("name"), reason))
    text = "%s phase=%s ready=%s" % (meta.get("name"), status.get("phase"), is_running_and_ready(pod))
    if meta.get("deletionTimestamp"):
        text += " terminating"
    if waiting:
        text += " waiting=" + ",".join(waiting)
    return text


def pick_ready_pod(pods):
    """Choose one Running+Ready pod; the newest one wins, the name breaks ties (stable choice).

    Returns the pod dict or raises K8sExecError describing every pod that was seen.
    """
    ready = [p for p in pods if is_running_and_ready(p)]
    if not ready:
        seen = "; ".join(describe_pod(p) for p in pods) or "no pods at all"
        raise K8sExecError("no Running and Ready pod (seen: %s)" % seen)
    ready.sort(key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]), reverse=True)
    return ready[0]


def selector_from_match_labels(match_labels):
    """'a=b,c=d' from a matchLabels dict (sorted, so the text is stable)."""
    if not match_labels:
        raise K8sExecError("the deployment has no spec.selector.matchLabels")
    return ",".join("%s=%s" % (k, match_labels[k]) for k in sorted(match_labels))


def container_names(pod):
    return [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]


def require_container(pod, container):
    """Return the container name to use (the first one when ``container`` is empty)."""
    names = container_names(pod)
    if not names:
        raise K8sExecError("pod %s has no containers" % pod["metadata"]["name"])
    if not container:
        return names[0]
    if container not in names:
        raise K8sExecError("pod %s has no container %r (it has: %s)"
                           % (pod["metadata"]["name"], container, ", ".join(names)))
    return container


def parse_exec_status(text):
    """Decode the exec status channel into (rc, message).

    The API server sends a metav1.Status: ``Success`` means rc 0; a non-zero exit carries a cause
    with reason ``ExitCode``. Any other failure (e.g. executable not found) has no exit code; it is
    reported as rc 126 (cannot execute) with the server's message. An empty channel (the stream
    closed without a status) is reported as rc -1.
    """
    if not text:
        return -1, "the exec stream closed without an exit status"
    try:
        status = json.loads(text)
    except ValueError:
        return -1, "unreadable exec status: %r" % text[:200]
    if status.get("status") == "Success":
        return 0, ""
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message")), status.get("message", "")
            except (TypeError, ValueError):
                break
    return 126, status.get("message") or "exec failed"


def pod_to_dict(api, pod):
    """Kubernetes-shaped dict (camelCase keys) from a client model object."""
    return api.api_client.sanitize_for_serialization(pod)


def list_pods(api, namespace, label_selector=None):
    resp = api.list_namespaced_pod(namespace, label_selector=label_selector or None)
    return [pod_to_dict(api, p) for p in resp.items]


def find_pod(api, apps_api, namespace, pod=None, deployment=None, label_selector=None):
    """Return the pod dict for a source given by name, deployment or label selector."""
    from kubernetes.client.exceptions import ApiException

    try:
        if pod:
            found = pod_to_dict(api, api.read_namespaced_pod(pod, namespace))
            if not is_running_and_ready(found):
                raise K8sExecError("pod %s/%s is not Running and Ready (%s)" % (namespace, pod, describe_pod(found)))
            return found
        if deployment:
            dep = apps_api.read_namespaced_deployment(deployment, namespace)
            label_selector = selector_from_match_labels(dep.spec.selector.match_labels)
        if not label_selector:
            raise K8sExecError("give one of pod, deployment or label_selector")
        pods = list_pods(api, namespace, label_selector)
    except ApiException as exc:
        what = ("pod %s" % pod) if pod else ("Deployment %s" % deployment) if deployment else label_selector
        if exc.status == 404:
            raise K8sExecError("%s not found in namespace %s" % (what, namespace)) from None
        raise K8sExecError("reading %s in %s failed: %s %s" % (what, namespace, exc.status, exc.reason)) from None
    try:
        return pick_ready_pod(pods)
    except K8sExecError as exc:
        what = deployment or label_selector
        raise K8sExecError("%s in %s (%s): %s" % (what, namespace, label_selector, exc)) from None


def exec_in_pod(api, namespace, pod, container, argv, timeout_s=120):
    """Run ``argv`` in ``container`` of ``pod``; return (rc, stdout, stderr) as text.

    Output is text (UTF-8); binary payloads must be base64-encoded inside the pod.
    The command is bounded by ``timeout_s``: after it the stream is closed and K8sExecError raised.
    """
    if stream is None:
        raise K8sExecError("the kubernetes Python client is required")
    if not container:
        raise K8sExecError("exec needs an explicit container")
    resp = stream(api.connect_get_namespaced_pod_exec, pod, namespace, command=list(argv), container=container,
                  stdout=True, stderr=True, stdin=False, tty=False, _preload_content=False)
    out, err = [], []
    deadline = time.monotonic() + timeout_s
    try:
        while resp.is_open():
            if time.monotonic() > deadline:
                raise K8sExecError("command in %s/%s (%s) did not finish within %ss: %s"
                                   % (namespace, pod, container, timeout_s, " ".join(argv)[:200]))
            resp.update(timeout=1)
            if resp.peek_stdout():
                out.append(resp.read_stdout())
            if resp.peek_stderr():
                err.append(resp.read_stderr())
        out.append(resp.read_channel(1))
        err.append(resp.read_channel(2))
        status_text = resp.read_channel(EXEC_STATUS_CHANNEL)
    finally:
        resp.close()
    rc, message = parse_exec_status(status_text)
    stderr = "".join(err)
    if rc == 126 and message:
        stderr = (stderr + "\n" + message).strip()
    return rc, "".join(out), stderr


def core_and_apps_api(k8s_client):
    """CoreV1Api and AppsV1Api over the ApiClient inside kubernetes.core's K8SClient."""
    from kubernetes import client as k8s

    api_client = k8s_client.client.client
    return k8s.CoreV1Api(api_client), k8s.AppsV1Api(api_client)
