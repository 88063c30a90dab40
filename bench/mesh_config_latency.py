"""API write -> every sidecar's Envoy serves the new inbound listener (prints numbers, asserts nothing).

With the lab up and an SMCP present: switches the PeerAuthentication ``default`` of a mesh namespace with
injected pods (``--namespace``, default: the first member namespace with sidecars) between STRICT and
PERMISSIVE, ``--rounds`` times (default 20), and measures per round and per sidecar the time from the API
write returning to that sidecar's Envoy ``/config_dump`` (read inside the pod's network namespace, every
~10 ms) showing the new mode on the ``virtualInbound`` chains of its ports. Prints min / median / p90 / max
per sidecar and over all, and the slowest sidecar per round (what a verifier has to wait for).
Without the lab (``--standalone``): xDS file written -> Envoy serves it, on the data-plane testbed.
Usage: python bench/mesh_config_latency.py [--rounds 20] [--namespace NS] [--standalone]
"""
import argparse
import concurrent.futures
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lab"))

from meshlab_lab import netns, paths  # noqa: E402

DUMP = "http://127.0.0.1:15000/config_dump?resource=dynamic_listeners"


def kubectl(*args, input=None):
    done = subprocess.run([str(paths.kubectl_path()), "--kubeconfig", str(paths.state_dir() / "kubeconfig"), *args],
                          capture_output=True, text=True, input=input, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip())
    return done.stdout


def sidecar_pods(namespace: str) -> list[str]:
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-o", "json"))["items"]
    return [p["metadata"]["name"] for p in pods if p.get("status", {}).get("phase") == "Running"
            and any(c["name"] == "istio-proxy" for c in p["spec"]["containers"])]


def pick_namespace() -> str | None:
    for ns in json.loads(kubectl("get", "namespaces", "-l", "maistra.io/member-of", "-o", "json"))["items"]:
        if sidecar_pods(ns["metadata"]["name"]):
            return ns["metadata"]["name"]
    return None


def inbound_mode(dump: dict) -> str | None:
    """STRICT / PERMISSIVE / DISABLE of the first port-specific inbound chains, as Istio generates them."""
    for entry in dump.get("configs") or []:
        state = entry.get("active_state") or {}
        listener = state.get("listener") or {}
        if listener.get("name") != "virtualInbound":
            continue
        chains = [c for c in listener.get("filter_chains") or [] if (c.get("filter_chain_match") or {})
                  .get("destination_port") not in (None, 15006)]
        port = (chains[0]["filter_chain_match"]["destination_port"]) if chains else None
        mtls = {bool(c.get("transport_socket")) for c in chains if c["filter_chain_match"]["destination_port"] == port}
        return {frozenset({True}): "STRICT", frozenset({True, False}): "PERMISSIVE"}.get(frozenset(mtls), "DISABLE")
    return None


def served_mode(namespace: str, pod: str) -> str | None:
    argv = netns.netns_argv(namespace, pod, ["curl", "-s", "-m", "2", DUMP])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    try:
        return inbound_mode(json.loads(done.stdout))
    except ValueError:
        return None


def wait_served(namespace: str, pod: str, mode: str, written: float, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served_mode(namespace, pod) == mode:
            return time.time() - written
        time.sleep(0.01)
    return None


def lab_rounds(namespace: str, rounds: int, timeout: float) -> dict[str, list[float]]:
    pods = sidecar_pods(namespace)
    if not pods:
        raise RuntimeError(f"no running sidecar in namespace {namespace}")
    found = kubectl("get", "peerauthentication", "default", "-n", namespace, "-o", "json", "--ignore-not-found")
    original = (json.loads(found).get("spec") or {}).get("mtls", {}).get("mode") if found.strip() else None
    print(f"namespace {namespace}: {len(pods)} sidecars, {rounds} switches")
    samples: dict[str, list[float]] = {pod: [] for pod in pods}
    slowest = []
    with concurrent.futures.ThreadPoolExecutor(len(pods)) as pool:
        for index in range(rounds):
            mode = ("STRICT", "PERMISSIVE")[index % 2]
            doc = {"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
                   "metadata": {"name": "default", "namespace": namespace}, "spec": {"mtls": {"mode": mode}}}
            kubectl("apply", "-f", "-", input=json.dumps(doc))
            written = time.time()
            waits = {pod: pool.submit(wait_served, namespace, pod, mode, written, timeout) for pod in pods}
            got = {pod: future.result() for pod, future in waits.items()}
            for pod, value in got.items():
                if value is None:
                    print(f"round {index}: {pod} did not serve {mode} within {timeout}s")
                else:
                    samples[pod].append(value)
            if all(v is not None for v in got.values()):
                slowest.append(max(got.values()))
    if original:  # leave the namespace in the mode it was in
        kubectl("patch", "peerauthentication", "default", "-n", namespace, "--type=merge", "-p",
                json.dumps({"spec": {"mtls": {"mode": original}}}))
    samples["(slowest sidecar per round)"] = slowest
    return samples


def standalone_rounds(rounds: int) -> dict[str, list[float]]:
    from meshlab_lab.mesh.testbed import Testbed

    bed = Testbed()
    try:
        pod = bed.add_pod("bench")
        config = {"version": "b0", "kind": "sidecar", "node": {"namespace": "bookinfo", "pod": "bench", "ip": pod.ip},
                  "inbound": {"default": "PERMISSIVE", "ports": {"9080": "STRICT"}, "protocols": {"9080": "HTTP"}},
                  "clusters": [], "vips": {}}
        bed.start_sidecar(pod, config)
        results = []
        for index in range(1, rounds + 1):
            mode = ("PERMISSIVE", "STRICT")[index % 2]
            config = dict(config, version=f"b{index}", inbound=dict(config["inbound"], ports={"9080": mode}))
            written = time.time()
            pod.push(config)
            pod.wait_loaded(config["version"])
            results.append(time.time() - written)
        return {"testbed sidecar (LDS version served)": results}
    finally:
        bed.close()


def line(name: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    if not ms:
        return f"{name:40s} no samples"
    return (f"{name:40s} n={len(ms):3d} min={ms[0]:7.1f}ms median={statistics.median(ms):7.1f}ms "
            f"p90={ms[int(0.9 * (len(ms) - 1))]:7.1f}ms max={ms[-1]:7.1f}ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--namespace")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--standalone", action="store_true")
    args = parser.parse_args()
    namespace = None
    if not args.standalone:
        try:
            namespace = args.namespace or pick_namespace()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            print(f"lab not usable ({exc}); measuring standalone")
    samples = lab_rounds(namespace, args.rounds, args.timeout) if namespace else standalone_rounds(args.rounds)
    print("API write -> Envoy serves the new virtualInbound chains (from /config_dump)" if namespace else
          "xDS file written -> Envoy serves it (standalone)")
    for name, values in samples.items():
        print(line(name, values))
    everything = [v for name, values in samples.items() if not name.startswith("(") for v in values]
    print(line("all sidecars", everything))
    return 0 if everything else 1


if __name__ == "__main__":
    raise SystemExit(main())
