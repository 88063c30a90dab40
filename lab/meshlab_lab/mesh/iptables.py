"""``istio-iptables``: the istio-init program. Installs Istio's nat chains with the real iptables in the pod netns.

Supported flags (those the injector passes): -p outbound port, -z inbound port, -u proxy uid, -g proxy gid,
-m REDIRECT, -i include outbound CIDRs ('*'), -x exclude outbound CIDRs, -b include inbound ports ('*' or
list), -d exclude inbound ports, -o exclude outbound ports. Only REDIRECT mode exists in the lab.
"""
import argparse
import subprocess
import sys

ALWAYS_EXCLUDED_INBOUND = ("15000",)  # admin is loopback-only anyway; never intercept it
CHAINS = ("ISTIO_INBOUND", "ISTIO_REDIRECT", "ISTIO_IN_REDIRECT", "ISTIO_OUTPUT")


def _csv(value: str) -> list[str]:
    return [v for v in (value or "").replace(" ", "").split(",") if v]


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="istio-iptables")
    p.add_argument("-p", dest="outbound_port", default="15001")
    p.add_argument("-z", dest="inbound_port", default="15006")
    p.add_argument("-u", dest="uid", default="1337")
    p.add_argument("-g", dest="gid", default=None)
    p.add_argument("-m", dest="mode", default="REDIRECT")
    p.add_argument("-i", dest="include_cidrs", default="*")
    p.add_argument("-x", dest="exclude_cidrs", default="")
    p.add_argument("-b", dest="include_ports", default="*")
    p.add_argument("-d", dest="exclude_ports", default="")
    p.add_argument("-o", dest="exclude_out_ports", default="")
    p.add_argument("--dry-run", action="store_true", help="print the iptables commands instead of running them")
    args, _unknown = p.parse_known_args(argv)
    if args.mode != "REDIRECT":
        p.error(f"interception mode {args.mode!r} is not supported by the lab (only REDIRECT)")
    for port in (args.outbound_port, args.inbound_port, args.uid, *_csv(args.exclude_ports)):
        if not port.isdigit():
            p.error(f"{port!r} is not a number")
    return args


def rules(args) -> list[list[str]]:
    gid = args.gid or args.uid
    nat = [["-N", chain] for chain in CHAINS]
    nat += [["-A", "ISTIO_REDIRECT", "-p", "tcp", "-j", "REDIRECT", "--to-ports", args.outbound_port],
            ["-A", "ISTIO_IN_REDIRECT", "-p", "tcp", "-j", "REDIRECT", "--to-ports", args.inbound_port]]
    if args.include_ports:
        nat.append(["-A", "PREROUTING", "-p", "tcp", "-j", "ISTIO_INBOUND"])
        if args.include_ports == "*":
            for port in ALWAYS_EXCLUDED_INBOUND + tuple(_csv(args.exclude_ports)):
                nat.append(["-A", "ISTIO_INBOUND", "-p", "tcp", "--dport", port, "-j", "RETURN"])
            nat.append(["-A", "ISTIO_INBOUND", "-p", "tcp", "-j", "ISTIO_IN_REDIRECT"])
        else:
            for port in _csv(args.include_ports):
                nat.append(["-A", "ISTIO_INBOUND", "-p", "tcp", "--dport", port, "-j", "ISTIO_IN_REDIRECT"])
    nat.append(["-A", "OUTPUT", "-p", "tcp", "-j", "ISTIO_OUTPUT"])
    for port in _csv(args.exclude_out_ports):
        nat.append(["-A", "ISTIO_OUTPUT", "-p", "tcp", "--dport", port, "-j", "RETURN"])
    nat += [
        ["-A", "ISTIO_OUTPUT", "-o", "lo", "-s", "127.0.0.6/32", "-j", "RETURN"],
        # the proxy talking to its own pod IP over lo goes back through inbound
        ["-A", "ISTIO_OUTPUT", "!", "-d", "127.0.0.1/32", "-o", "lo", "-m", "owner", "--uid-owner", args.uid,
         "-j", "ISTIO_IN_REDIRECT"],
        ["-A", "ISTIO_OUTPUT", "-o", "lo", "-m", "owner", "!", "--uid-owner", args.uid, "-j", "RETURN"],
        ["-A", "ISTIO_OUTPUT", "-m", "owner", "--uid-owner", args.uid, "-j", "RETURN"],
        ["-A", "ISTIO_OUTPUT", "!", "-d", "127.0.0.1/32", "-o", "lo", "-m", "owner", "--gid-owner", gid,
         "-j", "ISTIO_IN_REDIRECT"],
        ["-A", "ISTIO_OUTPUT", "-o", "lo", "-m", "owner", "!", "--gid-owner", gid, "-j", "RETURN"],
        ["-A", "ISTIO_OUTPUT", "-m", "owner", "--gid-owner", gid, "-j", "RETURN"],
        ["-A", "ISTIO_OUTPUT", "-d", "127.0.0.1/32", "-j", "RETURN"],
    ]
    for cidr in _csv(args.exclude_cidrs):
        nat.append(["-A", "ISTIO_OUTPUT", "-d", cidr, "-j", "RETURN"])
    includes = _csv(args.include_cidrs)
    if "*" in includes:
        nat.append(["-A", "ISTIO_OUTPUT", "-j", "ISTIO_REDIRECT"])
    else:
        nat += [["-A", "ISTIO_OUTPUT", "-d", cidr, "-j", "ISTIO_REDIRECT"] for cidr in includes]
        nat.append(["-A", "ISTIO_OUTPUT", "-j", "RETURN"])
    return [["iptables", "-w", "5", "-t", "nat"] + rule for rule in nat]


def main(argv=None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    commands = rules(args)
    if args.dry_run:
        print("\n".join(" ".join(c) for c in commands))
        return 0
    existing = subprocess.run(["iptables", "-w", "5", "-t", "nat", "-S"], capture_output=True, text=True)
    if existing.returncode != 0:
        print(f"istio-iptables: cannot read the nat table: {existing.stderr.strip()}", file=sys.stderr)
        return 1
    if any(f"-N {chain}" in existing.stdout for chain in CHAINS):
        print("istio-iptables: Istio chains already present, leaving them as they are")
        return 0
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"istio-iptables: {' '.join(command)} failed: {done.stderr.strip()}", file=sys.stderr)
            return 1
        print(" ".join(command[5:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
