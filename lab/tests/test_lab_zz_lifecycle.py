"""`down` removes everything the lab made; `up` starts cleanly over a killed run. Runs last (it restarts the lab)."""
import json
import os
import signal
import subprocess
from pathlib import Path

from conftest import ensure_lab_up, lab_cli

from meshlab_lab import paths, procs

LAB_MARKERS = ("mlab_", "mlv", "meshlab0", "198.18.", "198.19.", "KUBE-")


def _run(*argv) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True).stdout


def snapshot() -> dict:
    iptables = [line for line in _run("iptables-save").splitlines()
                if line.startswith("-A") or (line.startswith(":") and " - [" in line)]
    return {
        "netns": sorted(line.split()[0] for line in _run("ip", "netns", "list").splitlines() if line.strip()),
        "links": sorted(line.split(":")[1].strip().split("@")[0] for line in _run("ip", "-o", "link").splitlines()),
        "routes": sorted(_run("ip", "route", "show", "table", "all").splitlines()),
        "iptables": sorted(iptables),
        "mounts": sorted(line for line in Path("/proc/mounts").read_text().splitlines() if "mlab_" in line),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
    }


def lab_items(snap: dict) -> list:
    return [f"{k}: {v}" for k, vals in snap.items() if k != "ip_forward" for v in vals
            if any(m in v for m in LAB_MARKERS)]


def lab_process_pids() -> list:
    marker = f"MESHLAB_STATE_DIR={paths.state_dir()}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _start_pod(lab, ns: str, name: str) -> dict:
    lab.kubectl("create", "namespace", ns, check=False)
    lab.wait(lambda: lab.get("serviceaccount", "default", "-n", ns), "default service account", 60)
    lab.kubectl("-n", ns, "run", name, "--image=nginxinc/nginx-unprivileged", "--restart=Never")
    return lab.wait(lambda: (p := lab.get("pod", name, "-n", ns)) and p["status"].get("phase") == "Running" and p,
                    f"pod {name} Running")


def test_down_leaves_nothing_behind(lab):
    assert lab_cli("down").returncode == 0
    before = snapshot()
    assert lab_items(before) == [], "a clean host has nothing of the lab"
    assert lab_cli("up").returncode == 0
    _start_pod(lab, "lifecycle", "web")
    during = snapshot()
    assert any(n.startswith("mlab_lifecycle_") for n in during["netns"])
    assert "meshlab0" in during["links"] and any("KUBE-SERVICES" in r for r in during["iptables"])

    done = lab_cli("down")
    assert done.returncode == 0, done.stderr
    after = snapshot()
    assert lab_items(after) == []
    assert after["routes"] == before["routes"]
    assert after["iptables"] == before["iptables"]
    assert after["ip_forward"] == before["ip_forward"]
    assert set(after["links"]) <= set(before["links"])
    assert lab_process_pids() == []
    assert not any(procs.running_pid(n) for n in ("etcd", "kube-apiserver", "node-1", "dns", "kube-proxy"))


def test_up_over_a_killed_run_starts_cleanly(lab):
    ensure_lab_up()
    old = _start_pod(lab, "killed", "old")
    old_netns = f"mlab_killed_{old['metadata']['name']}"
    assert old_netns in _run("ip", "netns", "list")
    for name in procs.recorded_names():
        pid = procs.running_pid(name)
        if pid:
            os.kill(pid, signal.SIGKILL)
    assert old_netns in _run("ip", "netns", "list"), "the killed run leaves its namespaces behind"

    done = lab_cli("up")
    assert done.returncode == 0, done.stdout + done.stderr
    assert lab_cli("status").returncode == 0
    assert old_netns not in _run("ip", "netns", "list")
    assert lab.get("namespace", "killed") is None, "etcd data of the killed run is gone"
    fresh = _start_pod(lab, "afterkill", "new")
    assert fresh["status"]["podIP"].startswith("198.18.1.")
    status = json.loads(lab_cli("status", "--json").stdout)
    assert status["healthy"] is True
