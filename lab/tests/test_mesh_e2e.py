"""End to end through the lab's real API server: Route router, sidecar injection, bookinfo through sidecars,
STRICT towards a client outside the mesh. Skipped when the lab (``make lab-up``) is not running; the mesh
tests also need the Service Mesh operator emulation to have created an SMCP."""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(LAB))

from meshlab_lab import paths  # noqa: E402
from meshlab_lab.mesh import router as router_mod  # noqa: E402

STATE = paths.state_dir()
KUBECONFIG = STATE / "kubeconfig"
READY = STATE / "run" / "meshlab_lab.mesh.ready"
DETAILS_IMAGE = "docker.io/maistra/examples-bookinfo-details-v1:2.4.0"
BOOKINFO = "docker.io/maistra/examples-bookinfo-{}:2.4.0"
TIMEOUT = 180


def kubectl(*args, check=True, input=None, timeout=120) -> subprocess.CompletedProcess:
    done = subprocess.run([str(paths.kubectl_path()), "--kubeconfig", str(KUBECONFIG), *args], input=input,
                          capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr}")
    return done


def wait(predicate, what, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.5)


def get_json(*args):
    done = kubectl("get", *args, "-o", "json", check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0 or not KUBECONFIG.is_file() or not paths.kubectl_path().is_file():
        pytest.skip("the local lab is not up (make lab-up)")
    if kubectl("get", "--raw", "/readyz", check=False).returncode != 0:
        pytest.skip("the lab's API server does not answer")
    if not list((STATE / "run").glob("node-*.ready")):
        pytest.skip("the lab has no ready node")
    addon = None
    if not READY.is_file():
        log = open(STATE / "logs" / "mesh-addon-test.log", "ab") if (STATE / "logs").is_dir() else subprocess.DEVNULL
        addon = subprocess.Popen([sys.executable, "-m", "meshlab_lab.mesh", "--kubeconfig", str(KUBECONFIG),
                                  "--state-dir", str(STATE)], env=dict(os.environ, PYTHONPATH=str(LAB)),
                                 stdout=log, stderr=subprocess.STDOUT)
        wait(lambda: READY.is_file() or addon.poll() is not None, "the mesh addon to be ready", 60)
        assert addon.poll() is None, "mesh addon exited at start (see .lab/logs/mesh-addon-test.log)"
    yield
    if addon is not None:
        addon.terminate()
        addon.wait(20)


def new_namespace() -> str:
    name = f"mlt-e2e-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    return name


@pytest.fixture
def namespace(lab):
    name = new_namespace()
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def apply(doc: dict):
    kubectl("apply", "-f", "-", input=json.dumps(doc))


def deployment(ns, app, image, annotations=None, labels=None, version="v1"):
    pod_labels = dict({"app": app, "version": version}, **(labels or {}))
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": f"{app}-{version}", "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": app, "version": version}},
                     "template": {"metadata": {"labels": pod_labels, "annotations": annotations or {}},
                                  "spec": {"containers": [{"name": app, "image": image,
                                                           "ports": [{"containerPort": 9080}]}]}}}}


def service(ns, app):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": app, "namespace": ns, "labels": {"app": app}},
            "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 9080, "targetPort": 9080}]}}


def ready_pod(ns, app):
    pods = get_json("pods", "-n", ns, "-l", f"app={app}") or {"items": []}
    for pod in pods["items"]:
        statuses = pod.get("status", {}).get("containerStatuses") or []
        if statuses and all(s.get("ready") for s in statuses) and not pod["metadata"].get("deletionTimestamp"):
            return pod
    return None


@pytest.mark.skipif(not shutil.which("curl"), reason="curl not installed")
def test_route_gets_host_and_answers_through_edge_tls(namespace):
    apply(deployment(namespace, "details", DETAILS_IMAGE))
    apply(service(namespace, "details"))
    apply({"apiVersion": "route.openshift.io/v1", "kind": "Route", "metadata": {"name": "api", "namespace": namespace},
           "spec": {"to": {"kind": "Service", "name": "details"}, "port": {"targetPort": "http"},
                    "tls": {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"}}})
    host = f"api-{namespace}.{router_mod.DOMAIN}"
    route = wait(lambda: (lambda r: r if r and router_mod.admitted(r) else None)(get_json("route", "api", "-n",
                                                                                          namespace)),
                 "the Route to be admitted", 60)
    assert route["spec"]["host"] == host
    assert route["status"]["ingress"][0]["routerName"] == "default"
    wait(lambda: ready_pod(namespace, "details"), "details to be ready")

    def curl():
        done = subprocess.run(["curl", "-sS", "-m", "10", "--cacert", str(STATE / "pki" / "router-ca.crt"),
                               "--connect-to", f"{host}:443:127.0.0.1:8443", f"https://{host}/details/0",
                               "-w", "\n%{http_code}"], capture_output=True, text=True)
        return done if done.stdout.endswith("\n200") else None
    done = wait(curl, "the Route to answer 200", 60)
    assert json.loads(done.stdout.rsplit("\n", 1)[0])["author"] == "William Shakespeare"


def control_plane():
    smcps = get_json("smcp", "-A")
    return smcps["items"][0] if smcps and smcps.get("items") else None


def new_member_namespace() -> tuple[str, str]:
    """A new namespace added to the SMMR ``default`` and labelled a member; skips without a control plane."""
    smcp = control_plane()
    if smcp is None:
        pytest.skip("no ServiceMeshControlPlane in the lab (operators addon not installed/run)")
    cp_ns = smcp["metadata"]["namespace"]
    smmr = get_json("smmr", "default", "-n", cp_ns)
    if smmr is None:
        pytest.skip("no ServiceMeshMemberRoll default")
    namespace = new_namespace()
    members = sorted(set(smmr["spec"].get("members") or []) | {namespace})
    kubectl("patch", "smmr", "default", "-n", cp_ns, "--type=merge", "-p", json.dumps({"spec": {"members": members}}))
    wait(lambda: (get_json("namespace", namespace) or {}).get("metadata", {}).get("labels", {}).get(
        "maistra.io/member-of") == cp_ns, "the namespace to become a mesh member", 60)
    return namespace, cp_ns


@pytest.fixture
def mesh_namespace(lab):
    namespace, cp_ns = new_member_namespace()
    yield namespace, cp_ns
    smmr = get_json("smmr", "default", "-n", cp_ns)
    if smmr:
        rest = [m for m in smmr["spec"].get("members") or [] if m != namespace]
        kubectl("patch", "smmr", "default", "-n", cp_ns, "--type=merge", "-p",
                json.dumps({"spec": {"members": rest}}), check=False)
    kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_bookinfo_through_sidecars_and_strict_refuses_outsider(mesh_namespace):
    ns, _cp_ns = mesh_namespace
    inject = {"sidecar.istio.io/inject": "true"}
    for app, version in (("productpage", "v1"), ("details", "v1"), ("reviews", "v2"), ("ratings", "v1")):
        apply(deployment(ns, app, BOOKINFO.format(f"{app}-{version}"), inject, version=version))
        apply(service(ns, app))
    pods = {app: wait(lambda a=app: ready_pod(ns, a), f"{app} ready with its sidecar")
            for app in ("productpage", "details", "reviews", "ratings")}
    page = pods["productpage"]
    names = [c["name"] for c in page["spec"]["containers"]]
    assert names == ["productpage", "istio-proxy"]
    assert [c["name"] for c in page["spec"]["initContainers"]] == ["istio-init"]
    assert page["metadata"]["labels"]["security.istio.io/tlsMode"] == "istio"
    name = page["metadata"]["name"]

    def productpage_html():
        done = kubectl("exec", "-n", ns, name, "-c", "productpage", "--", "curl", "-sS", "-m", "10",
                       "http://localhost:9080/productpage", check=False)
        return done.stdout if "Book Details" in done.stdout and "Reviewer1" in done.stdout else None
    html = wait(productpage_html, "productpage to show details and reviews through the mesh", 90)
    assert "Error fetching" not in html
    config = json.loads(kubectl("exec", "-n", ns, name, "-c", "istio-proxy", "--", "pilot-agent", "request",
                                "GET", "config_dump").stdout)
    clusters = [c["cluster"]["name"] for c in config["configs"][1]["dynamic_active_clusters"]]
    assert f"outbound|9080||details.{ns}.svc.cluster.local" in clusters

    apply({"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
           "metadata": {"name": "default", "namespace": ns}, "spec": {"mtls": {"mode": "STRICT"}}})
    # with spec.security.dataPlane.automtls false (the lab's SMCP) clients need a DestinationRule to send mTLS
    apply({"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
           "metadata": {"name": "mtls", "namespace": ns},
           "spec": {"host": f"*.{ns}.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}})
    outsider = f"{ns}-out"
    kubectl("create", "namespace", outsider)
    try:
        apply(deployment(outsider, "details", DETAILS_IMAGE))
        out_pod = wait(lambda: ready_pod(outsider, "details"), "the outsider pod")["metadata"]["name"]
        target = f"http://{page['status']['podIP']}:9080/productpage"

        def refused():
            done = kubectl("exec", "-n", outsider, out_pod, "--", "curl", "-sS", "-m", "10", target, check=False)
            return done if done.returncode == 56 else None
        done = wait(refused, "STRICT to refuse a client without a sidecar (curl exit 56)", 60)
        assert "reset" in done.stderr.lower() or done.returncode == 56
        assert wait(productpage_html, "mesh traffic to still flow under STRICT", 60)
    finally:
        kubectl("delete", "namespace", outsider, "--wait=false", check=False)


# ---------------------------------------------------------------- real Envoy, read by the collection
REPO = LAB.parent
sys.path.insert(0, str(REPO / "plugins" / "module_utils"))
import envoy_tls  # noqa: E402  (the collection's own parser, run against a real Envoy's dump)

TOOLS_IMAGE = "docker.io/nicolaka/netshoot:latest"
STATS_PREFIXES = "cluster.outbound,listener.0.0.0.0_15006"


def tools_deployment(ns, app, annotations=None):
    doc = deployment(ns, app, TOOLS_IMAGE, annotations)
    doc["spec"]["template"]["spec"]["containers"][0]["ports"] = []
    return doc


@pytest.fixture(scope="module")
def envoy_mesh(lab):
    """details (sidecar, asks for TLS stats), productpage (sidecar, Istio's default stats), ``inside``
    (sidecar) and ``outside`` (another namespace, no sidecar) in a fresh mesh member namespace."""
    ns, _cp_ns = new_member_namespace()
    outsider = new_namespace()
    inject = {"sidecar.istio.io/inject": "true"}
    apply(deployment(ns, "details", DETAILS_IMAGE, dict(inject, **{
        "sidecar.istio.io/statsInclusionPrefixes": STATS_PREFIXES})))
    apply(deployment(ns, "productpage", BOOKINFO.format("productpage-v1"), inject))
    for app in ("details", "productpage"):
        apply(service(ns, app))
    apply(tools_deployment(ns, "inside", inject))
    apply(tools_deployment(outsider, "outside"))
    pods = {app: wait(lambda a=app: ready_pod(ns, a), f"{app} ready with its sidecar")
            for app in ("details", "productpage", "inside")}
    pods["outside"] = wait(lambda: ready_pod(outsider, "outside"), "the outside pod")
    yield {"ns": ns, "outsider": outsider, "pods": pods}
    for name in (ns, outsider):
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def agent_get(mesh, app, path) -> str:
    pod = mesh["pods"][app]["metadata"]["name"]
    return kubectl("exec", "-n", mesh["ns"], pod, "-c", "istio-proxy", "--", "pilot-agent", "request", "GET",
                   path).stdout


def curl_details(mesh, source):
    pod = mesh["pods"][source]
    url = f"http://details.{mesh['ns']}.svc.cluster.local:9080/details/0"
    if source == "outside":
        url = f"http://{mesh['pods']['details']['status']['podIP']}:9080/details/0"
    done = kubectl("exec", "-n", pod["metadata"]["namespace"], pod["metadata"]["name"], "-c", source, "--",
                   "curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", url, check=False)
    return done.returncode, done.stdout.strip()


def set_mode(mesh, mode, client_tls, extra=()):
    ns = mesh["ns"]
    kubectl("delete", "peerauthentication", "--all", "-n", ns, check=False)
    apply({"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
           "metadata": {"name": "default", "namespace": ns}, "spec": {"mtls": {"mode": mode}}})
    apply({"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
           "metadata": {"name": "mtls", "namespace": ns},
           "spec": {"host": f"*.{ns}.svc.cluster.local", "trafficPolicy": {"tls": {"mode": client_tls}}}})
    for doc in extra:
        apply(doc)


def wait_inbound(mesh, app, expected: dict) -> dict:
    """Until the collection's parser reads ``expected`` ({port: mode}) from the real Envoy's config dump."""
    def read():
        modes = envoy_tls.inbound_modes(json.loads(agent_get(mesh, app, "config_dump")))
        return modes if all(modes.get(k) == v for k, v in expected.items()) else None
    return wait(read, f"{app}'s Envoy to serve {expected}", 60)


def wait_status(mesh, source, want):
    return wait(lambda: (lambda got: got if got == want else None)(curl_details(mesh, source)),
                f"{source} -> details to give {want}", 60)


@pytest.mark.parametrize("mode, client_tls, outside", [("STRICT", "ISTIO_MUTUAL", (56, "000")),
                                                       ("PERMISSIVE", "ISTIO_MUTUAL", (0, "200")),
                                                       ("DISABLE", "DISABLE", (0, "200"))])
def test_real_envoy_modes_read_by_the_collection(envoy_mesh, mode, client_tls, outside):
    set_mode(envoy_mesh, mode, client_tls)
    modes = wait_inbound(envoy_mesh, "details", {9080: mode})
    assert modes["*"] == mode  # the catch-all chains follow the namespace policy too
    dump = json.loads(agent_get(envoy_mesh, "details", "config_dump"))
    rows = [r for r in envoy_tls.summarize(dump) if r["listener"] == "virtualInbound"]
    assert any(r["mtls"] for r in rows) == (mode != "DISABLE")
    assert wait_status(envoy_mesh, "inside", (0, "200"))
    assert wait_status(envoy_mesh, "outside", outside)
    client = envoy_tls.outbound_tls(json.loads(agent_get(envoy_mesh, "inside", "config_dump")))
    assert client[f"outbound|9080||details.{envoy_mesh['ns']}.svc.cluster.local"] is (client_tls == "ISTIO_MUTUAL")


def test_workload_and_port_level_peer_authentication(envoy_mesh):
    ns = envoy_mesh["ns"]
    workload = {"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
                "metadata": {"name": "details-strict", "namespace": ns},
                "spec": {"selector": {"matchLabels": {"app": "details"}}, "mtls": {"mode": "STRICT"}}}
    set_mode(envoy_mesh, "PERMISSIVE", "ISTIO_MUTUAL", [workload])
    wait_inbound(envoy_mesh, "details", {9080: "STRICT"})
    assert wait_inbound(envoy_mesh, "productpage", {9080: "PERMISSIVE"})
    assert wait_status(envoy_mesh, "outside", (56, "000"))
    workload["spec"]["portLevelMtls"] = {"9080": {"mode": "DISABLE"}}
    apply(workload)
    modes = wait_inbound(envoy_mesh, "details", {9080: "DISABLE"})
    assert modes["*"] == "STRICT"  # the rest of the workload stays STRICT
    assert wait_status(envoy_mesh, "outside", (0, "200"))


def test_envoy_503_flags_uc_and_uf(envoy_mesh):
    set_mode(envoy_mesh, "STRICT", "DISABLE")
    wait_inbound(envoy_mesh, "details", {9080: "STRICT"})
    assert wait_status(envoy_mesh, "inside", (0, "503"))
    assert re.search(r'istio_requests_total\{[^}]*response_code="503",response_flags="UC"',
                     agent_get(envoy_mesh, "inside", "stats/prometheus"))
    set_mode(envoy_mesh, "DISABLE", "ISTIO_MUTUAL")
    wait_inbound(envoy_mesh, "details", {9080: "DISABLE"})
    assert wait_status(envoy_mesh, "inside", (0, "503"))
    assert re.search(r'istio_requests_total\{[^}]*response_code="503",response_flags="[^"]*UF',
                     agent_get(envoy_mesh, "inside", "stats/prometheus"))


def test_server_info_and_default_stats_inclusion(envoy_mesh):
    info = json.loads(agent_get(envoy_mesh, "productpage", "server_info"))
    assert info["version"].split("/")[1] == "1.40.0" and info["state"] == "LIVE"
    default = agent_get(envoy_mesh, "productpage", "stats")
    assert "cluster.outbound|" not in default and "listener.0.0.0.0_15006." not in default
    asked = agent_get(envoy_mesh, "details", "stats")
    assert "cluster.outbound|9080||" in asked and "listener.0.0.0.0_15006.downstream_cx_total" in asked


def test_istio_requests_total_tells_mutual_tls_from_plaintext(envoy_mesh):
    set_mode(envoy_mesh, "PERMISSIVE", "ISTIO_MUTUAL")
    wait_inbound(envoy_mesh, "details", {9080: "PERMISSIVE"})
    assert wait_status(envoy_mesh, "inside", (0, "200"))
    assert wait_status(envoy_mesh, "outside", (0, "200"))
    text = agent_get(envoy_mesh, "details", "stats/prometheus")
    series = [line for line in text.splitlines() if line.startswith("istio_requests_total{")
              and 'reporter="destination"' in line and 'response_code="200"' in line]
    assert any('source_workload="inside-v1"' in s and 'connection_security_policy="mutual_tls"' in s for s in series)
    assert any('source_workload="unknown"' in s and 'connection_security_policy="none"' in s for s in series)
    merged = kubectl("exec", "-n", envoy_mesh["ns"], envoy_mesh["pods"]["inside"]["metadata"]["name"], "-c", "inside",
                     "--", "curl", "-sS", "-m", "10",
                     f"http://{envoy_mesh['pods']['details']['status']['podIP']}:15020/stats/prometheus").stdout
    assert "istio_requests_total{" in merged and "envoy_server_live" in merged


def test_collection_wire_evidence_on_real_telemetry(envoy_mesh):
    """The collection's telemetry judgement, fed what a real Envoy sidecar (default stats) serves."""
    import wire_telemetry  # the collection's module_utils, on sys.path above

    set_mode(envoy_mesh, "PERMISSIVE", "ISTIO_MUTUAL")
    wait_inbound(envoy_mesh, "details", {9080: "PERMISSIVE"})
    assert wait_status(envoy_mesh, "inside", (0, "200"))
    for path in ("stats/prometheus", "stats"):
        before = agent_get(envoy_mesh, "details", path)
        for _ in range(3):
            assert curl_details(envoy_mesh, "inside") == (0, "200")
        assert curl_details(envoy_mesh, "outside") == (0, "200")
        result = wire_telemetry.wire_evidence(before, agent_get(envoy_mesh, "details", path))
        assert (result["verdict"], result["mtls_requests"], result["plaintext_requests"]) == ("mixed", 3, 1), path
        assert result["plaintext_sources"] == ["unknown"], path
        scoped = wire_telemetry.wire_evidence(before, agent_get(envoy_mesh, "details", path), "inside-v1")
        assert scoped["verdict"] == "encrypted", path
