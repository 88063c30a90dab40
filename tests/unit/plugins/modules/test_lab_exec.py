"""The exec helper, the in-pod probe and the capture wire check against the local lab's real
kube-apiserver (skipped when the lab is not up). The tests make their own namespace with two
nginx-unprivileged pods (real nginx, sh and curl on the lab) and delete it afterwards."""

import base64
import hashlib
import os
import uuid
from pathlib import Path

import pytest
from ansible_collections.meshlab.mtls.plugins.module_utils import k8s_exec as kx
from ansible_collections.meshlab.mtls.plugins.module_utils import wire_capture as wc
from ansible_collections.meshlab.mtls.plugins.module_utils.probe_runner import run_in_pod_script, summarize_pod_output
from ansible_collections.meshlab.mtls.plugins.module_utils.wire_options import validate_options
from ansible_collections.meshlab.mtls.plugins.module_utils.wire_run import WireCheck

REPO = Path(__file__).resolve().parents[4]
KUBECONFIG = Path(os.environ.get("K8S_AUTH_KUBECONFIG") or REPO / ".lab" / "kubeconfig")
IMAGE = "docker.io/nginxinc/nginx-unprivileged:1.27"


def _lab_api():
    if not KUBECONFIG.is_file():
        pytest.skip("no lab kubeconfig at %s (run `make lab-up`)" % KUBECONFIG)
    from kubernetes import client, config

    api_client = config.new_client_from_config(str(KUBECONFIG))
    core = client.CoreV1Api(api_client)
    try:
        core.list_namespace(limit=1, _request_timeout=5)
    except Exception as exc:  # any connection problem means: no lab to test against
        pytest.skip("the lab API server does not answer: %s" % exc)
    return core, client.AppsV1Api(api_client)


@pytest.fixture(scope="module")
def lab_pod():
    from kubernetes import watch

    core, apps = _lab_api()
    ns = "h7-exec-" + uuid.uuid4().hex[:6]
    core.create_namespace({"metadata": {"name": ns}})
    try:
        for name in ("web", "client"):
            labels = {"app": name}
            apps.create_namespaced_deployment(ns, {
                "metadata": {"name": name, "labels": labels},
                "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": name, "image": IMAGE, "ports": [{"containerPort": 8080}]}]}}}})
        core.create_namespaced_service(ns, {"metadata": {"name": "web"}, "spec": {
            "selector": {"app": "web"}, "ports": [{"port": 8080, "targetPort": 8080}]}})
        ready = set()
        for event in watch.Watch().stream(core.list_namespaced_pod, ns, timeout_seconds=180):
            obj = core.api_client.sanitize_for_serialization(event["object"])
            if kx.is_running_and_ready(obj):
                ready.add(obj["metadata"]["labels"]["app"])
            if ready == {"web", "client"}:
                break
        pod = kx.find_pod(core, apps, ns, deployment="web")
        yield core, ns, pod["metadata"]["name"]
    finally:
        core.delete_namespace(ns)


def test_exec_returns_stdout_stderr_and_exit_code(lab_pod):
    core, ns, pod = lab_pod
    assert kx.exec_in_pod(core, ns, pod, "web", ["sh", "-c", "echo out; echo err >&2; exit 3"]) == (3, "out\n",
                                                                                                    "err\n")
    assert kx.exec_in_pod(core, ns, pod, "web", ["true"]) == (0, "", "")
    rc, _out, err = kx.exec_in_pod(core, ns, pod, "web", ["no-such-program"])
    assert rc != 0 and "no-such-program" in err


def test_exec_carries_binary_data_as_base64(lab_pod):
    core, ns, pod = lab_pod
    rc, out, err = kx.exec_in_pod(core, ns, pod, "web", [
        "sh", "-c", "head -c 1500000 /dev/urandom >/tmp/blob; sha256sum /tmp/blob >&2; base64 /tmp/blob"])
    data = base64.b64decode("".join(out.split()))
    assert rc == 0 and len(data) == 1500000
    assert err.split()[0] == hashlib.sha256(data).hexdigest()


def test_probe_script_in_a_pod(lab_pod):
    core, ns, pod = lab_pod
    targets = ["http://127.0.0.1:8080/", "http://127.0.0.1:1/"]
    rc, out, err = kx.exec_in_pod(core, ns, pod, "web", ["sh", "-c", run_in_pod_script(targets, 4, 3)])
    ok, refused = summarize_pod_output("web", targets, 4, rc, out, err)
    assert (ok["result"], ok["statuses"]) == ("success", {"200": 4})
    assert refused["curl_exits"] == {"7": 4}


def test_find_pod_errors_name_what_is_missing(lab_pod):
    core, ns, _pod = lab_pod
    from kubernetes import client

    apps = client.AppsV1Api(core.api_client)
    with pytest.raises(kx.K8sExecError, match="Deployment nope not found in namespace"):
        kx.find_pod(core, apps, ns, deployment="nope")
    with pytest.raises(kx.K8sExecError, match="no pods at all"):
        kx.find_pod(core, apps, ns, label_selector="app=nothing")


def wire_options(ns, **kw):
    params = {"client": {"namespace": ns, "deployment": "client"}, "server": {"namespace": ns, "deployment": "web"},
              "traffic_source": None, "url": "http://web.%s.svc.cluster.local:8080/" % ns, "traffic_command": None,
              "service": None, "port": None, "cluster": None, "cluster_domain": "cluster.local", "count": 3,
              "timeout": 5, "method": "capture", "proxy_container": "istio-proxy", "capture_image": wc.DEFAULT_IMAGE,
              "capture_namespace": None, "capture_timeout": 120, "dest": None, "expect": [], "wait_timeout": 0}
    params.update(kw)
    return validate_options(params)


def test_capture_of_plaintext_between_two_pods_and_capture_pod_cleanup(lab_pod, tmp_path):
    core, ns, _pod = lab_pod
    from kubernetes import client

    check = WireCheck(core, client.AppsV1Api(core.api_client), wire_options(ns, dest=str(tmp_path / "web.pcap")))
    result = check.capture_check()
    assert result["capture_pod_deleted"] is True
    assert result["verdict"] == "plaintext", result["evidence"]
    assert result["evidence"]["traffic"]["succeeded"] == 3
    assert (tmp_path / "web.pcap").stat().st_size > wc.PCAP_HEADER_BYTES
    pods = core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/name=meshlab-capture").items
    assert all(p.metadata.deletion_timestamp for p in pods)


def test_capture_in_check_mode_creates_nothing_and_says_what_it_would_do(lab_pod):
    core, ns, _pod = lab_pod
    from kubernetes import client, watch

    since = core.list_namespaced_pod(ns).metadata.resource_version
    check = WireCheck(core, client.AppsV1Api(core.api_client), wire_options(ns))
    result = check.capture_check(check_mode=True)
    assert result["verdict"] == "unknown"
    assert "check mode: would create privileged pod %s/meshlab-capture-" % ns in result["evidence"]["basis"]
    # the API server's own record: no pod was created in the namespace since the call began
    events = list(watch.Watch().stream(core.list_namespaced_pod, ns, resource_version=since, timeout_seconds=2))
    assert [e["object"].metadata.name for e in events if e["type"] == "ADDED"] == []


def test_stats_method_needs_a_server_sidecar(lab_pod):
    core, ns, _pod = lab_pod
    from kubernetes import client

    check = WireCheck(core, client.AppsV1Api(core.api_client), wire_options(ns, method="stats"))
    with pytest.raises(kx.K8sExecError, match="has no istio-proxy container"):
        check.stats_check()
