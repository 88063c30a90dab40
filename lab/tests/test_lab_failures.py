"""Like a kubelet: unknown images fail with ErrImagePull then ImagePullBackOff; crashes restart with back-off."""
import json


def _pod(name: str, image: str, command=None, restart="Always") -> str:
    container = {"name": "main", "image": image}
    if command:
        container["command"] = command
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"restartPolicy": restart, "containers": [container],
                                "terminationGracePeriodSeconds": 1}})


def _waiting_reason(lab, ns, name):
    pod = lab.get("pod", name, "-n", ns) or {}
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        return (cs.get("state") or {}).get("waiting", {}).get("reason")
    return None


def test_unknown_image_reports_errimagepull_then_imagepullbackoff(lab, test_namespace):
    ns = test_namespace
    lab.kubectl("-n", ns, "apply", "-f", "-", input=_pod("nosuch", "quay.io/nobody/no-such-image:1.0"))
    seen = []

    def progressed():
        reason = _waiting_reason(lab, ns, "nosuch")
        if reason and (not seen or seen[-1] != reason):
            seen.append(reason)
        return "ImagePullBackOff" in seen
    lab.wait(progressed, "ImagePullBackOff on the unknown image", timeout=60, interval=0.2)
    assert seen[0] == "ErrImagePull"
    pod = lab.get("pod", "nosuch", "-n", ns)
    assert pod["status"]["phase"] == "Pending"
    assert "lab image table" in pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]


def test_crashing_container_is_restarted_with_back_off(lab, test_namespace):
    ns = test_namespace
    lab.kubectl("-n", ns, "apply", "-f", "-",
                input=_pod("crasher", "nicolaka/netshoot", ["sh", "-c", "echo crashing; exit 2"]))

    def restarted_twice():
        pod = lab.get("pod", "crasher", "-n", ns) or {}
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        return statuses and statuses[0]["restartCount"] >= 2 and statuses[0]
    cs = lab.wait(restarted_twice, "restartCount >= 2", timeout=120)
    assert cs["lastState"]["terminated"]["exitCode"] == 2
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    lab.wait(lambda: _waiting_reason(lab, ns, "crasher") == "CrashLoopBackOff", "CrashLoopBackOff", timeout=60,
             interval=0.2)
    assert "crashing" in lab.kubectl("-n", ns, "logs", "crasher", "--previous").stdout


def test_pod_that_exits_zero_with_restart_never_succeeds(lab, test_namespace):
    ns = test_namespace
    lab.kubectl("-n", ns, "apply", "-f", "-",
                input=_pod("oneshot", "nicolaka/netshoot", ["sh", "-c", "echo done"], restart="Never"))
    lab.wait(lambda: (lab.get("pod", "oneshot", "-n", ns) or {}).get("status", {}).get("phase") == "Succeeded",
             "phase Succeeded", timeout=60)
    assert lab.kubectl("-n", ns, "logs", "oneshot").stdout.strip() == "done"


def test_init_containers_run_first_in_order(lab, test_namespace):
    ns = test_namespace
    marker = "$(MESHLAB_POD_DIR)/order"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "inits"},
           "spec": {"terminationGracePeriodSeconds": 1,
                    "initContainers": [{"name": f"init{i}", "image": "nicolaka/netshoot",
                                        "command": ["sh", "-c", f"echo init{i} >> {marker}"]} for i in (1, 2)],
                    "containers": [{"name": "main", "image": "nicolaka/netshoot",
                                    "command": ["sh", "-c", f"echo main >> {marker}; exec sleep infinity"]}]}}
    lab.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(pod))
    lab.wait(lambda: (lab.get("pod", "inits", "-n", ns) or {}).get("status", {}).get("phase") == "Running",
             "pod inits Running", timeout=60)
    order = lab.wait(lambda: lab.kubectl("-n", ns, "exec", "inits", "--", "sh", "-c",
                                         "cat $MESHLAB_POD_DIR/order").stdout.split() == ["init1", "init2", "main"],
                     "the order file", timeout=30)
    assert order
    statuses = lab.get("pod", "inits", "-n", ns)["status"]["initContainerStatuses"]
    assert [s["state"]["terminated"]["reason"] for s in statuses] == ["Completed", "Completed"]


def test_host_network_pod_runs_in_the_host_namespace(lab, test_namespace):
    ns = test_namespace
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hostnet"},
           "spec": {"hostNetwork": True, "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "main", "image": "nicolaka/netshoot", "command": ["sleep", "infinity"]}]}}
    lab.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(pod))
    lab.wait(lambda: (lab.get("pod", "hostnet", "-n", ns) or {}).get("status", {}).get("phase") == "Running",
             "pod hostnet Running", timeout=60)
    assert lab.get("pod", "hostnet", "-n", ns)["status"]["podIP"] == "127.0.0.1"
    routes = lab.kubectl("-n", ns, "exec", "hostnet", "--", "ip", "route").stdout
    assert "blackhole 198.18.0.0/16" in routes  # the host's table, not a pod's
    from meshlab_lab.netns import netns_exists, pod_netns_name
    assert not netns_exists(pod_netns_name(ns, "hostnet"))


def test_events_tell_what_the_node_did(lab, test_namespace):
    ns = test_namespace
    lab.kubectl("-n", ns, "run", "evented", "--image=nginxinc/nginx-unprivileged", "--restart=Never")

    def reasons():
        evs = (lab.get("events", "-n", ns, "--field-selector", "involvedObject.name=evented") or {}).get("items", [])
        got = {e["reason"] for e in evs if e["source"].get("component") == "kubelet"}
        return got if {"Pulled", "Created", "Started"} <= got else None
    assert lab.wait(reasons, "kubelet events for pod evented", timeout=60)


def test_readiness_probes_decide_ready(lab, test_namespace):
    ns = test_namespace
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probed"},
           "spec": {"terminationGracePeriodSeconds": 1, "containers": [
               {"name": "web", "image": "nginxinc/nginx-unprivileged",
                "readinessProbe": {"httpGet": {"path": "/missing", "port": 8080}, "periodSeconds": 1}},
               {"name": "gate", "image": "nicolaka/netshoot", "command": ["sleep", "infinity"],
                "readinessProbe": {"exec": {"command": ["sh", "-c", "test -f $MESHLAB_POD_DIR/gate"]},
                                   "periodSeconds": 1}}]}}
    lab.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(pod))

    def statuses():
        p = lab.get("pod", "probed", "-n", ns) or {}
        got = {c["name"]: c for c in (p.get("status") or {}).get("containerStatuses") or []}
        return got if all("running" in c.get("state", {}) for c in got.values()) and len(got) == 2 else None
    lab.wait(statuses, "both containers running", timeout=60)
    web_seen = lab.kubectl("-n", ns, "exec", "probed", "-c", "gate", "--", "curl", "-s", "-o", "/dev/null", "-w",
                           "%{http_code}", "http://127.0.0.1:8080/missing").stdout
    assert web_seen == "404"
    st = statuses()
    assert st["web"]["ready"] is False and st["gate"]["ready"] is False
    lab.kubectl("-n", ns, "exec", "probed", "-c", "gate", "--", "sh", "-c", "touch $MESHLAB_POD_DIR/gate")
    lab.wait(lambda: (s := statuses()) and s["gate"]["ready"], "exec probe to pass", timeout=30)
    assert statuses()["web"]["ready"] is False, "httpGet probe answering 404 keeps the container unready"
    conds = {c["type"]: c["status"] for c in lab.get("pod", "probed", "-n", ns)["status"]["conditions"]}
    assert conds["Ready"] == "False" and conds["ContainersReady"] == "False"
