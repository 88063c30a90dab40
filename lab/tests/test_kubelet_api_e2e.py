"""The lab kubelet API behind a real kube-apiserver 1.20.2: exec (WebSocket and SPDY) and logs.

Clients: the Python kubernetes client (WebSocket v5/v4), Debian's kubectl 1.20.2 (SPDY/3.1), the
machine's kubectl (WebSocket v5 first, SPDY as fallback), and kubernetes.core.k8s_exec.
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import pty
import selectors
import shutil
import ssl
import struct
import subprocess
import sys
import tempfile
import termios
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from _apiserver import SkipReason, start_apiserver, wait_until
from meshlab_lab.kubelet_api import take_controlling_tty
from meshlab_lab.kubelet_api.testing import KubeletThread, LocalRunner, RecordedLog

NS, POD, CTR, NODE = "default", "web", "app", "lab-node"
STOPPED = "stopped"  # a container of the pod that the node knows but that does not run
CMD_TIMEOUT = 60


@pytest.fixture(scope="module")
def kubelet_lab():
    if os.geteuid() != 0:
        pytest.skip("the API server test lab runs as root")
    from kubernetes import client, config
    workdir = Path(tempfile.mkdtemp(prefix="kubelet-api-e2e-"))
    try:
        api = start_apiserver(workdir / "apiserver")
    except SkipReason as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.skip(str(exc))
    scratch = workdir / "node"
    scratch.mkdir()
    runner = LocalRunner(scratch)
    runner.add(NS, POD, CTR)
    runner.add(NS, POD, STOPPED)
    runner.running.discard((NS, POD, STOPPED))
    recorded = RecordedLog()
    kubelet = KubeletThread(runner, api.kubelet_tls.certfile, api.kubelet_tls.keyfile, api.kubelet_tls.client_ca)
    try:
        api_client = config.new_client_from_config(str(api.kubeconfig))
        core = client.CoreV1Api(api_client)
        _register_node(core, kubelet.port)
        _create_running_pod(core)
        yield {"api": api, "core": core, "runner": runner, "scratch": scratch, "kubelet": kubelet,
               "log": recorded}
    finally:
        kubelet.stop()
        api.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _register_node(core, port: int) -> None:
    core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
    core.patch_node_status(NODE, {"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "lab"}],
    }})


def _create_running_pod(core) -> None:
    containers = [{"name": name, "image": "nginxinc/nginx-unprivileged"} for name in (CTR, STOPPED)]
    core.create_namespaced_pod(NS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD},
                                    "spec": {"nodeName": NODE, "containers": containers}})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    core.patch_namespaced_pod_status(POD, NS, {"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": CTR, "ready": True, "restartCount": 0, "image": "nginxinc/nginx-unprivileged",
                               "imageID": "", "state": {"running": {"startedAt": now}}}]}})


def _python_exec(core, command, stdin=False, binary=False, headers=None):
    from kubernetes.stream import stream
    kwargs = {"_headers": headers} if headers else {}
    return stream(core.connect_get_namespaced_pod_exec, POD, NS, container=CTR, command=command,
                  stdin=stdin, stdout=True, stderr=True, tty=False, _preload_content=False, binary=binary, **kwargs)


def _finish(resp):
    resp.run_forever(timeout=CMD_TIMEOUT)
    assert not resp.is_open(), "exec did not finish in time"
    return resp


# ---------------------------------------------------------------- Python client (WebSocket)
def test_python_client_exec_stdout_stderr_and_rc(kubelet_lab):
    resp = _finish(_python_exec(kubelet_lab["core"], ["sh", "-c", "echo hi; echo err >&2; exit 3"]))
    assert resp.read_stdout() == "hi\n"
    assert resp.read_stderr() == "err\n"
    assert resp.returncode == 3
    assert resp.subprotocol == "v5.channel.k8s.io"


def test_python_client_exec_success_status_is_rc_zero(kubelet_lab):
    resp = _finish(_python_exec(kubelet_lab["core"], ["true"]))
    assert resp.returncode == 0


def test_error_channel_carries_kubelet_status_json(kubelet_lab):
    resp = _finish(_python_exec(kubelet_lab["core"], ["sh", "-c", "exit 5"]))
    status = json.loads(resp.read_channel(3))
    assert status == {
        "metadata": {}, "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command [sh -c exit 5], exit code 5",
        "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": "5"}]},
    }


def test_python_client_stdin_round_trip_v5_close(kubelet_lab):
    resp = _python_exec(kubelet_lab["core"], ["cat"], stdin=True)
    resp.write_stdin("line one\nline two\n")
    resp.close_channel(0)  # v5: tells the server stdin is finished, so cat ends
    _finish(resp)
    assert resp.read_stdout() == "line one\nline two\n"
    assert resp.returncode == 0


def test_python_client_stdin_on_v4(kubelet_lab):
    resp = _python_exec(kubelet_lab["core"], ["head", "-c", "6"], stdin=True,
                        headers={"sec-websocket-protocol": "v4.channel.k8s.io"})
    resp.write_stdin("abcdef-and-more")
    _finish(resp)
    assert resp.subprotocol == "v4.channel.k8s.io"
    assert resp.read_stdout() == "abcdef"
    assert resp.returncode == 0


def test_python_client_one_mib_binary_intact(kubelet_lab):
    payload = os.urandom(1 << 20)
    (kubelet_lab["scratch"] / "blob.bin").write_bytes(payload)
    resp = _finish(_python_exec(kubelet_lab["core"], ["cat", "blob.bin"], binary=True))
    received = resp.read_stdout()
    assert len(received) == len(payload)
    assert base64.b64encode(received) == base64.b64encode(payload)
    assert resp.returncode == 0


def test_python_client_tty_with_resize(kubelet_lab):
    from kubernetes.stream import stream
    resp = stream(kubelet_lab["core"].connect_get_namespaced_pod_exec, POD, NS, container=CTR,
                  command=["sh", "-c", "read line; test -t 0 && echo tty:yes; stty size"],
                  stdin=True, stdout=True, stderr=False, tty=True, _preload_content=False)
    resp.write_channel(4, json.dumps({"Width": 100, "Height": 40}))
    resp.write_stdin("go\n")
    _finish(resp)
    output = resp.read_stdout()
    assert "tty:yes" in output
    assert "40 100" in output
    assert resp.returncode == 0


def test_command_not_found_is_exit_127_with_runc_message(kubelet_lab):
    resp = _finish(_python_exec(kubelet_lab["core"], ["no-such-command-xyz"]))
    assert resp.returncode == 127
    assert 'exec: "no-such-command-xyz": executable file not found in $PATH' in resp.read_stderr()


def test_exec_in_a_container_that_does_not_run_is_refused_by_the_kubelet(kubelet_lab):
    from kubernetes.client.rest import ApiException
    from kubernetes.stream import stream
    with pytest.raises(ApiException) as info:
        stream(kubelet_lab["core"].connect_get_namespaced_pod_exec, POD, NS, container=STOPPED, command=["true"],
               stdout=True, stderr=True, stdin=False, tty=False)
    # The text comes from the runner's resolve(), through the kubelet's 404 and the API server's proxy.
    assert "Handshake status 404" in str(info.value)
    assert f'container "{STOPPED}" is not running' in str(info.value)


def test_healthz_through_the_api_server_node_proxy(kubelet_lab):
    body = kubelet_lab["core"].connect_get_node_proxy_with_path(NODE, "healthz")
    assert body == "ok"


def test_kubelet_port_requires_a_client_certificate(kubelet_lab):
    api, port = kubelet_lab["api"], kubelet_lab["kubelet"].port
    trusted = ssl.create_default_context(cafile=str(api.ca_file))
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=trusted, timeout=10) as response:
            response.read()  # TLS 1.3 reports the missing certificate only on the first read
    pki = api.ca_file.parent
    trusted.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=trusted, timeout=10) as response:
        assert response.read() == b"ok"


# ---------------------------------------------------------------- kubectl
def _kubectl_120() -> Path | None:
    """Debian's kubectl 1.20.2 (never installed: it conflicts with the machine's kubectl)."""
    candidates = [os.environ.get("MESHLAB_KUBECTL_120", "")]
    cache = Path.home() / ".cache" / "meshlab"
    # the lab's build script installs Debian's kubectl next to the 1.20.2 server binaries
    candidates += [str(cache / "kube-1.20.2" / "bin" / "kubectl"),
                   str(cache / "kubectl-debian" / "usr" / "bin" / "kubectl")]
    for candidate in filter(None, candidates):
        if Path(candidate).is_file() and "v1.20." in _version(candidate):
            return Path(candidate)
    return _extract_debian_kubectl(cache / "kubectl-debian")


def _extract_debian_kubectl(target: Path) -> Path | None:
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        return None
    with tempfile.TemporaryDirectory() as download:
        fetched = subprocess.run(["apt-get", "download", "kubernetes-client"], cwd=download,
                                 capture_output=True, timeout=300)
        debs = list(Path(download).glob("kubernetes-client_*.deb"))
        if fetched.returncode != 0 or not debs:
            return None
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(target)], check=True, timeout=300)
    binary = target / "usr" / "bin" / "kubectl"
    return binary if binary.is_file() and "v1.20." in _version(str(binary)) else None


def _version(binary: str) -> str:
    try:
        return subprocess.run([binary, "version", "--client"], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return ""


@pytest.fixture(scope="module", params=["kubectl-1.20", "kubectl-machine"])
def kubectl(request, kubelet_lab):
    if request.param == "kubectl-1.20":
        binary = _kubectl_120()
        if binary is None:
            pytest.skip("Debian's kubectl 1.20.2 is not available (apt-get download kubernetes-client failed)")
        transport = "over spdy v4.channel.k8s.io"
    else:
        found = shutil.which("kubectl")
        if found is None or "v1.20." in _version(found):
            pytest.skip("no second (newer) kubectl on PATH")
        binary = Path(found)
        # kubectl >= 1.30 tries WebSocket (v5) first; the 1.20 API server passes the upgrade through.
        transport = "over websocket v5.channel.k8s.io"
    return Kubectl(binary, kubelet_lab["api"].kubeconfig, transport)


class Kubectl:
    def __init__(self, binary: Path, kubeconfig: Path, transport: str):
        self.argv = [str(binary), "--kubeconfig", str(kubeconfig)]
        self.transport = transport

    def __call__(self, *args, stdin: bytes | None = None, check: bool = False):
        return subprocess.run([*self.argv, *args], input=stdin, capture_output=True, timeout=CMD_TIMEOUT,
                              check=check)

    def start(self, *args) -> subprocess.Popen:
        return subprocess.Popen([*self.argv, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_kubectl_exec_stdout_and_exit_code(kubectl, kubelet_lab):
    mark = len(kubelet_lab["log"].messages)
    done = kubectl("exec", POD, "-c", CTR, "--", "sh", "-c", "echo hi; echo err >&2; exit 7")
    used = kubelet_lab["log"].since(mark)
    assert any(kubectl.transport in message for message in used), used
    assert done.stdout == b"hi\n"
    assert b"err\n" in done.stderr
    assert done.returncode == 7


def test_kubectl_exec_success(kubectl):
    done = kubectl("exec", POD, "-c", CTR, "--", "echo", "ok")
    assert (done.returncode, done.stdout) == (0, b"ok\n"), done.stderr


def test_kubectl_exec_in_a_stopped_container_fails_with_the_kubelet_message(kubectl):
    done = kubectl("exec", POD, "-c", STOPPED, "--", "true")
    assert done.returncode != 0
    assert f'container "{STOPPED}" is not running'.encode() in done.stderr, done.stderr


def test_exec_process_is_killed_when_the_client_disconnects(kubectl, kubelet_lab):
    runner = kubelet_lab["runner"]
    before = len(runner.spawned)
    proc = kubectl.start("exec", POD, "-c", CTR, "--", "sh", "-c", "echo started; exec sleep 600")
    try:
        assert _read_line(proc) == b"started\n"
        sleeper = runner.spawned[before]
        assert sleeper.returncode is None
        proc.kill()
        proc.wait()
        wait_until(lambda: sleeper.returncode is not None, CMD_TIMEOUT, "the exec'd process to be killed")
        assert sleeper.returncode == -9
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kubectl_exec_stdin(kubectl):
    done = kubectl("exec", "-i", POD, "-c", CTR, "--", "sh", "-c", "tr a-z A-Z; echo done", stdin=b"from stdin\n")
    assert (done.returncode, done.stdout) == (0, b"FROM STDIN\ndone\n"), done.stderr


def test_kubectl_exec_one_mib_binary_intact(kubectl, kubelet_lab):
    payload = os.urandom(1 << 20)
    (kubelet_lab["scratch"] / "blob-kubectl.bin").write_bytes(payload)
    mark = len(kubelet_lab["log"].messages)
    done = kubectl("exec", POD, "-c", CTR, "--", "cat", "blob-kubectl.bin")
    assert done.returncode == 0, done.stderr
    assert base64.b64encode(done.stdout) == base64.b64encode(payload)
    if "spdy" in kubectl.transport:
        # spdystream never opens windows: the session must have detected that instead of stalling at 64 KiB.
        assert any("does no flow control" in message for message in kubelet_lab["log"].since(mark))


def test_kubectl_exec_large_stdin(kubectl):
    payload = os.urandom(300 * 1024)
    done = kubectl("exec", "-i", POD, "-c", CTR, "--", "sh", "-c", "cat | sha256sum", stdin=payload)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0].decode() == hashlib.sha256(payload).hexdigest()


def test_kubectl_exec_tty_gets_the_terminal_size(kubectl):
    """`kubectl exec -it` from a real terminal (a pty here): tty exec plus the resize stream/channel."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 90, 0, 0))
    proc = subprocess.Popen([*kubectl.argv, "exec", "-it", POD, "-c", CTR, "--", "sh", "-c",
                             "echo ready; read answer; stty size; exit 3"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            preexec_fn=take_controlling_tty)
    os.close(slave)
    output = b""
    try:
        output = _read_pty_until(master, b"ready")
        os.write(master, b"go\r")
        output += _read_pty_until(master, None)
        assert proc.wait(timeout=CMD_TIMEOUT) == 3, output
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert b"30 90" in output


def _read_pty_until(master: int, marker: bytes | None) -> bytes:
    """Read the pty until `marker` shows up, or until it closes when marker is None."""
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(master, selectors.EVENT_READ)
        while marker is None or marker not in seen:
            assert selector.select(timeout=CMD_TIMEOUT), f"pty quiet for {CMD_TIMEOUT}s; got {seen!r}"
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: kubectl exited and closed the terminal
                chunk = b""
            if not chunk:
                break
            seen += chunk
    return seen


def test_kubectl_logs(kubectl, kubelet_lab):
    runner = kubelet_lab["runner"]
    runner.append_log(NS, POD, CTR, "first line\nsecond line\nthird line")
    done = kubectl("logs", POD, "-c", CTR, check=True)
    assert done.stdout.decode().endswith("first line\nsecond line\nthird line\n")
    tail = kubectl("logs", POD, "-c", CTR, "--tail=1", check=True)
    assert tail.stdout == b"third line\n"
    stamped = kubectl("logs", POD, "-c", CTR, "--tail=1", "--timestamps", check=True).stdout.decode()
    stamp, text = stamped.rstrip("\n").split(" ", 1)
    assert text == "third line" and stamp.endswith("Z") and "T" in stamp


def test_kubectl_logs_follow(kubectl, kubelet_lab):
    runner, key = kubelet_lab["runner"], (NS, POD, CTR)
    runner.append_log(NS, POD, CTR, "before follow")
    proc = kubectl.start("logs", "-f", "--tail=1", POD, "-c", CTR)
    try:
        assert _read_line(proc) == b"before follow\n"
        runner.append_log(NS, POD, CTR, "appended while following")
        assert _read_line(proc) == b"appended while following\n"
        mark = len(kubelet_lab["log"].messages)
        runner.running.discard(key)  # the container ends: the follow stream must end
        assert proc.wait(timeout=CMD_TIMEOUT) == 0
        assert any(message.endswith("ended: container ended") for message in kubelet_lab["log"].since(mark))
    finally:
        runner.running.add(key)
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_kubectl_logs_follow_stops_when_the_client_leaves(kubectl, kubelet_lab):
    kubelet_lab["runner"].append_log(NS, POD, CTR, "still running")
    proc = kubectl.start("logs", "-f", "--tail=1", POD, "-c", CTR)
    try:
        assert _read_line(proc) == b"still running\n"
        mark = len(kubelet_lab["log"].messages)
        proc.kill()
        proc.wait()
        kubelet_lab["runner"].append_log(NS, POD, CTR, "wakes the follower up")
        ended = wait_until(lambda: [m for m in kubelet_lab["log"].since(mark) if "ended:" in m], CMD_TIMEOUT,
                           "the follow stream to end")
        assert ended[0].endswith("ended: client left")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _read_line(proc) -> bytes:
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=CMD_TIMEOUT), "no log line within the timeout"
    return proc.stdout.readline()


# ---------------------------------------------------------------- kubernetes.core.k8s_exec
def test_k8s_exec_module_returns_rc_and_stdout(kubelet_lab, tmp_path):
    playbook_bin = Path(sys.executable).with_name("ansible-playbook")
    if not playbook_bin.exists():
        pytest.skip("ansible-playbook is not installed next to this Python")
    out = tmp_path / "result.json"
    playbook = tmp_path / "exec.yml"
    playbook.write_text(f"""- hosts: localhost
  gather_facts: false
  tasks:
    - name: Exec in the lab pod
      kubernetes.core.k8s_exec:
        namespace: {NS}
        pod: {POD}
        container: {CTR}
        command: sh -c 'echo from-ansible; exit 4'
      register: result
      failed_when: false
    - name: Save the result
      ansible.builtin.copy:
        content: "{{{{ result | to_json }}}}"
        dest: "{out}"
        mode: "0600"
""")
    env = {**os.environ, "K8S_AUTH_KUBECONFIG": str(kubelet_lab["api"].kubeconfig), "ANSIBLE_NOCOLOR": "1"}
    done = subprocess.run([str(playbook_bin), "-i", "localhost,", "-c", "local", "-e",
                           f"ansible_python_interpreter={sys.executable}", str(playbook)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["rc"] == 4
    assert result["stdout"] == "from-ansible\n"
