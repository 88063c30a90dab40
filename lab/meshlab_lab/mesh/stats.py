"""Envoy-named counters that count what the proxy really does, rendered in Envoy's ``/stats`` text format."""
from collections import defaultdict


class Stats:
    def __init__(self):
        self._counters: dict[str, int] = defaultdict(int)

    def inc(self, name: str, by: int = 1) -> None:
        self._counters[name] += by

    def get(self, name: str) -> int:
        return self._counters.get(name, 0)

    def ensure(self, *names: str) -> None:
        """Make counters visible at 0, as Envoy lists every counter of a configured cluster/listener."""
        for name in names:
            self._counters.setdefault(name, 0)

    def render(self) -> str:
        return "".join(f"{name}: {value}\n" for name, value in sorted(self._counters.items()))


def cluster_counters(cluster: str) -> list[str]:
    return [f"cluster.{cluster}.{suffix}" for suffix in (
        "upstream_cx_total", "upstream_cx_connect_fail", "upstream_cx_destroy_remote_with_active_rq",
        "ssl.handshake", "ssl.connection_error", "upstream_rq_total")]


def listener_counters(listener: str) -> list[str]:
    return [f"listener.{listener}.{suffix}" for suffix in (
        "downstream_cx_total", "ssl.handshake", "ssl.connection_error", "downstream_cx_destroy")]
