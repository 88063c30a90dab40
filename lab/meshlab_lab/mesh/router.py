"""The lab's OpenShift router: admits Routes (host ``<name>-<namespace>.apps.lab.local``) and serves them with HAProxy.

Real: the data path is Debian's HAProxy (``/usr/sbin/haproxy``), as OpenShift's router is. It runs in
master-worker mode (``-W``) as a child of the mesh addon, with all of its files under ``<state>/router/``
(``haproxy.cfg``, ``wildcard.pem``, ``error-page-503.http``, ``haproxy.pid``, ``master.sock``), and its
stdout/stderr (alerts, warnings, one line per request) go to the addon's log (logger ``meshlab.router.haproxy``).

- Edge TLS on ``127.0.0.1:8443`` (the lab's stand-in for the router's 443) with a ``*.apps.lab.local`` cert
  from the lab router CA (``<state>/pki/router-ca.crt``), ALPN ``http/1.1``, TLS 1.2 minimum.
- Per-request routing by the Host header (port and case ignored) and the longest matching ``spec.path``
  prefix, one backend per Route, whose servers are the ready addresses of the Route's ``spec.to`` Service
  endpoints on the port chosen from ``spec.port.targetPort`` (Service port name, Service targetPort or port
  number; a single endpoint port is taken as is). Two Routes claiming the same host and path: the oldest wins.
- ``balance random``, the default of OpenShift 4.11+ for non-passthrough routes (4.8.z-4.10 used
  ``leastconn``); the ``haproxy.router.openshift.io/balance`` annotation (random, roundrobin, leastconn,
  source) and ``haproxy.router.openshift.io/timeout`` (server timeout) are honoured.
- Sticky cookie per backend as OpenShift sets for non-passthrough routes (name: a hash of the Route's key, or
  ``router.openshift.io/cookie_name``; off with ``haproxy.router.openshift.io/disable_cookies``).
- ``X-Forwarded-For``/``-Host``/``-Port``/``-Proto`` and ``Forwarded`` request headers.
- An unknown host, a Route whose Service has no ready endpoint, or a Route not served on that port gets a 503
  with OpenShift's "Application is not available" page (HAProxy ``errorfile 503``).
- Plain HTTP on ``127.0.0.1:8080`` (the lab's stand-in for port 80), only if that port is free when the
  router starts (probed without SO_REUSEPORT, and HAProxy binds with ``noreuseport``, so it never shares a
  port with another listener; a busy port leaves the frontend out, logged): Routes without ``spec.tls`` are
  served there, edge Routes with ``insecureEdgeTerminationPolicy: Redirect`` answer ``302`` to
  ``https://<host><uri>`` (no port: clients reach 8443 as 443, e.g. ``curl --connect-to host:443:127.0.0.1:8443``),
  ``Allow`` serves them, ``None``/unset answers 503.
- Reload: ``Router.sync()`` re-renders the config after each watch event; only a changed config is checked
  with ``haproxy -c -f`` and, if valid, replaces ``haproxy.cfg`` and is loaded with SIGUSR2 to the master
  (the listening sockets pass to the new worker, so no connection is refused during a reload). A config that
  fails the check (or a reload the master reports as failed) is logged and refused; the running one keeps
  serving. ``start()`` first kills a HAProxy left over from a killed earlier run (pid file, or any process
  still running this state dir's ``haproxy.cfg``); ``stop()`` stops master and workers.

Emulated: the config is rendered by the lab from the Snapshot of Routes/Services/Endpoints, not by
OpenShift's template router (no map files, no dynamic config API); Route admission (``admit_routes``) marks
every Route admitted without conflict checks.

Left out: passthrough and reencrypt termination (such Routes get no backend, 503), per-Route certificates
(``spec.tls.certificate``/``key``; only the wildcard cert is served), ``spec.alternateBackends`` and weights,
wildcard policies, HSTS, IP allow lists, rate limits, rewrite-target, health checks, HTTP/2, metrics/stats.
"""
import ctypes
import dataclasses
import datetime
import hashlib
import ipaddress
import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from pathlib import Path

from meshlab_lab.mesh import ca as ca_mod

LOG = logging.getLogger("meshlab.router")
HAPROXY_LOG = logging.getLogger("meshlab.router.haproxy")
DOMAIN = "apps.lab.local"
LISTEN = ("127.0.0.1", 8443)
HTTP_LISTEN = ("127.0.0.1", 8080)
HAPROXY = "/usr/sbin/haproxy"
BALANCE = "random"  # OpenShift 4.11+ default for edge/reencrypt/plain routes
BALANCE_CHOICES = ("random", "roundrobin", "leastconn", "source")
DEFAULT_BACKEND = "openshift_default"
UNAVAILABLE = (b"<html><head><title>Application is not available</title></head><body><h1>Application is not "
               b"available</h1><p>The application is currently not serving requests at this endpoint. It may not "
               b"have been started or is still starting.</p></body></html>")
START_TIMEOUT = 10.0
RELOAD_TIMEOUT = 10.0

_HOST_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PATH_RE = re.compile(r"^/[A-Za-z0-9\-._~%!&()*+,;=:@/]*$")  # no spaces, quotes, '#', '$', braces, backslash
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_TIMEOUT_RE = re.compile(r"^[0-9]+(us|ms|s|m|h|d)?$")
_COOKIE_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")
# what every reload or stop prints at WARNING/ALERT although nothing is wrong
_ROUTINE = re.compile(r"Proxy \S+ stopped \(cumulated|Former worker \(\d+\) exited with code 0|Exiting Master process")


class RouterError(RuntimeError):
    pass


def route_host(route: dict) -> str:
    meta = route["metadata"]
    return f"{meta['name']}-{meta['namespace']}.{DOMAIN}"


def admitted(route: dict) -> bool:
    host = (route.get("spec") or {}).get("host")
    for ingress in (route.get("status") or {}).get("ingress") or []:
        if ingress.get("host") == host and any(c.get("type") == "Admitted" and c.get("status") == "True"
                                                for c in ingress.get("conditions") or []):
            return True
    return False


def admit_routes(api_client, snap) -> None:
    """Give hostless Routes their default host and mark every Route admitted, as OpenShift's router does."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(api_client)
    for route in snap.list("routes"):
        meta = route["metadata"]
        spec = route.get("spec") or {}
        try:
            if not spec.get("host"):
                api.patch_namespaced_custom_object("route.openshift.io", "v1", meta["namespace"], "routes",
                                                   meta["name"], {"spec": {"host": route_host(route)}})
                LOG.info("route %s/%s gets host %s", meta["namespace"], meta["name"], route_host(route))
                continue  # the watch brings the updated object; admit it then
            if not admitted(route):
                status = {"status": {"ingress": [{
                    "host": spec["host"], "routerName": "default", "wildcardPolicy": "None",
                    "routerCanonicalHostname": f"router-default.{DOMAIN}",
                    "conditions": [{"type": "Admitted", "status": "True"}]}]}}
                api.patch_namespaced_custom_object_status("route.openshift.io", "v1", meta["namespace"], "routes",
                                                          meta["name"], status)
        except ApiException as exc:
            LOG.error("route %s/%s: %s", meta["namespace"], meta["name"], exc.reason)


def route_endpoints(snap, route: dict) -> list[tuple[str, str, int]]:
    """(pod or ip, ip, port) of every ready endpoint of the Route's Service, on the Route's target port."""
    ns, spec = route["metadata"]["namespace"], route.get("spec") or {}
    to = spec.get("to") or {}
    if to.get("kind", "Service") != "Service":
        return []
    service = snap.get("services", ns, to.get("name", ""))
    endpoints = snap.get("endpoints", ns, to.get("name", ""))
    if not service or not endpoints:
        return []
    target = (spec.get("port") or {}).get("targetPort")
    svc_port = next((p for p in (service.get("spec") or {}).get("ports") or []
                     if target is None or p.get("name") == target or p.get("targetPort") == target
                     or p.get("port") == target), None)
    found = []
    for subset in endpoints.get("subsets") or []:
        ports = subset.get("ports") or []
        port = next((p for p in ports if svc_port and p.get("name") == svc_port.get("name")), None)
        if port is None and isinstance(target, int):
            port = next((p for p in ports if p.get("port") == target), None)
        if port is None and len(ports) == 1:
            port = ports[0]
        if port:
            found += [((a.get("targetRef") or {}).get("name") or a.get("ip", ""), a.get("ip", ""), port.get("port"))
                      for a in subset.get("addresses") or []]
    return found


@dataclasses.dataclass
class Backend:
    """One Route as HAProxy serves it."""
    name: str                 # be_edge_http:<ns>:<name> or be_http:<ns>:<name>
    host: str
    path: str
    edge: bool                # on the TLS frontend
    plain: str                # on the plain frontend: "serve", "redirect" or "" (not at all)
    servers: list = dataclasses.field(default_factory=list)  # (server name, ip, port)
    balance: str = BALANCE
    timeout: str | None = None
    cookie: str | None = None
    secure_cookie: bool = True


def _digest(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def route_backends(snap) -> tuple[list[Backend], list[str]]:
    """The Backends to render, longest path first per host (the first match wins), and why Routes were skipped."""
    notes, backends, claimed = [], [], set()
    routes = sorted(snap.list("routes"), key=lambda r: (
        len((r.get("spec") or {}).get("path") or "/") * -1, (r.get("metadata") or {}).get("creationTimestamp", ""),
        r["metadata"].get("namespace", ""), r["metadata"].get("name", "")))
    for route in routes:
        meta, spec = route["metadata"], route.get("spec") or {}
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        key = f"{ns}/{name}"
        host, path = (spec.get("host") or "").lower(), spec.get("path") or "/"
        if not host:
            continue  # admit_routes gives it a host first
        if not (_NAME_RE.match(ns) and _NAME_RE.match(name)):
            notes.append(f"route {key}: unusable name")
            continue
        if not _HOST_RE.match(host):
            notes.append(f"route {key}: host {host!r} is not a DNS name; not served")
            continue
        if not _PATH_RE.match(path):
            notes.append(f"route {key}: path {path!r} is not served (must start with / and use URL characters)")
            continue
        tls = spec.get("tls") or None
        if tls is not None and (tls.get("termination") or "").lower() != "edge":
            notes.append(f"route {key}: termination {tls.get('termination')!r} is not emulated (edge only)")
            continue
        if (host, path) in claimed:
            notes.append(f"route {key}: {host}{path} is already claimed by an older Route; not served")
            continue
        claimed.add((host, path))
        if tls is None:
            backend = Backend(f"be_http:{ns}:{name}", host, path, edge=False, plain="serve", secure_cookie=False)
        else:
            policy = (tls.get("insecureEdgeTerminationPolicy") or "None").lower()
            plain = {"redirect": "redirect", "allow": "serve"}.get(policy, "")
            backend = Backend(f"be_edge_http:{ns}:{name}", host, path, edge=True, plain=plain,
                              secure_cookie=policy != "allow")
        annotations = meta.get("annotations") or {}
        balance = annotations.get("haproxy.router.openshift.io/balance", "").strip().lower()
        if balance in BALANCE_CHOICES:
            backend.balance = balance
        elif balance:
            notes.append(f"route {key}: balance {balance!r} ignored")
        timeout = annotations.get("haproxy.router.openshift.io/timeout", "").strip()
        if _TIMEOUT_RE.match(timeout):
            backend.timeout = timeout
        elif timeout:
            notes.append(f"route {key}: timeout {timeout!r} ignored")
        if annotations.get("haproxy.router.openshift.io/disable_cookies", "").lower() not in ("true", "1"):
            cookie = annotations.get("router.openshift.io/cookie_name", "")
            backend.cookie = cookie if _COOKIE_RE.match(cookie) else _digest(f"{ns}:{name}")
        servers = {}
        for pod, ip, port in route_endpoints(snap, route):
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                continue
            if addr.version != 4 or not isinstance(port, int) or not 0 < port < 65536:
                continue
            server = _UNSAFE.sub("_", f"pod:{pod}:{ip}:{port}")
            servers[server] = (server, str(addr), port)
        backend.servers = sorted(servers.values())
        backends.append(backend)
    return backends, notes


def _frontend(lines: list, backends: list[Backend], proto: str) -> None:
    """Pick the Route per request (host, then longest path prefix) into txn.backend, then act on it."""
    lines += ["    acl matched var(txn.backend) -m found",
              "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower"]
    for b in backends:
        lines.append(f"    http-request set-var(txn.backend) str({b.name}) if !matched "
                     f"{{ var(txn.host) -m str {b.host} }} {{ path -m beg {b.path} }}")
    lines += ["    http-request set-header X-Forwarded-Host %[req.hdr(host)]",
              "    http-request set-header X-Forwarded-Port %[dst_port]",
              f"    http-request set-header X-Forwarded-Proto {proto}",
              f"    http-request add-header Forwarded for=%[src];host=%[req.hdr(host)];proto={proto}"]
    for b in backends:
        if proto == "http" and b.plain == "redirect":
            lines.append(f"    http-request redirect location https://%[var(txn.host)]%[capture.req.uri] code 302 "
                         f"if {{ var(txn.backend) -m str {b.name} }}")
    for b in backends:
        if proto == "https" or b.plain == "serve":
            lines.append(f"    use_backend {b.name} if {{ var(txn.backend) -m str {b.name} }}")
    lines.append(f"    default_backend {DEFAULT_BACKEND}")


def render_config(backends: list[Backend], files: dict, listen: tuple[str, int],
                  http_listen: tuple[str, int] | None) -> str:
    """haproxy.cfg for ``backends``; ``files`` gives the paths of ``pem`` and ``errorfile``."""
    lines = ["# Rendered by meshlab_lab.mesh.router from the lab's Routes; replaced on every change.",
             "global",
             "    log stdout format raw local0 info",
             "    noreuseport",
             "    hard-stop-after 30s",
             "    ssl-default-bind-options ssl-min-ver TLSv1.2",
             "",
             "defaults",
             "    mode http",
             "    log global",
             "    option httplog",
             "    option dontlognull",
             "    option forwardfor",
             "    timeout connect 5s",
             "    timeout client 30s",
             "    timeout client-fin 1s",
             "    timeout server 30s",
             "    timeout server-fin 1s",
             "    timeout http-request 10s",
             "    timeout http-keep-alive 300s",
             "    timeout tunnel 1h",
             f"    errorfile 503 {files['errorfile']}",
             "",
             "frontend fe_edge",
             f"    bind {listen[0]}:{listen[1]} ssl crt {files['pem']} alpn http/1.1"]
    _frontend(lines, [b for b in backends if b.edge], "https")
    if http_listen:
        lines += ["", "frontend fe_http", f"    bind {http_listen[0]}:{http_listen[1]}"]
        _frontend(lines, [b for b in backends if b.plain], "http")
    lines += ["", f"backend {DEFAULT_BACKEND}", "    # no servers: every request gets the 503 page"]
    for b in backends:
        lines += ["", f"backend {b.name}", f"    balance {b.balance}"]
        if b.timeout:
            lines.append(f"    timeout server {b.timeout}")
        if b.cookie:
            lines.append(f"    cookie {b.cookie} insert indirect nocache httponly"
                         + (" secure attr SameSite=None" if b.secure_cookie else ""))
        for server, ip, port in b.servers:
            lines.append(f"    server {server} {ip}:{port}" + (f" cookie {_digest(server)}" if b.cookie else ""))
    return "\n".join(lines) + "\n"


def _error_page() -> bytes:
    head = ("HTTP/1.1 503 Service Unavailable\r\nPragma: no-cache\r\n"
            "Cache-Control: private, max-age=0, no-cache, no-store\r\nConnection: close\r\n"
            f"Content-Type: text/html\r\nContent-Length: {len(UNAVAILABLE)}\r\n\r\n")
    return head.encode() + UNAVAILABLE


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers do not count
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _cmdline(pid: int) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


_prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved now, not in the forked child
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the thread that started us ends (the addon's main thread)."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Router:
    """HAProxy as the OpenShift router of the lab; files under ``<state_dir>/router/``, CA in ``pki_dir``.

    ``listen``/``http_listen`` are the TLS and plain-HTTP listen addresses (``http_listen=None``: no plain
    frontend). Call ``start()`` from the thread that lives as long as the router (HAProxy gets SIGTERM when
    that thread ends), ``sync()`` after Snapshot changes, ``stop()`` at the end.
    """

    def __init__(self, snap, state_dir: Path, *, listen: tuple[str, int] = LISTEN,
                 http_listen: tuple[str, int] | None = HTTP_LISTEN, pki_dir: Path | None = None,
                 haproxy: str = HAPROXY):
        self.snap = snap
        self.listen = listen
        self.http_listen = http_listen
        self.haproxy = haproxy
        self.dir = Path(state_dir).resolve() / "router"
        self.pki_dir = Path(pki_dir) if pki_dir else Path(state_dir) / "pki"
        self.cfg = self.dir / "haproxy.cfg"
        self.candidate = self.dir / "haproxy.cfg.new"
        self.pem = self.dir / "wildcard.pem"
        self.errorfile = self.dir / "error-page-503.http"
        self.pid_file = self.dir / "haproxy.pid"
        self.master_sock = self.dir / "master.sock"
        self.ca = ca_mod.CertificateAuthority.load_or_create(self.pki_dir, "router-ca", "meshlab router CA")
        self.proc: subprocess.Popen | None = None
        self.applied: str | None = None   # the config HAProxy runs
        self.rejected: str | None = None  # the last config refused (not checked again)
        self.reloads = 0
        self.plain: tuple[str, int] | None = None  # the plain-HTTP listener actually configured
        self._lock = threading.RLock()
        self._log_thread: threading.Thread | None = None
        self._tail: deque = deque(maxlen=30)
        self._stopping = False
        self._wanted = False  # between start() and stop()

    # --- config ---------------------------------------------------------------------------------------------

    def render(self) -> tuple[str, list[str]]:
        backends, notes = route_backends(self.snap)
        return render_config(backends, {"pem": self.pem, "errorfile": self.errorfile}, self.listen,
                             self.plain), notes

    def check(self, text: str) -> str | None:
        """None if HAProxy accepts ``text`` (left in haproxy.cfg.new), else its error output."""
        self.candidate.write_text(text)
        try:
            done = subprocess.run([self.haproxy, "-c", "-f", str(self.candidate)], capture_output=True, text=True,
                                  timeout=30, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        if done.returncode == 0:
            return None
        return (done.stdout + done.stderr).strip() or f"haproxy -c exited {done.returncode}"

    # --- process --------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Kill leftovers, write cert and error page, start HAProxy and wait until its worker serves."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                return
            if not os.access(self.haproxy, os.X_OK):
                raise RouterError(f"{self.haproxy} not found: apt-get install haproxy (lab/scripts/install-deps.sh)")
            if len(str(self.master_sock)) > 100:
                raise RouterError(f"state dir path too long for a unix socket: {self.master_sock}")
            self.dir.mkdir(parents=True, exist_ok=True)
            self.dir.chmod(0o700)
            self.kill_leftovers()
            issued = self.ca.issue(dns_names=[f"*.{DOMAIN}", DOMAIN], ttl=datetime.timedelta(days=90), client=False)
            self.pem.touch(mode=0o600)
            self.pem.chmod(0o600)
            self.pem.write_bytes(issued.cert_pem + self.ca.cert_pem + issued.key_pem)
            self.errorfile.write_bytes(_error_page())
            self.plain = None
            if self.http_listen:
                if _port_free(*self.http_listen):
                    self.plain = self.http_listen
                else:
                    LOG.warning("router: %s:%s is in use; no plain-HTTP frontend (no Redirect/Allow)",
                                *self.http_listen)
            text, notes = self.render()
            error = self.check(text)
            if error:
                LOG.error("router: config from the Routes refused, starting without Routes: %s", error)
                self.rejected = text
                text = render_config([], {"pem": self.pem, "errorfile": self.errorfile}, self.listen, self.plain)
                error = self.check(text)
                if error:
                    raise RouterError(f"haproxy refuses even the empty config: {error}")
            else:
                for note in notes:
                    LOG.warning("router: %s", note)
            os.replace(self.candidate, self.cfg)
            self._wanted = True
            self._spawn()
            self.applied = text
            LOG.info("router: haproxy (master pid %s) serves https://%s:%s%s", self.proc.pid, *self.listen,
                     " and http://%s:%s" % self.plain if self.plain else "")

    def _spawn(self) -> None:
        self.master_sock.unlink(missing_ok=True)
        self._tail.clear()
        argv = [self.haproxy, "-W", "-f", str(self.cfg), "-p", str(self.pid_file), "-S", f"{self.master_sock},mode,600"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     close_fds=True, preexec_fn=_die_with_parent)
        self._log_thread = threading.Thread(target=self._pump_log, args=(self.proc,), name="haproxy-log", daemon=True)
        self._log_thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log_thread.join(2)
                raise RouterError(f"haproxy exited with {self.proc.returncode}: " + " | ".join(self._tail))
            status = self.status()
            if status and status["worker"]:
                return
            time.sleep(0.02)
        self._terminate()
        raise RouterError("haproxy did not start a worker in time: " + " | ".join(self._tail))

    def _pump_log(self, proc: subprocess.Popen) -> None:
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if not line:
                continue
            self._tail.append(line)
            if _ROUTINE.search(line) or self._stopping:
                level = logging.DEBUG if "stopped (cumulated" in line else logging.INFO
            else:
                level = (logging.ERROR if "[ALERT]" in line else logging.WARNING if "[WARNING]" in line
                         else logging.INFO)
            HAPROXY_LOG.log(level, "%s", line)
        proc.stdout.close()

    def status(self) -> dict | None:
        """From the master CLI (``show proc``): master pid, reloads, failed reloads, current worker pid."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as cli:
                cli.settimeout(2)
                cli.connect(str(self.master_sock))
                cli.sendall(b"show proc\n")
                cli.shutdown(socket.SHUT_WR)
                data = b""
                while chunk := cli.recv(65536):
                    data += chunk
        except OSError:
            return None  # not up yet, or re-executing for a reload
        found, section = {"master": None, "reloads": 0, "failed": 0, "worker": None}, ""
        for line in data.decode(errors="replace").splitlines():
            if line.startswith("#"):
                section = line.strip("# ").lower()
                continue
            parts = line.split()
            if len(parts) >= 3 and parts[1] == "master" and parts[0].isdigit():
                found["master"], found["reloads"] = int(parts[0]), int(parts[2])
                failed = re.search(r"failed:\s*(\d+)", line)
                found["failed"] = int(failed.group(1)) if failed else 0
            elif section == "workers" and len(parts) >= 2 and parts[1] == "worker" and found["worker"] is None:
                found["worker"] = int(parts[0])
        return found if found["master"] else None

    def sync(self) -> bool:
        """Re-render from the Snapshot; if the config changed and HAProxy accepts it, reload. True if reloaded."""
        with self._lock:
            if not self._wanted:
                return False
            if self.proc is None or self.proc.poll() is not None:
                LOG.error("router: haproxy is not running (exit %s); starting it again",
                          self.proc.returncode if self.proc else None)
                self.proc = None
                try:
                    self.start()
                except RouterError as exc:
                    LOG.error("router: %s", exc)
                    return False
                return True
            text, notes = self.render()
            if text == self.applied or text == self.rejected:
                return False
            for note in notes:
                LOG.warning("router: %s", note)
            error = self.check(text)
            if error:
                LOG.error("router: new config refused by haproxy -c, the running one stays: %s", error)
                self.rejected = text
                return False
            before = self._wait_status(lambda s: True)
            if before is None:
                LOG.error("router: haproxy master CLI does not answer; not reloading")
                return False
            os.replace(self.candidate, self.cfg)
            os.kill(self.proc.pid, signal.SIGUSR2)
            after = self._wait_status(lambda s: s["reloads"] > before["reloads"])
            if after is None or after["failed"] > before["failed"] or after["worker"] in (None, before["worker"]):
                LOG.error("router: haproxy failed to load the new config, the running one stays: %s",
                          " | ".join(list(self._tail)[-5:]))
                self.cfg.write_text(self.applied or "")
                self.rejected = text
                return False
            self.applied, self.rejected = text, None
            self.reloads += 1
            LOG.info("router: haproxy reloaded (worker pid %s)", after["worker"])
            return True

    def _wait_status(self, cond, timeout: float = RELOAD_TIMEOUT) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc is not None and self.proc.poll() is None:
            status = self.status()
            if status and cond(status):
                return status
            time.sleep(0.02)
        return None

    def stop(self) -> None:
        """Stop HAProxy (master and workers) and wait for it."""
        with self._lock:
            self._wanted = False
            self._terminate()
            self.kill_leftovers()
            self.master_sock.unlink(missing_ok=True)
            self.pid_file.unlink(missing_ok=True)

    def _terminate(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        self._stopping = True
        try:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            if self._log_thread:
                self._log_thread.join(5)
        finally:
            self._stopping = False
        LOG.info("router: haproxy stopped")

    def kill_leftovers(self) -> None:
        """Kill a HAProxy of an earlier run on this state dir: the pid file's, or any running our haproxy.cfg."""
        ours = {self.proc.pid} if self.proc is not None else set()
        pids = set()
        try:
            pids.add(int(self.pid_file.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            pass
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                pids.add(int(entry.name))
        victims = [pid for pid in pids if pid not in ours and pid != os.getpid() and self._runs_our_cfg(pid)]
        if victims:
            LOG.warning("router: killing leftover haproxy %s (%s)", victims, self.cfg)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in victims:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(_alive(p) for p in victims):
                time.sleep(0.02)
            victims = [p for p in victims if _alive(p)]
            if not victims:
                break

    def _runs_our_cfg(self, pid: int) -> bool:
        argv = _cmdline(pid)
        return bool(argv) and Path(argv[0]).name == "haproxy" and str(self.cfg) in argv and _alive(pid)
