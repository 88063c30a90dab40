"""``pilot-agent``: entry point of the proxyv2 image (``proxy sidecar|router``, ``istio-iptables``, ``request``)."""
import os
import sys
import urllib.error
import urllib.request

ADMIN = "http://127.0.0.1:15000/"


def request(argv) -> int:
    if len(argv) < 2 or argv[0].upper() != "GET":
        print("usage: pilot-agent request GET <path>", file=sys.stderr)
        return 2
    url = ADMIN + argv[1].lstrip("/")
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            sys.stdout.buffer.write(answer.read())
        return 0
    except urllib.error.HTTPError as exc:
        print(f"Error: received unexpected status {exc.code} from {url}: {exc.read().decode(errors='replace')}",
              file=sys.stderr)
    except OSError as exc:
        print(f"Error: cannot reach the Envoy admin at {url}: {exc}", file=sys.stderr)
    return 1


def main(argv=None) -> int:
    """``argv`` starts with the name the program was called by (``pilot-agent`` or ``istio-iptables``)."""
    argv = list(sys.argv if argv is None else argv)
    program, args = os.path.basename(argv[0]), argv[1:]
    if program == "istio-iptables":
        args = ["istio-iptables"] + args
    if not args:
        print("usage: pilot-agent proxy sidecar|router | istio-iptables ... | request GET <path>", file=sys.stderr)
        return 2
    command, rest = args[0], args[1:]
    if command == "proxy":
        from meshlab_lab.mesh import proxy
        return proxy.main(rest)
    if command == "istio-iptables":
        from meshlab_lab.mesh import iptables
        return iptables.main(rest)
    if command == "request":
        return request(rest)
    if command == "wait":
        return 0
    print(f"pilot-agent: unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
