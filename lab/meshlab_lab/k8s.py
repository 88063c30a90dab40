"""Small Kubernetes helpers shared by the lab parts (node, addons, tests).

Stable API for neighbours: ``api_client(kubeconfig=None)`` and ``wait_for(predicate, timeout, what)``.
"""
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from meshlab_lab import paths

T = TypeVar("T")


def api_client(kubeconfig: str | None = None):
    """Return a ``kubernetes.client.ApiClient`` for the lab's admin kubeconfig (or the one given)."""
    from kubernetes import config

    path = Path(kubeconfig) if kubeconfig else paths.kubeconfig_path()
    if not path.is_file():
        raise FileNotFoundError(f"kubeconfig {path} not found: is the lab up? (meshlab_lab up)")
    return config.new_client_from_config(config_file=str(path))


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.2,
             fatal: tuple = ()) -> T:
    """Poll ``predicate`` until it returns something truthy; return that value.

    Exceptions raised by the predicate count as "not yet" (the last one is reported on timeout),
    except those of the types in ``fatal``, which are raised at once.
    Raises ``TimeoutError`` naming ``what`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except fatal:
            raise
        except Exception as exc:  # noqa: BLE001 - retried until the deadline, then reported
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}{detail}")
        time.sleep(interval)
