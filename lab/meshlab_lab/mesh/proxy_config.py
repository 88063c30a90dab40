"""The file contract between the istiod emulation and a proxy: Envoy xDS files in the proxy's folder.

istiod writes, atomically (temp file + rename, which Envoy's file watch sees), into
``$MESHLAB_POD_DIR/istio-proxy`` (owned by the proxy's uid):

- ``lds.json``, ``cds.json``: DiscoveryResponses (``version_info`` + resources) built by xds.py from the
  proxy's intent (pushgen.py's dict, checked by ``validate`` first);
- ``secret-default.json``, ``secret-rootca.json``: the SDS secrets ``default`` (workload cert, SPIFFE URI
  SAN, key) and ``ROOTCA`` (mesh root), mode 0600;
- ``intent.json``: the intent itself, for people debugging the lab (Envoy never reads it).

pilot-agent renders the bootstrap next to them (``envoy-rev.json``) and Envoy writes ``telemetry.log`` there.
"""
import json
import os
from pathlib import Path

from meshlab_lab.mesh import xds

INTENT_FILE = "intent.json"
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


def write_secrets(folder: Path, cert_pem: bytes, key_pem: bytes, root_pem: bytes, version: str, owner: int) -> None:
    for name, secret in xds.secrets(cert_pem, key_pem, root_pem).items():
        body = json.dumps(xds.discovery_response(version, [secret])).encode()
        write_atomic(folder / xds.SECRET_FILES[name], body, 0o600, owner=owner)


def write_config(folder: Path, config: dict, version: str) -> None:
    """Validate the intent, then write CDS before LDS (listeners name clusters), as an xDS server orders them."""
    validate(config)
    built = xds.resources(config, str(folder))
    write_atomic(folder / INTENT_FILE, json.dumps(config, indent=1, sort_keys=True).encode())
    for name in (xds.CDS_FILE, xds.LDS_FILE):
        write_atomic(folder / name, json.dumps(xds.discovery_response(version, built[name])).encode())
