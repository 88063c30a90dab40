"""Debian's real kubectl 1.20.2 against the lab: version, node, nginx deployment, Service, DNS, exec, logs."""
import ipaddress

import pytest

TOOLS_IMAGE = "nicolaka/netshoot"
NGINX_IMAGE = "nginxinc/nginx-unprivileged"


@pytest.fixture(scope="module")
def web(lab, test_namespace):
    ns = test_namespace
    lab.kubectl("-n", ns, "create", "deployment", "web", f"--image={NGINX_IMAGE}")
    lab.kubectl("-n", ns, "scale", "deployment", "web", "--replicas=2")
    lab.kubectl("-n", ns, "expose", "deployment", "web", "--port=8080")
    lab.kubectl("-n", ns, "create", "deployment", "tools", f"--image={TOOLS_IMAGE}", "--", "sleep", "infinity")
    pods = lab.running_pods(ns, "app=web", count=2)
    lab.running_pods(ns, "app=tools")
    return ns, pods


def test_kubectl_version_shows_server_v1_20_2(lab):
    out = lab.kubectl("version", "--short").stdout
    assert "Server Version: v1.20.2" in out
    assert "Client Version: v1.20.2" in out


def test_node_registers_like_a_kubelet(lab):
    node = lab.get("node", "lab-node-1")
    status = node["status"]
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    assert status["nodeInfo"]["kubeletVersion"] == "v1.20.2"
    assert status["nodeInfo"]["containerRuntimeVersion"] == "cri-o://1.20.0"
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
    assert int(status["capacity"]["pods"]) > 0
    ready = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True"
    lease = lab.get("lease", "lab-node-1", "-n", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == "lab-node-1"


def test_deployment_pods_run_with_own_ips_and_endpoints(lab, web):
    ns, pods = web
    ips = [p["status"]["podIP"] for p in pods]
    assert len(set(ips)) == 2
    for ip in ips:
        assert ipaddress.ip_address(ip) in ipaddress.ip_network("198.18.1.0/24")
    pod = pods[0]
    conds = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conds == {"PodScheduled": "True", "Initialized": "True", "ContainersReady": "True", "Ready": "True"}
    cs = pod["status"]["containerStatuses"][0]
    assert cs["containerID"].startswith("cri-o://") and len(cs["containerID"]) == len("cri-o://") + 64
    assert cs["started"] is True and "running" in cs["state"]
    assert pod["status"]["qosClass"] == "BestEffort" and pod["status"]["hostIP"] == "127.0.0.1"

    def endpoint_ips():
        ep = lab.get("endpoints", "web", "-n", ns) or {}
        got = sorted(a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or [])
        return got if got == sorted(ips) else None
    lab.wait(endpoint_ips, "Endpoints of web to list both pod IPs")


def test_exec_curl_through_service_dns_returns_nginx_page(lab, web):
    ns, _ = web
    done = lab.kubectl("-n", ns, "exec", "deploy/tools", "--", "curl", "-s", "--max-time", "10",
                       f"http://web.{ns}.svc.cluster.local:8080/")
    assert "Welcome to nginx!" in done.stdout


def test_short_service_name_resolves_through_search_path(lab, web):
    ns, _ = web
    done = lab.kubectl("-n", ns, "exec", "deploy/tools", "--", "curl", "-s", "--max-time", "10", "http://web:8080/")
    assert "Welcome to nginx!" in done.stdout


def test_unknown_names_get_nxdomain_and_nothing_leaves_the_lab(lab, web):
    ns, _ = web
    done = lab.kubectl("-n", ns, "exec", "deploy/tools", "--", "curl", "-s", "--max-time", "5",
                       "http://example.com/", check=False)
    assert done.returncode != 0 and "exit code 6" in done.stderr  # curl: could not resolve host
    routes = lab.kubectl("-n", ns, "exec", "deploy/tools", "--", "ip", "route").stdout
    assert "default" not in routes and "198.18.0.0/15 dev eth0" in routes


def test_kubectl_logs_show_the_nginx_access_log(lab, web):
    ns, pods = web
    for pod in pods:
        ip = pod["status"]["podIP"]
        lab.kubectl("-n", ns, "exec", "deploy/tools", "--", "curl", "-s", "--max-time", "10",
                    f"http://{ip}:8080/from-logs-test")
    logs = "".join(lab.kubectl("-n", ns, "logs", p["metadata"]["name"]).stdout for p in pods)
    assert logs.count("\"GET /from-logs-test HTTP/1.1\" 404") == 2  # one access-log line per pod


def test_exec_runs_as_the_image_uid_inside_the_pod(lab, web):
    ns, pods = web
    name = pods[0]["metadata"]["name"]
    assert lab.kubectl("-n", ns, "exec", name, "--", "id", "-u").stdout.strip() == "101"
    env = lab.kubectl("-n", ns, "exec", name, "--", "sh", "-c", "echo $MESHLAB_POD_NAME $MESHLAB_POD_IP").stdout
    assert env.split() == [name, pods[0]["status"]["podIP"]]


def test_crictl_inspect_reports_the_container_pid(lab, web):
    ns, pods = web
    ids = lab.kubectl("-n", ns, "exec", "deploy/tools", "--", "crictl", "ps", "-q").stdout.split()
    web_cid = pods[0]["status"]["containerStatuses"][0]["containerID"].removeprefix("cri-o://")
    assert web_cid in ids
    import json
    info = json.loads(lab.kubectl("-n", ns, "exec", "deploy/tools", "--", "crictl", "inspect", "--output", "json",
                                  web_cid).stdout)
    pid = info["info"]["pid"]
    comm = open(f"/proc/{pid}/comm").read().strip()
    assert comm == "nginx"


def test_scale_down_removes_pod_and_its_namespace(lab, web):
    ns, pods = web
    lab.kubectl("-n", ns, "scale", "deployment", "web", "--replicas=1")
    names = {p["metadata"]["name"] for p in pods}

    def one_left():
        items = (lab.get("pods", "-n", ns, "-l", "app=web") or {}).get("items", [])
        return len(items) == 1 and items[0]["metadata"]["name"] in names
    lab.wait(one_left, "web to scale down to one pod")
    from meshlab_lab.netns import netns_exists, pod_netns_name
    gone = names - {(lab.get("pods", "-n", ns, "-l", "app=web") or {})["items"][0]["metadata"]["name"]}
    assert gone and not any(netns_exists(pod_netns_name(ns, n)) for n in gone)


def test_pods_reach_the_api_server_through_the_kubernetes_service(lab, web):
    ns, _ = web
    ep = lab.get("endpoints", "kubernetes", "-n", "default")
    assert ep["subsets"][0]["addresses"][0]["ip"] == "198.18.0.1"
    out = lab.kubectl("-n", ns, "exec", "deploy/tools", "--", "curl", "-s", "--max-time", "10", "--cacert",
                      str(lab.kubeconfig.parent / "pki" / "ca.crt"), "https://kubernetes.default.svc/version").stdout
    assert '"gitVersion": "v1.20.2"' in out
