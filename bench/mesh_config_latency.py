"""How long from an API change to the sidecars having loaded the new config (prints numbers, asserts nothing).

With the lab up and an SMCP present: toggles a PeerAuthentication in a mesh namespace that has injected
pods (``--namespace``, default: the first member namespace with sidecars) and measures, per round, the
time from the API write returning to each proxy's ``loaded-version`` acknowledging a config pushed for it.
Without the lab (``--standalone``, or automatically): measures file push -> proxy loaded on the
data-plane testbed (real netns + proxy), which is the proxy's share of the latency only.
Usage: python bench/mesh_config_latency.py [--rounds 10] [--namespace NS] [--standalone]
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lab"))

from meshlab_lab import paths  # noqa: E402
from meshlab_lab.mesh import proxy_config  # noqa: E402


def kubectl(*args, input=None):
    done = subprocess.run([str(paths.kubectl_path()), "--kubeconfig", str(paths.state_dir() / "kubeconfig"), *args],
                          capture_output=True, text=True, input=input, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip())
    return done.stdout


def sidecar_folders(namespace: str) -> list[Path]:
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-o", "json"))["items"]
    folders = []
    for pod in pods:
        if any(c["name"] == "istio-proxy" for c in pod["spec"]["containers"]):
            folder = paths.pods_dir() / f"{namespace}_{pod['metadata']['name']}" / "istio-proxy"
            if (folder / proxy_config.LOADED_FILE).is_file():
                folders.append(folder)
    return folders


def loaded(folder: Path) -> tuple[str, float, float]:
    version, pushed_at, loaded_at = (folder / proxy_config.LOADED_FILE).read_text().split()
    return version, float(pushed_at), float(loaded_at)


def pick_namespace() -> str | None:
    for ns in json.loads(kubectl("get", "namespaces", "-l", "maistra.io/member-of", "-o", "json"))["items"]:
        if sidecar_folders(ns["metadata"]["name"]):
            return ns["metadata"]["name"]
    return None


def lab_rounds(namespace: str, rounds: int, timeout: float) -> list[float]:
    folders = sidecar_folders(namespace)
    if not folders:
        raise RuntimeError(f"no sidecar with a loaded config in namespace {namespace}")
    print(f"namespace {namespace}: {len(folders)} sidecars")
    results = []
    for index in range(rounds):
        mode = ("STRICT", "PERMISSIVE")[index % 2]
        before = {f: loaded(f)[0] for f in folders}
        doc = {"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
               "metadata": {"name": "bench-latency", "namespace": namespace}, "spec": {"mtls": {"mode": mode}}}
        kubectl("apply", "-f", "-", input=json.dumps(doc))
        changed_at = time.time()
        deadline = time.monotonic() + timeout
        pending = set(folders)
        while pending and time.monotonic() < deadline:
            for folder in list(pending):
                version, _pushed, loaded_at = loaded(folder)
                if version != before[folder]:
                    results.append(loaded_at - changed_at)
                    pending.discard(folder)
            time.sleep(0.01)
        if pending:
            print(f"round {index}: {len(pending)} proxies did not load within {timeout}s")
    kubectl("delete", "peerauthentication", "bench-latency", "-n", namespace, "--ignore-not-found")
    return results


def standalone_rounds(rounds: int) -> list[float]:
    from meshlab_lab.mesh.testbed import Testbed

    bed = Testbed()
    try:
        pod = bed.add_pod("bench")
        config = {"version": "b0", "kind": "sidecar", "inbound": {"default": "PERMISSIVE", "ports": {"9080": "STRICT"}},
                  "clusters": [], "vips": {}}
        bed.start_sidecar(pod, config)
        results = []
        for index in range(1, rounds + 1):
            config = dict(config, version=f"b{index}", pushed_at=time.time())
            pod.push(config)
            pod.wait_loaded(config["version"])
            results.append(loaded(pod.folder)[2] - config["pushed_at"])
        return results
    finally:
        bed.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
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
    if namespace:
        what, samples = "API change -> proxy loaded", lab_rounds(namespace, args.rounds, args.timeout)
    else:
        what, samples = "config file written -> proxy loaded (standalone)", standalone_rounds(args.rounds)
    if not samples:
        print("no samples")
        return 1
    ms = sorted(s * 1000 for s in samples)
    print(f"{what}: n={len(ms)} min={ms[0]:.1f}ms median={statistics.median(ms):.1f}ms "
          f"p90={ms[int(0.9 * (len(ms) - 1))]:.1f}ms max={ms[-1]:.1f}ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
