"""Network-namespace helpers: name of a pod's namespace and running commands inside it.

Stable API for neighbours: ``pod_netns_name(namespace, pod)``, ``netns_exists(name)``,
``netns_argv(namespace, pod, argv, uid=None, gid=None)`` and ``exec_in_pod(namespace, pod, argv, ...)``.
hostNetwork pods have no namespace of their own; for them the commands run in the host namespace.
"""
import hashlib
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence

NETNS_PREFIX = "mlab_"
_MAX_NAME = 200
IP = shutil.which("ip", path="/usr/sbin:/usr/bin:/sbin:/bin") or "ip"
SETPRIV = shutil.which("setpriv", path="/usr/sbin:/usr/bin:/sbin:/bin") or "setpriv"


def pod_netns_name(namespace: str, pod: str) -> str:
    """The `ip netns` name of a pod: ``mlab_<namespace>_<pod>`` (``_`` never occurs in Kubernetes names)."""
    name = f"{NETNS_PREFIX}{namespace}_{pod}"
    if len(name) > _MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = name[: _MAX_NAME - 13] + "_" + digest
    return name


def netns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


def uid_argv(uid: int | None, gid: int | None = None) -> list:
    """argv prefix that drops to ``uid``/``gid`` (no prefix for root or None)."""
    if uid is None or uid == 0:
        return []
    group = uid if gid is None else gid
    return [SETPRIV, f"--reuid={uid}", f"--regid={group}", "--clear-groups", "--"]


def netns_argv(namespace: str, pod: str, argv: Sequence[str], uid: int | None = None,
               gid: int | None = None) -> list:
    """argv that runs ``argv`` in the pod's network namespace (host namespace if it has none) as ``uid``."""
    name = pod_netns_name(namespace, pod)
    prefix = [IP, "netns", "exec", name] if netns_exists(name) else []
    return prefix + uid_argv(uid, gid) + list(argv)


def exec_in_pod(namespace: str, pod: str, argv: Sequence[str], *, uid: int | None = None,
                env: Mapping[str, str] | None = None, input: bytes | None = None,
                timeout: float | None = 60, check: bool = False) -> subprocess.CompletedProcess:
    """Run ``argv`` inside the pod's network namespace and return the completed process (bytes output)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(netns_argv(namespace, pod, argv, uid=uid), input=input, capture_output=True,
                          env=full_env, timeout=timeout, check=check)
