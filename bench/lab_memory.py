"""Memory of the running lab: RSS and PSS per kind of process and in all (prints numbers, asserts nothing).

A process belongs to the lab when it runs in one of the lab's pod network namespaces (``mlab_*``) or descends
from a daemon whose pid file is in ``.lab/run/``. Kinds: ``envoy`` (sidecars and gateways), ``pilot-agent``,
``haproxy`` (the router), ``apps`` (everything else in pods), ``control plane`` (etcd, kube-*), ``lab
daemons`` (node, DNS, addons). RSS counts shared pages once per process (the Envoy binary's pages in every
Envoy); PSS shares them out, so its total is what the lab really costs.
Usage: sudo .venv/bin/python bench/lab_memory.py [--json]
"""
import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lab"))

from meshlab_lab import paths  # noqa: E402


def _read(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def kib(text: str, field: str) -> int:
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def processes() -> dict[int, dict]:
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        status = _read(f"/proc/{pid}/status")
        if not status:
            continue
        try:
            netns = os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError:
            netns = None
        found[pid] = {"pid": pid, "ppid": kib(status, "PPid"), "rss": kib(status, "VmRSS"),
                      "pss": kib(_read(f"/proc/{pid}/smaps_rollup"), "Pss"), "netns": netns,
                      "cmd": _read(f"/proc/{pid}/cmdline").replace("\0", " ").strip()}
    return found


def lab_pids(procs: dict[int, dict]) -> set[int]:
    pod_netns = set()
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        if name.startswith("mlab_"):
            try:
                pod_netns.add(os.stat(f"/run/netns/{name}").st_ino)
            except OSError:
                pass
    roots = set()
    for pid_file in paths.run_dir().glob("*.pid"):
        first = (pid_file.read_text().split() or [""])[0]  # "<pid>\n<name>"
        if first.isdigit():
            roots.add(int(first))
    members = {pid for pid, p in procs.items() if p["netns"] in pod_netns or pid in roots}
    changed = True
    while changed:  # children of lab daemons (addons start haproxy, the node starts containers)
        grown = {pid for pid, p in procs.items() if p["ppid"] in members} - members
        members |= grown
        changed = bool(grown)
    return members


def kind(proc: dict, pod_netns: bool) -> str:
    cmd = proc["cmd"]
    first = os.path.basename(cmd.split(" ", 1)[0]) if cmd else ""
    if first == "envoy":
        return "envoy"
    if "pilot_agent" in cmd:
        return "pilot-agent"
    if first == "haproxy":
        return "haproxy"
    if first in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"):
        return "control plane"
    return "apps (in pods)" if pod_netns else "lab daemons"


def totals(procs: dict[int, dict], members: set[int]) -> dict[str, dict]:
    """``{kind: {processes, rss_mib, pss_mib}}`` plus ``all``."""
    host_netns = os.stat("/proc/self/ns/net").st_ino
    found: dict[str, dict] = {}
    for pid in members:
        proc = procs[pid]
        if proc["rss"] == 0:
            continue
        row = found.setdefault(kind(proc, proc["netns"] != host_netns), {"processes": 0, "rss_mib": 0.0,
                                                                          "pss_mib": 0.0})
        row["processes"] += 1
        row["rss_mib"] += proc["rss"] / 1024
        row["pss_mib"] += proc["pss"] / 1024
    found["all"] = {key: sum(row[key] for row in found.values()) for key in ("processes", "rss_mib", "pss_mib")}
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    procs = processes()
    totals_by_kind = totals(procs, lab_pids(procs))
    if args.json:
        print(json.dumps({k: {kk: round(vv, 1) for kk, vv in v.items()} for k, v in totals_by_kind.items()},
                         indent=1))
        return 0
    print(f"{'kind':16s} {'processes':>9s} {'RSS MiB':>9s} {'PSS MiB':>9s}")
    for name, row in sorted(totals_by_kind.items(), key=lambda item: (item[0] == "all", item[0])):
        print(f"{name:16s} {row['processes']:9d} {row['rss_mib']:9.1f} {row['pss_mib']:9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
