"""Benchmark of the local lab: cold start (Kubernetes build included), warm start, pod-to-Running latency.

Prints numbers; asserts nothing. Needs root. `--cold` forces a build into a fresh cache directory
(MESHLAB_CACHE) even when binaries are cached; otherwise the cold number is reported only when the cache is empty.
Run: sudo .venv/bin/python bench/lab_start.py [--cold] [--pods N]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAB = REPO / "lab"
sys.path.insert(0, str(LAB))

from meshlab_lab import paths  # noqa: E402


def _lab(*args: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(LAB))
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "meshlab_lab", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"meshlab_lab {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return time.monotonic() - t0


def _build(cache: Path | None) -> float:
    env = dict(os.environ)
    if cache:
        env["MESHLAB_CACHE"] = str(cache)
    t0 = time.monotonic()
    subprocess.run(["bash", str(LAB / "scripts" / "build-kube.sh")], env=env, check=True)
    return time.monotonic() - t0


def _kubectl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(paths.kubectl_path()), "--kubeconfig", str(paths.kubeconfig_path()), *args],
                          capture_output=True, text=True, check=True)


def pod_latency(count: int) -> list[float]:
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    _kubectl("create", "namespace", ns)
    while subprocess.run([str(paths.kubectl_path()), "--kubeconfig", str(paths.kubeconfig_path()), "-n", ns, "get",
                          "serviceaccount", "default"], capture_output=True).returncode != 0:
        time.sleep(0.1)
    results = []
    for i in range(count):
        t0 = time.monotonic()
        _kubectl("-n", ns, "run", f"p{i}", "--image=nginxinc/nginx-unprivileged", "--restart=Never")
        while True:
            pod = json.loads(_kubectl("-n", ns, "get", "pod", f"p{i}", "-o", "json").stdout)
            if pod["status"].get("phase") == "Running":
                break
            time.sleep(0.05)
        results.append(time.monotonic() - t0)
    _kubectl("delete", "namespace", ns, "--wait=false")
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", action="store_true", help="build Kubernetes into a fresh cache first")
    parser.add_argument("--pods", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("lab_start.py needs root")
    cache_empty = not (paths.kube_bin_dir() / "kube-apiserver").exists()
    if args.cold or cache_empty:
        cache = Path(tempfile.mkdtemp(prefix="meshlab-cold-")) if args.cold else None
        build = _build(cache)
        print(f"cold build of kubernetes 1.20.2: {build:.1f} s")
    else:
        build = 0.0
    _lab("down")
    up = _lab("up")
    if args.cold or cache_empty:
        print(f"cold start (build + up): {build + up:.1f} s")
    warm = _lab("up")
    print(f"first up: {up:.1f} s")
    print(f"warm start (up over a running lab): {warm:.1f} s")
    lat = pod_latency(args.pods)
    print(f"pod create -> Running over {len(lat)} pods: min {min(lat):.2f} s, "
          f"median {sorted(lat)[len(lat) // 2]:.2f} s, max {max(lat):.2f} s")
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
