"""Pieces of the emulated node and DNS that need no root: image table, pod spec reading, DNS wire format."""
import socket
import struct
import threading

import pytest

from meshlab_lab.dns.message import RCODE_NXDOMAIN, parse_question
from meshlab_lab.dns.server import Records, answer
from meshlab_lab.netns import pod_netns_name, uid_argv
from meshlab_lab.node.images import (IMAGES_DIR, ImageEntry, ImageTableError, container_argv, load_table, lookup,
                                     repository)
from meshlab_lab.node.spec import expand_vars, qos_class, resolve_env, run_as_user


@pytest.mark.parametrize("image,repo", [
    ("nginxinc/nginx-unprivileged", "nginxinc/nginx-unprivileged"),
    ("docker.io/nicolaka/netshoot:latest", "nicolaka/netshoot"),
    ("registry.redhat.io/rhel8/support-tools@sha256:abc", "rhel8/support-tools"),
    ("localhost:5000/x/y:1", "x/y"),
])
def test_repository_strips_registry_tag_and_digest(image, repo):
    assert repository(image) == repo


def test_shipped_table_maps_nginx_and_tools_and_rejects_unknown():
    table = load_table(IMAGES_DIR)
    assert lookup(table, "docker.io/nginxinc/nginx-unprivileged:1.25").uid == 101
    assert lookup(table, "registry.redhat.io/rhel8/support-tools").name == "netshoot"
    assert lookup(table, "quay.io/nobody/unknown:1") is None


def test_table_rejects_entries_with_unknown_keys(tmp_path):
    (tmp_path / "bad.yaml").write_text("images:\n  - name: x\n    match: ['a']\n    argv: ['b']\n")
    with pytest.raises(ImageTableError, match="unknown keys"):
        load_table(tmp_path)


def test_container_argv_follows_entrypoint_cmd_semantics(tmp_path):
    entry = ImageEntry(name="e", match=["e"], entrypoint=["/ep", "{pod_dir}"], cmd=["default"])
    assert container_argv(entry, None, None, tmp_path) == ["/ep", str(tmp_path), "default"]
    assert container_argv(entry, None, ["a"], tmp_path) == ["/ep", str(tmp_path), "a"]
    assert container_argv(entry, ["sleep"], None, tmp_path) == ["sleep"]
    assert container_argv(entry, ["sh"], ["-c", "x"], tmp_path) == ["sh", "-c", "x"]


def test_env_resolution_and_var_expansion():
    pod = {"metadata": {"name": "p", "namespace": "n", "labels": {"app": "web"}},
           "spec": {"serviceAccountName": "sa", "nodeName": "lab-node-1"}, "status": {"podIP": "198.18.1.9"}}
    container = {"name": "c", "env": [
        {"name": "A", "value": "x"}, {"name": "B", "value": "$(A)-$$(A)-$(NOPE)"},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}}]}
    env = resolve_env(pod, container)
    assert env == {"A": "x", "B": "x-$(A)-$(NOPE)", "IP": "198.18.1.9", "APP": "web", "SA": "sa"}
    assert expand_vars("$(IP):80", env) == "198.18.1.9:80"


def test_run_as_user_and_qos():
    pod = {"spec": {"securityContext": {"runAsUser": 1000}, "containers": []}}
    assert run_as_user(pod, {"securityContext": {"runAsUser": 1337}}, 101) == 1337
    assert run_as_user(pod, {}, 101) == 1000
    assert run_as_user({"spec": {}}, {}, 101) == 101
    guaranteed = {"spec": {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}
    burstable = {"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}}
    assert qos_class(guaranteed) == "Guaranteed"
    assert qos_class(burstable) == "Burstable"
    assert qos_class({"spec": {"containers": [{}]}}) == "BestEffort"


def test_netns_names_are_unambiguous_and_bounded():
    assert pod_netns_name("a-b", "c") != pod_netns_name("a", "b-c")
    assert len(pod_netns_name("n" * 63, "p" * 253)) <= 200
    assert uid_argv(None) == [] and uid_argv(0) == []
    assert uid_argv(1337)[1:3] == ["--reuid=1337", "--regid=1337"]


def _query(name: str, qtype: int = 1) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


def test_dns_answers_services_and_nxdomain_for_the_rest():
    records = Records()
    records.set_service("ADDED", {"metadata": {"namespace": "ns", "name": "web"}, "spec": {"clusterIP": "198.19.3.4"}})
    reply = answer(records, _query("web.ns.svc.cluster.local"))
    assert struct.unpack("!H", reply[2:4])[0] & 0xF == 0
    assert struct.unpack("!H", reply[6:8])[0] == 1 and reply[-4:] == socket.inet_aton("198.19.3.4")
    assert parse_question(reply)[2] == "web.ns.svc.cluster.local"
    nx = answer(records, _query("example.com"))
    assert struct.unpack("!H", nx[2:4])[0] & 0xF == RCODE_NXDOMAIN
    aaaa = answer(records, _query("web.ns.svc.cluster.local", qtype=28))
    assert struct.unpack("!H", aaaa[6:8])[0] == 0 and struct.unpack("!H", aaaa[2:4])[0] & 0xF == 0
    records.set_service("DELETED", {"metadata": {"namespace": "ns", "name": "web"}, "spec": {}})
    assert struct.unpack("!H", answer(records, _query("web.ns.svc.cluster.local"))[2:4])[0] & 0xF == RCODE_NXDOMAIN


def test_dns_server_answers_over_real_udp(tmp_path):
    import asyncio
    import time

    from meshlab_lab.dns.server import serve
    records = Records()
    records.set_service("ADDED", {"metadata": {"namespace": "a", "name": "b"}, "spec": {"clusterIP": "198.19.0.77"}})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    ready = tmp_path / "ready"
    future = asyncio.run_coroutine_threadsafe(serve(records, ["127.0.0.1"], port, str(ready)), loop)
    try:
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert time.monotonic() < deadline and not future.done(), "DNS server did not start"
            time.sleep(0.05)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(_query("b.a.svc.cluster.local"), ("127.0.0.1", port))
            reply, _ = sock.recvfrom(512)
        assert reply[-4:] == socket.inet_aton("198.19.0.77")
    finally:
        future.cancel()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def test_up_and_down_refuse_to_run_without_root(monkeypatch):
    from meshlab_lab import lab
    monkeypatch.setattr(lab.os, "geteuid", lambda: 1000)
    for action in (lab.up, lab.down):
        with pytest.raises(lab.LabError, match="needs root"):
            action()


def test_up_reports_missing_binaries_before_touching_anything(monkeypatch, tmp_path):
    from meshlab_lab import lab
    monkeypatch.setenv("MESHLAB_KUBE_BIN_DIR", str(tmp_path))
    monkeypatch.setattr(lab.os, "geteuid", lambda: 0)
    monkeypatch.setattr(lab, "down", lambda **kw: pytest.fail("down() must not run when preflight fails"))
    with pytest.raises(lab.LabError, match="missing kube-apiserver"):
        lab.up()
