"""The file contract between the istiod emulation and a proxy.

istiod writes, atomically (temp file + rename), into the proxy's folder (``$MESHLAB_POD_DIR/istio-proxy``):

- ``cert-chain.pem``, ``key.pem``, ``root-cert.pem``: the workload cert (SPIFFE URI SAN) and the mesh root;
- ``proxy-config.json``::

    {"version": "<timestamp>/<n>", "pushed_at": <unix time of the API event that caused it>,
     "kind": "sidecar" | "router", "node": {"namespace", "pod", "ip", "service_account"},
     "inbound": {"default": "PERMISSIVE", "ports": {"9080": "STRICT"}},
     "clusters": [{"name": "outbound|9080||details.bookinfo.svc.cluster.local", "host", "port", "subset",
                   "tls": "ISTIO_MUTUAL" | "DISABLE" | "AUTO",
                   "endpoints": [{"address", "port", "mtls": true|false}]}],
     "vips": {"198.19.0.42:9080": "<cluster name>"},
     "gateway": {"servers": [{"port": 8080, "hosts": ["*"]}],
                 "routes": [{"port": 8080, "hosts": ["*"], "match": [{"exact"|"prefix": "/x"}],
                             "cluster": "<cluster name>"}]}}

The proxy polls the files' modification times, reloads when any changes, and answers by writing
``loaded-version`` (``<version> <pushed_at> <loaded_at>``) next to them; the bench reads that.
"""
import json
import os
import time
from pathlib import Path

CONFIG_FILE = "proxy-config.json"
CERT_FILE = "cert-chain.pem"
KEY_FILE = "key.pem"
ROOT_FILE = "root-cert.pem"
LOADED_FILE = "loaded-version"
WATCHED = (CONFIG_FILE, CERT_FILE, KEY_FILE, ROOT_FILE)
MODES = ("STRICT", "PERMISSIVE", "DISABLE")


class ConfigError(ValueError):
    pass


def write_atomic(path: Path, data: bytes, mode: int = 0o644, owner: int | None = None) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, mode)
    if owner is not None:
        os.chown(tmp, owner, owner)
    os.replace(tmp, path)


def validate(config: dict) -> dict:
    """Reject a config the proxy cannot apply, with a message that says which part is wrong."""
    if config.get("kind") not in ("sidecar", "router"):
        raise ConfigError(f"kind must be sidecar or router, not {config.get('kind')!r}")
    inbound = config.setdefault("inbound", {"default": "PERMISSIVE", "ports": {}})
    for port, mode in [("default", inbound.get("default"))] + list(inbound.get("ports", {}).items()):
        if mode not in MODES:
            raise ConfigError(f"inbound mode for {port} must be one of {MODES}, not {mode!r}")
    names = set()
    for cluster in config.setdefault("clusters", []):
        if cluster.get("tls") not in ("ISTIO_MUTUAL", "DISABLE", "AUTO"):
            raise ConfigError(f"cluster {cluster.get('name')!r}: tls must be ISTIO_MUTUAL, DISABLE or AUTO")
        names.add(cluster["name"])
    for vip, name in config.setdefault("vips", {}).items():
        if name not in names:
            raise ConfigError(f"vip {vip} points at unknown cluster {name!r}")
    for route in config.get("gateway", {}).get("routes", []):
        if route.get("cluster") not in names:
            raise ConfigError(f"gateway route points at unknown cluster {route.get('cluster')!r}")
    return config


class ConfigWatcher:
    """Remembers the files' mtimes; ``changed()`` is true when istiod has written something new."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._stamp = None

    def _current(self):
        stamps = []
        for name in WATCHED:
            try:
                stamps.append((self.folder / name).stat().st_mtime_ns)
            except FileNotFoundError:
                return None
        return tuple(stamps)

    def changed(self) -> bool:
        current = self._current()
        return current is not None and current != self._stamp

    def skip_current(self) -> None:
        """Remember the files as seen, so a rejected config is not retried until istiod writes again."""
        self._stamp = self._current()

    def load(self) -> dict:
        stamp = self._current()
        config = validate(json.loads((self.folder / CONFIG_FILE).read_text()))
        self._stamp = stamp
        return config

    def acknowledge(self, config: dict) -> None:
        line = f"{config.get('version', '')} {config.get('pushed_at', 0)} {time.time():.6f}\n"
        write_atomic(self.folder / LOADED_FILE, line.encode())

    def paths(self) -> tuple[str, str, str]:
        return str(self.folder / CERT_FILE), str(self.folder / KEY_FILE), str(self.folder / ROOT_FILE)
