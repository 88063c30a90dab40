"""Pod selection and exec status decoding, on objects shaped by the real Kubernetes client models."""

import json

import pytest
from ansible_collections.meshlab.mtls.plugins.module_utils import k8s_exec as kx
from kubernetes import client as k8s

SERIALIZE = k8s.ApiClient().sanitize_for_serialization


def make_pod(name, phase="Running", ready=True, created="2026-01-01T00:00:00Z", deleting=False, waiting=None,
             containers=("nginx", "istio-proxy")):
    statuses = []
    for c in containers:
        state = k8s.V1ContainerState(waiting=k8s.V1ContainerStateWaiting(reason=waiting)) if waiting else \
            k8s.V1ContainerState(running=k8s.V1ContainerStateRunning())
        statuses.append(k8s.V1ContainerStatus(name=c, image="img", image_id="", ready=ready, restart_count=0,
                                              state=state, container_id="cri-o://%s-%s" % (name, c)))
    pod = k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name, namespace="bookinfo", creation_timestamp=created,
                                  deletion_timestamp="2026-01-02T00:00:00Z" if deleting else None),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name=c, image="img") for c in containers],
                           node_name="node-1"),
        status=k8s.V1PodStatus(phase=phase, container_statuses=statuses, conditions=[
            k8s.V1PodCondition(type="Ready", status="True" if ready else "False")]),
    )
    return SERIALIZE(pod)


def test_serialized_pods_have_api_shape():
    pod = make_pod("a")
    assert pod["status"]["containerStatuses"][0]["containerID"] == "cri-o://a-nginx"
    assert pod["spec"]["nodeName"] == "node-1"


def test_pick_ready_pod_skips_not_ready_pending_and_terminating_and_takes_newest():
    pods = [make_pod("old", created="2026-01-01T00:00:00Z"), make_pod("new", created="2026-01-03T00:00:00Z"),
            make_pod("pending", phase="Pending", ready=False, created="2026-01-09T00:00:00Z"),
            make_pod("unready", ready=False, created="2026-01-09T00:00:00Z"),
            make_pod("leaving", deleting=True, created="2026-01-09T00:00:00Z")]
    assert kx.pick_ready_pod(pods)["metadata"]["name"] == "new"


def test_pick_ready_pod_explains_what_it_saw():
    pods = [make_pod("p1", phase="Pending", ready=False, waiting="ImagePullBackOff")]
    with pytest.raises(kx.K8sExecError, match=r"p1 phase=Pending ready=False waiting=nginx:ImagePullBackOff"):
        kx.pick_ready_pod(pods)
    with pytest.raises(kx.K8sExecError, match="no pods at all"):
        kx.pick_ready_pod([])


def test_selector_from_match_labels_is_sorted():
    assert kx.selector_from_match_labels({"version": "v1", "app": "productpage"}) == "app=productpage,version=v1"
    with pytest.raises(kx.K8sExecError):
        kx.selector_from_match_labels({})


def test_require_container_defaults_to_first_and_rejects_unknown():
    pod = make_pod("a")
    assert kx.require_container(pod, None) == "nginx"
    assert kx.require_container(pod, "istio-proxy") == "istio-proxy"
    with pytest.raises(kx.K8sExecError, match="has no container 'curl' \\(it has: nginx, istio-proxy\\)"):
        kx.require_container(pod, "curl")


def _status(**kw):
    return json.dumps(SERIALIZE(k8s.V1Status(metadata=k8s.V1ListMeta(), **kw)))


def test_parse_exec_status_success_and_exit_code():
    assert kx.parse_exec_status(_status(status="Success")) == (0, "")
    failed = _status(status="Failure", reason="NonZeroExitCode",
                     message="command terminated with non-zero exit code: exit status 56",
                     details=k8s.V1StatusDetails(causes=[k8s.V1StatusCause(reason="ExitCode", message="56")]))
    assert kx.parse_exec_status(failed) == (56, "command terminated with non-zero exit code: exit status 56")


def test_parse_exec_status_without_exit_code_and_broken_channel():
    not_found = _status(status="Failure", reason="InternalError",
                        message='exec: "pilot-agent": executable file not found in $PATH')
    rc, message = kx.parse_exec_status(not_found)
    assert rc == 126 and "executable file not found" in message
    assert kx.parse_exec_status("")[0] == -1
    assert kx.parse_exec_status("{not json")[0] == -1
