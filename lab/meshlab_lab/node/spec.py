"""Reading a pod spec the way a kubelet does: environment, $(VAR) expansion, user id, QoS class."""
import re

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand_vars(value: str, env: dict) -> str:
    """Kubernetes ``$(VAR)`` expansion: known variables are replaced, ``$$`` escapes, unknown ones stay."""
    def repl(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _VAR.sub(repl, value)


def _field_ref(pod: dict, path: str) -> str:
    meta, status, spec = pod["metadata"], pod.get("status") or {}, pod["spec"]
    simple = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
              "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
              "spec.serviceAccountName": spec.get("serviceAccountName"), "status.hostIP": status.get("hostIP"),
              "status.podIP": status.get("podIP")}
    if path in simple:
        return simple[path] or ""
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    raise ValueError(f"unsupported fieldRef {path!r}")


def resolve_env(pod: dict, container: dict, read_key=None) -> dict:
    """The container's env from its spec; ``read_key(kind, name, key)`` resolves secret/configMap refs."""
    env: dict = {}
    for src in container.get("envFrom") or []:
        for kind in ("configMapRef", "secretRef"):
            if src.get(kind) and read_key:
                for k, v in read_key(kind, src[kind]["name"], None).items():
                    env[(src.get("prefix") or "") + k] = v
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = expand_vars(item.get("value") or "", env)
        elif item.get("valueFrom", {}).get("fieldRef"):
            env[item["name"]] = _field_ref(pod, item["valueFrom"]["fieldRef"]["fieldPath"])
        elif item.get("valueFrom", {}).get("resourceFieldRef"):
            env[item["name"]] = "0"
        else:
            for kind in ("configMapKeyRef", "secretKeyRef"):
                ref = item.get("valueFrom", {}).get(kind)
                if ref and read_key:
                    value = read_key(kind, ref["name"], ref["key"])
                    if value is not None:
                        env[item["name"]] = value
    return env


def run_as_user(pod: dict, container: dict, default: int | None) -> int | None:
    for ctx in (container.get("securityContext") or {}, pod["spec"].get("securityContext") or {}):
        if ctx.get("runAsUser") is not None:
            return int(ctx["runAsUser"])
    return default


def run_as_group(pod: dict, container: dict) -> int | None:
    for ctx in (container.get("securityContext") or {}, pod["spec"].get("securityContext") or {}):
        if ctx.get("runAsGroup") is not None:
            return int(ctx["runAsGroup"])
    return None


def qos_class(pod: dict) -> str:
    containers = pod["spec"].get("containers", []) + (pod["spec"].get("initContainers") or [])
    any_set, guaranteed = False, True
    for c in containers:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        if limits or requests:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in limits or requests.get(r, limits[r]) != limits[r]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def container_port(container: dict, port) -> int:
    """Resolve a probe port (number or named container port)."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"container {container['name']}: no port named {port!r}")
