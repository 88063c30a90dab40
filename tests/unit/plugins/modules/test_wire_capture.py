"""The capture pod's pieces: its manifest, the container ID and PID lookups, and the tcpdump start /
stop scripts run for real here (root, real tcpdump and nsenter into this process's own network
namespace) around real plaintext and TLS traffic, then classified by pcap_tls."""

import json
import os
import shutil
import ssl
import subprocess
import urllib.request

import pytest
from ansible_collections.meshlab.mtls.plugins.module_utils import wire_capture as wc
from ansible_collections.meshlab.mtls.plugins.module_utils.pcap_tls import summarize

SERVER_NAME = "api-istio-system.apps.lab.local"


def test_capture_pod_manifest_is_privileged_on_the_server_node():
    pod = wc.capture_pod_manifest("meshlab-capture-1a2b", "bookinfo", "node-2")
    spec = pod["spec"]
    assert (spec["nodeName"], spec["hostPID"], spec["hostNetwork"]) == ("node-2", True, True)
    assert spec["containers"][0]["securityContext"] == {"privileged": True}
    assert spec["containers"][0]["image"] == wc.DEFAULT_IMAGE
    assert spec["containers"][0]["command"][0] == "sleep"
    assert pod["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"


@pytest.mark.parametrize("name, node", [("Bad_Name", "n"), ("ok", None), ("x" * 64, "n")])
def test_capture_pod_manifest_rejects(name, node):
    with pytest.raises(wc.CaptureError):
        wc.capture_pod_manifest(name, "ns", node)


def test_container_id_strips_runtime_prefix():
    pod = {"metadata": {"name": "details-1"}, "status": {"containerStatuses": [
        {"name": "istio-proxy", "containerID": "cri-o://aaa"}, {"name": "details", "containerID": "containerd://bbb"}]}}
    assert wc.container_id(pod, "details") == "bbb"
    with pytest.raises(wc.CaptureError, match="no status for container nope"):
        wc.container_id(pod, "nope")
    pod["status"]["containerStatuses"][1]["containerID"] = ""
    with pytest.raises(wc.CaptureError, match="no containerID yet"):
        wc.container_id(pod, "details")


def test_pid_from_crictl():
    assert wc.pid_from_crictl(json.dumps({"status": {"id": "bbb"}, "info": {"pid": 4242}})) == 4242
    for bad in ("{}", "not json", json.dumps({"info": {"pid": 0}}), json.dumps({"info": {"pid": "12"}})):
        with pytest.raises(wc.CaptureError):
            wc.pid_from_crictl(bad)


def test_decode_pcap_rejects_garbage_and_short_files():
    with pytest.raises(wc.CaptureError, match="base64"):
        wc.decode_pcap("@@@")
    with pytest.raises(wc.CaptureError, match="shorter than a pcap header"):
        wc.decode_pcap("AAAA")


needs_tcpdump = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("tcpdump", "nsenter", "base64")),
    reason="needs root, tcpdump, nsenter and base64")


def _sh(script):
    done = subprocess.run(["sh", "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _captured(port, base, send):
    pid_line = _sh(wc.start_script(os.getpid(), port, base, interface="lo"))
    assert int(pid_line.strip()) > 0
    assert os.path.getsize(base + ".pcap") >= wc.PCAP_HEADER_BYTES
    send()
    return summarize(wc.decode_pcap(_sh(wc.stop_script(base))))


@needs_tcpdump
def test_real_capture_of_plaintext_http(http_server, tmp_path):
    port = http_server.server_address[1]
    url = "http://127.0.0.1:%d/details/0" % port

    def send():
        for _attempt in range(3):
            urllib.request.urlopen(url, timeout=5).read()

    found = _captured(port, str(tmp_path / "plain"), send)
    assert found["verdict"] == "plaintext"
    assert found["tcp_streams"] == 3


@needs_tcpdump
def test_real_capture_of_tls(https_server, pki, tmp_path):
    port = https_server.server_address[1]
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.check_hostname = False

    def send():
        for _attempt in range(2):
            urllib.request.urlopen("https://127.0.0.1:%d/" % port, timeout=5, context=ctx).read()

    found = _captured(port, str(tmp_path / "tls"), send)
    assert found["verdict"] == "encrypted"


@needs_tcpdump
def test_start_script_reports_tcpdump_failure(tmp_path):
    script = wc.start_script(os.getpid(), 9080, str(tmp_path / "missing-dir" / "x"))
    done = subprocess.run(["sh", "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stderr.strip()
