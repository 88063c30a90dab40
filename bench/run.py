"""End-to-end benchmark of the collection on the local lab. Prints numbers; asserts nothing.

Measures, in this order:
  1. lab start (reuses bench/lab_start.py): first `up` with cached binaries and warm `up` over a running
     lab; with --cold also a Kubernetes build into a fresh cache. NOTE: `up` starts the lab from scratch
     (it wipes etcd), so this part removes whatever was installed; --skip-lab-start keeps the lab as it is.
  2. `playbooks/install.yml` wall time, then the idempotent re-run; `changed=N` from each PLAY RECAP.
  3. per mode (--modes, default PERMISSIVE,DISABLE,STRICT): `playbooks/mtls-<mode>.yml` wall time
     (API change -> verdict), `converged_after_s` and `verdict` from `reports/mtls-<mode>.json`.
  4. after each mode, the article's way: per source (`inside-mesh`, `outside-mesh` in `bookinfo`) ten curls
     to productpage with `sleep 2` between them, in ONE `kubectl exec` per source, timed.
Playbooks run as `make demo` runs them (venv ansible-playbook, K8S_AUTH_KUBECONFIG, ANSIBLE_COLLECTIONS_PATH,
-e @.lab/ansible-vars.yml). Writes reports/bench.json (--json) and one log per playbook run in reports/.
Needs root and a running lab (exit 2 otherwise).
Run: sudo .venv/bin/python bench/run.py [--modes STRICT,...] [--skip-lab-start] [--cold] [--skip-install]
"""
import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import lab_memory  # noqa: E402
import lab_start  # noqa: E402  (also puts lab/ on sys.path)
import mesh_config_latency  # noqa: E402
from meshlab_lab import paths  # noqa: E402

LAB_STATE = REPO / ".lab"
KUBECONFIG = LAB_STATE / "kubeconfig"
REPORTS = REPO / "reports"
VENV_BIN = REPO / ".venv" / "bin"
MODES = ("PERMISSIVE", "DISABLE", "STRICT")
NAMESPACE = "bookinfo"
SOURCES = ("inside-mesh", "outside-mesh")
ARTICLE_URL = "http://productpage.bookinfo.svc.cluster.local:9080/productpage"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
RECAP_HOST = re.compile(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$")


# ---------------------------------------------------------------- pure helpers (unit-tested)
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(MODES),
                        help="comma-separated modes, run in the given order (default: %(default)s)")
    parser.add_argument("--skip-install", action="store_true", help="do not run install.yml (twice)")
    parser.add_argument("--skip-lab-start", action="store_true", help="do not (re)start the lab")
    parser.add_argument("--cold", action="store_true", help="also build Kubernetes into a fresh cache (minutes)")
    parser.add_argument("--json", type=Path, default=REPORTS / "bench.json",
                        help="report file (default: reports/bench.json)")
    args = parser.parse_args(argv)
    modes = [m.strip().upper() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        parser.error(f"--modes: unknown or empty {unknown or args.modes!r}; choose from {','.join(MODES)}")
    if args.cold and args.skip_lab_start:
        parser.error("--cold measures a lab start; it cannot be combined with --skip-lab-start")
    args.modes = modes
    return args


def parse_recap(text: str) -> dict[str, dict[str, int]]:
    """Per-host counters of the last PLAY RECAP in an ansible-playbook output ({} when there is none)."""
    _, found, tail = ANSI.sub("", text).rpartition("PLAY RECAP")
    hosts: dict[str, dict[str, int]] = {}
    if not found:
        return hosts
    for line in tail.splitlines()[1:]:
        match = RECAP_HOST.match(line.strip())
        if match:
            hosts[match[1]] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match[2])}
    return hosts


def changed_count(text: str) -> int | None:
    hosts = parse_recap(text)
    return sum(counters.get("changed", 0) for counters in hosts.values()) if hosts else None


def article_script(url: str = ARTICLE_URL, count: int = 10, pause: float = 2) -> str:
    """The article's loop as one shell script: `count` curls, `sleep pause` between them; prints `<http> <exit>`."""
    return (f"i=1; while [ $i -le {count} ]; do "
            f"code=$(curl -s -o /dev/null --max-time 10 -w '%{{http_code}}' {shlex.quote(url)}); echo \"$code $?\"; "
            f"[ $i -lt {count} ] && sleep {pause}; i=$((i + 1)); done")


def classify(output: str) -> list[str]:
    """`200 0` -> `200`; `000 56` -> `curl exit 56`."""
    seen = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            seen.append(parts[0] if parts[1] == "0" else f"curl exit {parts[1]}")
    return seen


def article_way(exec_prefix: list[str], url: str = ARTICLE_URL, count: int = 10, pause: float = 2) -> dict:
    """Run the article's loop through ONE exec (`exec_prefix + ['sh', '-c', script]`) and time it."""
    t0 = time.monotonic()
    done = subprocess.run([*exec_prefix, "sh", "-c", article_script(url, count, pause)],
                          capture_output=True, text=True, timeout=count * (pause + 15) + 60)
    seconds = time.monotonic() - t0
    statuses = classify(done.stdout)
    return {"seconds": round(seconds, 2), "rc": done.returncode, "statuses": dict(Counter(statuses)),
            "requests": len(statuses), "stderr": done.stderr.strip()[-500:]}


def kubectl_exec_prefix(source: str) -> list[str]:
    return [str(paths.kubectl_path()), "--kubeconfig", str(KUBECONFIG), "-n", NAMESPACE,
            "exec", f"deploy/{source}", "-c", source, "--"]


def format_table(rows: list[tuple[str, float | None, str]]) -> str:
    width = max([len("metric")] + [len(name) for name, _, _ in rows])
    lines = [f"{'metric':<{width}}  {'seconds':>8}  detail", f"{'-' * width}  {'-' * 8}  ------"]
    for name, seconds, detail in rows:
        value = "-" if seconds is None else f"{seconds:.2f}"
        lines.append(f"{name:<{width}}  {value:>8}  {detail}".rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------- lab-touching parts
def bench_data_plane(result: dict, rounds: int = 20) -> list[tuple[str, float | None, str]]:
    """Config push to the real Envoys of ``bookinfo`` (slowest sidecar per switch) and the lab's memory."""
    rows = []
    try:
        samples = mesh_config_latency.lab_rounds("bookinfo", rounds, 30.0)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"config push not measured: {exc}", file=sys.stderr)
        samples = {}
    slowest = sorted(samples.get("(slowest sidecar per round)") or [])
    if slowest:
        median = slowest[len(slowest) // 2]
        result["config_push"] = {"rounds": len(slowest), "median_s": median, "max_s": slowest[-1]}
        rows.append((f"config push, API write -> all sidecars serve it (median of {len(slowest)})", median,
                     f"max {slowest[-1]:.3f} s; {mesh_config_latency.__name__}"))
    procs = lab_memory.processes()
    totals = lab_memory.totals(procs, lab_memory.lab_pids(procs))
    result["memory_mib"] = totals
    for name in ("envoy", "all"):
        row = totals.get(name)
        if row:
            rows.append((f"memory: {name} ({row['processes']} processes)", None,
                         f"RSS {row['rss_mib']:.0f} MiB, PSS {row['pss_mib']:.0f} MiB"))
    return rows



def api_version() -> str | None:
    """The API server's version when `.lab/kubeconfig` exists and the API answers, else None."""
    if not KUBECONFIG.is_file():
        return None
    try:
        from kubernetes import client, config
        api = config.new_client_from_config(config_file=str(KUBECONFIG))
        return client.VersionApi(api).get_code(_request_timeout=5).git_version
    except Exception:  # any failure means "no lab to measure"
        return None


def bench_lab_start(cold: bool) -> list[tuple[str, float | None, str]]:
    rows = []
    build = 0.0
    if cold:
        cache = Path(tempfile.mkdtemp(prefix="meshlab-cold-"))
        try:
            build = lab_start._build(cache)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        rows.append(("lab cold build (kubernetes 1.20.2)", build, "fresh cache"))
    print("lab: down, up, up ...", flush=True)
    lab_start._lab("down")
    up = lab_start._lab("up")
    if cold:
        rows.append(("lab cold start (build + up)", build + up, ""))
    rows.append(("lab first up (cached binaries)", up, ""))
    rows.append(("lab warm start (up over a running lab)", lab_start._lab("up"), ""))
    return rows


def make_pypath() -> None:
    subprocess.run(["make", "-s", "-C", str(REPO), "pypath"], check=True)


def playbook(name: str, log_name: str) -> dict:
    env = dict(os.environ, K8S_AUTH_KUBECONFIG=str(KUBECONFIG),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "pypath"),
               PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    argv = [str(VENV_BIN / "ansible-playbook"), "-e", f"@{LAB_STATE / 'ansible-vars.yml'}", f"playbooks/{name}"]
    print(f"ansible-playbook playbooks/{name} ...", flush=True)
    t0 = time.monotonic()
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    output = done.stdout + done.stderr
    REPORTS.mkdir(exist_ok=True)
    log = REPORTS / f"bench-{log_name}.log"
    log.write_text(output)
    if done.returncode != 0:
        print(f"  rc={done.returncode}; last lines of {log.relative_to(REPO)}:", *output.splitlines()[-15:],
              sep="\n    ")
    return {"seconds": round(seconds, 2), "rc": done.returncode, "changed": changed_count(output),
            "log": str(log.relative_to(REPO))}


def read_report(mode: str, not_before: float) -> dict:
    report = REPORTS / f"mtls-{mode.lower()}.json"
    if not report.is_file() or report.stat().st_mtime < not_before:
        return {"verdict": "no report", "converged_after_s": None}
    data = json.loads(report.read_text())
    return {"verdict": data.get("verdict"), "converged_after_s": data.get("converged_after_s")}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench/run.py needs root (the lab is root's): sudo .venv/bin/python bench/run.py", file=sys.stderr)
        return 2
    rows: list[tuple[str, float | None, str]] = []
    result: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "modes": {}}
    if not args.skip_lab_start:
        rows += bench_lab_start(args.cold)
        if args.skip_install:
            print("warning: the lab was restarted from scratch and --skip-install was given; "
                  "the mode playbooks will find no installed lab", file=sys.stderr)
    version = api_version()
    if version is None:
        print(f"bench/run.py needs a running lab: {KUBECONFIG} is missing or the API does not answer "
              "(start the lab with `make lab-up`)", file=sys.stderr)
        return 2
    print(f"lab API answers: {version}")
    make_pypath()

    if not args.skip_install:
        for key, label in (("install", "install.yml"), ("install-rerun", "install.yml re-run (idempotent)")):
            run = playbook("install.yml", key)
            result[key] = run
            rows.append((label, run["seconds"], f"changed={run['changed']} rc={run['rc']}"))

    for mode in args.modes:
        started = time.time()
        run = playbook(f"mtls-{mode.lower()}.yml", f"mtls-{mode.lower()}")
        run.update(read_report(mode, started))
        run["article"] = {}
        rows.append((f"mtls-{mode.lower()}.yml (API change -> verdict)", run["seconds"],
                     f"verdict={run['verdict']} rc={run['rc']}"))
        rows.append((f"  {mode} converged_after_s", run["converged_after_s"], "from the JSON report"))
        for source in SOURCES:
            print(f"article's way, {mode}, {source}: 10 curls, sleep 2 ...", flush=True)
            seen = article_way(kubectl_exec_prefix(source))
            run["article"][source] = seen
            detail = ", ".join(f"{status} x{n}" for status, n in seen["statuses"].items()) or f"rc={seen['rc']}"
            rows.append((f"  {mode} article's way from {source}", seen["seconds"], detail))
        result["modes"][mode] = run

    rows += bench_data_plane(result)
    result["table"] = [{"metric": name.strip(), "seconds": seconds, "detail": detail}
                       for name, seconds, detail in rows]
    print()
    print(format_table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
