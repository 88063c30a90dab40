"""List + watch loops that keep a Snapshot current and tell the pusher when something changed.

Custom resources whose CRD is not installed yet (Istio's appear when OLM installs the operator) are
retried until they exist.
"""
import logging
import threading
import time

LOG = logging.getLogger("meshlab.istiod.watch")

CUSTOM = {  # kind -> (group, version, plural)
    "peerauthentications": ("security.istio.io", "v1beta1", "peerauthentications"),
    "destinationrules": ("networking.istio.io", "v1alpha3", "destinationrules"),
    "gateways": ("networking.istio.io", "v1alpha3", "gateways"),
    "virtualservices": ("networking.istio.io", "v1alpha3", "virtualservices"),
    "smcps": ("maistra.io", "v2", "servicemeshcontrolplanes"),
    "smmrs": ("maistra.io", "v1", "servicemeshmemberrolls"),
    "routes": ("route.openshift.io", "v1", "routes"),
}
CORE = {"pods": "list_pod_for_all_namespaces", "services": "list_service_for_all_namespaces",
        "endpoints": "list_endpoints_for_all_namespaces", "namespaces": "list_namespace"}


class Changes:
    """A wake-up flag that remembers when the earliest unprocessed API event arrived."""

    def __init__(self):
        self._cond = threading.Condition()
        self._since: float | None = None

    def mark(self) -> None:
        with self._cond:
            if self._since is None:
                self._since = time.time()
            self._cond.notify_all()

    def wait(self, timeout: float) -> float | None:
        """Wait (bounded) for a change; return the time of the first change since the last call, or None."""
        with self._cond:
            if self._since is None:
                self._cond.wait(timeout)
            since, self._since = self._since, None
            return since


def _lister(api_client, kind: str):
    from kubernetes import client

    if kind in CORE:
        core = client.CoreV1Api(api_client)
        method = getattr(core, CORE[kind])

        def list_core(**kw):
            return method(**kw)
        return list_core, True
    group, version, plural = CUSTOM[kind]
    custom = client.CustomObjectsApi(api_client)

    def list_custom(**kw):
        return custom.list_cluster_custom_object(group, version, plural, **kw)
    return list_custom, False


def watch_forever(api_client, kind: str, snap, changes: Changes, stop: threading.Event) -> None:
    from kubernetes import watch
    from kubernetes.client.exceptions import ApiException

    lister, typed = _lister(api_client, kind)
    as_dict = api_client.sanitize_for_serialization if typed else (lambda o: o)
    missing_logged = False
    while not stop.is_set():
        try:
            listed = as_dict(lister())
            snap.replace(kind, listed.get("items") or [])
            changes.mark()
            version = listed["metadata"].get("resourceVersion")
            stream = watch.Watch().stream(lister, resource_version=version, timeout_seconds=55)
            for event in stream:
                if stop.is_set():
                    return
                if event["type"] == "ERROR":
                    break
                snap.apply(kind, event["type"], as_dict(event["object"]))
                changes.mark()
        except ApiException as exc:
            if exc.status == 404:
                if not missing_logged:
                    LOG.info("%s: API not served yet, waiting for its CRD", kind)
                    missing_logged = True
                stop.wait(2)
            else:
                LOG.warning("%s: watch failed (%s), relisting", kind, exc.status)
                stop.wait(1)
        except Exception as exc:  # noqa: BLE001 - network blips: relist after a pause
            LOG.warning("%s: watch error %r, relisting", kind, exc)
            stop.wait(1)


def start_watchers(api_client, snap, changes, stop) -> list[threading.Thread]:
    threads = []
    for kind in list(CORE) + list(CUSTOM):
        thread = threading.Thread(target=watch_forever, args=(api_client, kind, snap, changes, stop),
                                  name=f"watch-{kind}", daemon=True)
        thread.start()
        threads.append(thread)
    return threads
