"""Host and pod networking of the lab: lab interface, routes, per-pod network namespaces and veth pairs.

Pods get ``198.18.<node>.<n>``; the host routes each pod IP (/32) to the pod's veth. Inside a pod only
``198.18.0.0/15`` is routed (via its veth, proxy-ARP on the host side); there is no default route.
``198.18.0.0/16`` is blackholed on the host. ``198.19.0.0/16`` (services) is routed into the inert interface
``meshlab0`` (a dummy, or a portless bridge where the dummy driver is missing), which drops what reaches it.
A plain blackhole route there would make connect() fail before kube-proxy's DNAT in OUTPUT could rewrite a
ClusterIP; the inert interface keeps host->ClusterIP working while nothing leaves the machine.
"""
import hashlib
import subprocess
from pathlib import Path

from meshlab_lab import addresses as A
from meshlab_lab import paths
from meshlab_lab.netns import NETNS_PREFIX, pod_netns_name

VETH_PREFIX = "mlv"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def setup_host() -> None:
    """Create ``meshlab0`` (DNS and host lab address), the blackhole/dummy routes, and enable forwarding."""
    if sh("ip", "link", "show", A.DUMMY_IF, check=False).returncode != 0:
        if sh("ip", "link", "add", A.DUMMY_IF, "type", "dummy", check=False).returncode != 0:
            # Kernels without the dummy driver: a bridge without ports is just as inert.
            sh("ip", "link", "add", A.DUMMY_IF, "type", "bridge")
    sh("ip", "link", "set", A.DUMMY_IF, "up")
    for ip in (A.DNS_SERVICE_IP, A.HOST_LAB_IP):
        sh("ip", "addr", "replace", f"{ip}/32", "dev", A.DUMMY_IF)
    sh("ip", "route", "replace", "blackhole", A.POD_CIDR)
    sh("ip", "route", "replace", A.SERVICE_CIDR, "dev", A.DUMMY_IF, "src", A.HOST_LAB_IP)
    saved = paths.run_dir() / "ip_forward.orig"
    if not saved.exists():
        saved.write_text(_sysctl_path("net.ipv4.ip_forward").read_text())
    _sysctl_path("net.ipv4.ip_forward").write_text("1\n")


def veth_names(namespace: str, pod: str) -> tuple[str, str]:
    digest = hashlib.sha256(pod_netns_name(namespace, pod).encode()).hexdigest()[:10]
    return f"{VETH_PREFIX}{digest}", f"{VETH_PREFIX}{digest}p"


def setup_pod(namespace: str, pod: str, pod_ip: str, search: list[str]) -> str:
    """Create the pod's netns, veth pair, routes and resolv.conf; return the netns name."""
    name = pod_netns_name(namespace, pod)
    host_if, peer_if = veth_names(namespace, pod)
    teardown_pod(namespace, pod)
    sh("ip", "netns", "add", name)
    sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if)
    sh("ip", "link", "set", peer_if, "netns", name)
    sh("ip", "netns", "exec", name, "ip", "link", "set", peer_if, "name", "eth0")
    sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
    sh("ip", "netns", "exec", name, "ip", "addr", "add", f"{pod_ip}/32", "dev", "eth0")
    sh("ip", "netns", "exec", name, "ip", "link", "set", "eth0", "up")
    sh("ip", "netns", "exec", name, "ip", "route", "add", A.LAB_SUPERNET, "dev", "eth0", "src", pod_ip)
    sh("ip", "link", "set", host_if, "up")
    _sysctl_path(f"net.ipv4.conf.{host_if}.proxy_arp").write_text("1\n")
    sh("ip", "route", "replace", f"{pod_ip}/32", "dev", host_if, "src", A.HOST_LAB_IP)
    etc = Path("/etc/netns") / name
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text(f"search {' '.join(search)}\nnameserver {A.DNS_SERVICE_IP}\noptions ndots:5\n")
    (etc / "hosts").write_text(f"127.0.0.1 localhost\n{pod_ip} {pod}\n")
    return name


def netns_pids(name: str) -> list[int]:
    proc = sh("ip", "netns", "pids", name, check=False)
    return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []


def teardown_pod(namespace: str, pod: str) -> None:
    name = pod_netns_name(namespace, pod)
    host_if, _ = veth_names(namespace, pod)
    _remove_netns(name)
    sh("ip", "link", "del", host_if, check=False)


def _remove_netns(name: str) -> None:
    for pid in netns_pids(name):
        subprocess.run(["kill", "-9", str(pid)], capture_output=True)
    if Path(f"/run/netns/{name}").exists():
        sh("ip", "netns", "del", name, check=False)
    etc = Path("/etc/netns") / name
    for f in ("resolv.conf", "hosts"):
        (etc / f).unlink(missing_ok=True)
    if etc.exists():
        etc.rmdir()


def cleanup_all() -> None:
    """Remove every lab netns, veth, route and the dummy interface (also after a killed run)."""
    run_netns = Path("/run/netns")
    names = [p.name for p in run_netns.iterdir()] if run_netns.is_dir() else []
    names += [p.name for p in Path("/etc/netns").iterdir()] if Path("/etc/netns").is_dir() else []
    for name in sorted(set(names)):
        if name.startswith(NETNS_PREFIX):
            _remove_netns(name)
    links = sh("ip", "-o", "link", "show").stdout.splitlines()
    for line in links:
        ifname = line.split(":")[1].strip().split("@")[0]
        if ifname.startswith(VETH_PREFIX) or ifname == A.DUMMY_IF:
            sh("ip", "link", "del", ifname, check=False)
    for cidr in (A.POD_CIDR, A.SERVICE_CIDR):
        sh("ip", "route", "del", cidr, check=False)
    for line in sh("ip", "route", "show").stdout.splitlines():
        dest = line.split()[0] if line.split() else ""
        if dest.startswith("198.18.") or dest.startswith("198.19."):
            sh("ip", "route", "del", *line.split()[:1], check=False)
    saved = paths.run_dir() / "ip_forward.orig"
    if saved.exists():
        _sysctl_path("net.ipv4.ip_forward").write_text(saved.read_text())
        saved.unlink()
