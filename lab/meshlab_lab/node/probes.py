"""Kubernetes probes (httpGet, tcpSocket, exec) run from the node, as a kubelet does."""
import http.client
import socket
import ssl
import subprocess
import time

from meshlab_lab.node.spec import container_port


def run_probe(probe: dict, pod_ip: str, container: dict, exec_argv, env: dict | None = None) -> bool:
    """One probe attempt; ``exec_argv(argv)`` wraps a command to run inside the container (with ``env``)."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if "httpGet" in probe:
            get = probe["httpGet"]
            host, port = get.get("host") or pod_ip, container_port(container, get["port"])
            if (get.get("scheme") or "HTTP").upper() == "HTTPS":
                ctx = ssl._create_unverified_context()  # kubelets do not verify probe certificates
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
            else:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
            conn.request("GET", get.get("path") or "/", headers=headers)
            status = conn.getresponse().status
            conn.close()
            return 200 <= status < 400
        if "tcpSocket" in probe:
            tcp = probe["tcpSocket"]
            port = container_port(container, tcp["port"])
            with socket.create_connection((tcp.get("host") or pod_ip, port), timeout=timeout):
                return True
        if "exec" in probe:
            proc = subprocess.run(exec_argv(probe["exec"]["command"]), capture_output=True, timeout=timeout + 1,
                                  env=env)
            return proc.returncode == 0
    except (OSError, ValueError, subprocess.TimeoutExpired, http.client.HTTPException):
        return False
    raise ValueError(f"unsupported probe {probe!r}")


class ProbeState:
    """Success/failure thresholds and periods of one probe on one running container."""

    def __init__(self, probe: dict, started_at: float, default_period: float = 10):
        self.probe = probe
        self.period = float(probe.get("periodSeconds") or default_period)
        self.success_threshold = int(probe.get("successThreshold") or 1)
        self.failure_threshold = int(probe.get("failureThreshold") or 3)
        self.next_at = started_at + float(probe.get("initialDelaySeconds") or 0)
        self.successes = self.failures = 0
        self.result: bool | None = None

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def record(self, ok: bool, now: float) -> None:
        self.next_at = now + self.period
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= self.success_threshold:
                self.result = True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.failures >= self.failure_threshold or self.result is None:
                self.result = False if self.failures >= self.failure_threshold else self.result


def monotonic() -> float:
    return time.monotonic()
