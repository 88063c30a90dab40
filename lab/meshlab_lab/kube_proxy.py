"""The real kube-proxy 1.20.2 in iptables mode (ClusterIP DNAT for pods and for the host)."""
import subprocess

from meshlab_lab import addresses as A
from meshlab_lab import paths, procs


def start(node_index: int = 1) -> None:
    kc = paths.state_dir() / "kubeconfigs" / "kube-proxy.kubeconfig"
    procs.start("kube-proxy", [
        str(paths.kube_bin_dir() / "kube-proxy"), f"--kubeconfig={kc}", "--proxy-mode=iptables",
        f"--cluster-cidr={A.POD_CIDR}", f"--hostname-override={A.node_name(node_index)}",
        "--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
        "--healthz-bind-address=127.0.0.1:10256", "--metrics-bind-address=127.0.0.1:10249",
        "--bind-address=127.0.0.1", "--v=1",
    ])


def healthy() -> bool:
    import urllib.request
    try:
        with urllib.request.urlopen("http://127.0.0.1:10256/healthz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def cleanup() -> None:
    """`kube-proxy --cleanup`, then the KUBE-* chains it leaves for a kubelet (canary, mark chains)."""
    binary = paths.kube_bin_dir() / "kube-proxy"
    if binary.exists():
        subprocess.run([str(binary), "--cleanup"], capture_output=True, timeout=60)
    for table in ("filter", "nat", "mangle"):
        remove_kube_chains(table)


def remove_kube_chains(table: str) -> None:
    listing = subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True)
    if listing.returncode != 0:
        return
    chains = [line.split()[1] for line in listing.stdout.splitlines()
              if line.startswith("-N ") and line.split()[1].startswith("KUBE-")]
    for line in listing.stdout.splitlines():
        parts = line.split()
        if parts[:1] == ["-A"] and parts[1] not in chains and "-j" in parts and parts[parts.index("-j") + 1] in chains:
            subprocess.run(["iptables", "-w", "-t", table, "-D"] + parts[1:], capture_output=True)
    for flag in ("-F", "-X"):
        for chain in chains:
            subprocess.run(["iptables", "-w", "-t", table, flag, chain], capture_output=True)
