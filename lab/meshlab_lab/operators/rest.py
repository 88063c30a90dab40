"""A small JSON-over-REST client for the emulated operators: plain dicts in, plain dicts out.

It rides on a ``kubernetes.client.ApiClient`` (TLS, auth from the kubeconfig) but talks to URL paths
directly, so custom resources whose CRDs appear at run time need no discovery.
"""
import json
import logging
import threading
import time
from urllib.parse import urlencode

LOG = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, body: dict | str, what: str):
        self.status = status
        self.body = body
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{what}: HTTP {status}: {message}")


def path(api_version: str, plural: str, namespace: str | None = None, name: str | None = None) -> str:
    """URL path of a collection or object: ``path("v1", "pods", "ns", "p")``, ``path("apps/v1", ...)``."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    return f"{base}/{name}" if name else base


class Rest:
    def __init__(self, api_client):
        self.api_client = api_client
        self.host = api_client.configuration.host.rstrip("/")

    def _headers(self, content_type="application/json"):
        headers = {"Accept": "application/json", "Content-Type": content_type}
        self.api_client.update_params_for_auth(headers, [], ["BearerToken"], None, None, None)
        return headers

    def raw(self, method: str, url_path: str, body=None, query=None, content_type="application/json", timeout=30):
        url = self.host + url_path + (f"?{urlencode(query)}" if query else "")
        # the REST client JSON-encodes dict bodies itself for any */*json content type
        return self.api_client.rest_client.request(method, url, headers=self._headers(content_type), body=body,
                                                   _request_timeout=timeout)

    def call(self, method: str, url_path: str, body=None, query=None, content_type="application/json"):
        resp = self.raw(method, url_path, body, query, content_type)
        text = (resp.read() or b"").decode()
        try:
            payload = json.loads(text) if text else {}
        except ValueError:
            payload = text
        if resp.status >= 400:
            raise ApiError(resp.status, payload, f"{method} {url_path}")
        return payload

    def get(self, url_path: str) -> dict | None:
        try:
            return self.call("GET", url_path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, url_path: str, **query) -> dict:
        return self.call("GET", url_path, query=query or None)

    def create(self, url_path: str, body: dict) -> dict:
        return self.call("POST", url_path, body)

    def ensure(self, url_path: str, body: dict) -> dict:
        """Create ``body`` in collection ``url_path`` unless an object of that name exists; return it."""
        existing = self.get(f"{url_path}/{body['metadata']['name']}")
        if existing is not None:
            return existing
        try:
            return self.create(url_path, body)
        except ApiError as exc:
            if exc.status != 409:
                raise
            return self.get(f"{url_path}/{body['metadata']['name']}")

    def merge_patch(self, url_path: str, patch: dict) -> dict:
        return self.call("PATCH", url_path, patch, content_type="application/merge-patch+json")

    def delete(self, url_path: str) -> bool:
        """Delete (background propagation); False if it was already gone."""
        try:
            self.call("DELETE", url_path, {"kind": "DeleteOptions", "apiVersion": "v1",
                                           "propagationPolicy": "Background"})
            return True
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise

    def watch(self, url_path: str, on_event, stop: threading.Event, timeout_seconds: int = 30,
              label_selector: str | None = None):
        """List then watch ``url_path`` until ``stop`` is set, calling ``on_event(type, obj)``.

        The initial list is replayed as ``ADDED``. A 410 Gone (expired resourceVersion) or a broken
        stream restarts from a fresh list; objects that vanished meanwhile are reported as ``DELETED``
        (as client-go informers do), so no change is lost for good, even across an API server restart.
        """
        known: dict[str, dict] = {}

        def track(kind, obj):
            meta = obj["metadata"]
            key = f"{meta.get('namespace', '')}/{meta['name']}"
            if kind == "DELETED":
                known.pop(key, None)
            else:
                known[key] = obj
            on_event(kind, obj)

        failures = 0
        while not stop.is_set():
            try:
                listing = self.list(url_path, **({"labelSelector": label_selector} if label_selector else {}))
                items = listing.get("items", [])
                present = {f"{i['metadata'].get('namespace', '')}/{i['metadata']['name']}" for i in items}
                for key in [k for k in known if k not in present]:
                    track("DELETED", known[key])
                for item in items:
                    track("ADDED", item)
                failures = 0
                version = listing["metadata"]["resourceVersion"]
                while not stop.is_set():
                    version = self._stream(url_path, version, track, stop, timeout_seconds, label_selector)
                    if version is None:
                        break  # expired: re-list
            except Exception as exc:  # noqa: BLE001 - keep the controller alive; the API server may restart
                if stop.is_set():
                    return
                failures += 1
                if failures == 1 or failures % 30 == 0:
                    LOG.warning("watch %s failed (%s); re-listing", url_path, exc)
                stop.wait(min(0.5 * 2 ** min(failures, 6), 15.0))  # bounded back-off while the server is away

    def _stream(self, url_path, version, on_event, stop, timeout_seconds, label_selector):
        """Follow one watch request; return the last resourceVersion, or None when it expired (410)."""
        query = {"watch": "true", "resourceVersion": version, "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(timeout_seconds)}
        if label_selector:
            query["labelSelector"] = label_selector
        resp = self.raw("GET", url_path, query=query, timeout=timeout_seconds + 10)
        if resp.status == 410:
            return None
        if resp.status >= 400:
            raise ApiError(resp.status, resp.read().decode(), f"watch {url_path}")
        try:
            for line in resp.response:
                if stop.is_set():
                    break
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        return None
                    raise ApiError(obj.get("code", 500), obj, f"watch {url_path}")
                version = obj["metadata"]["resourceVersion"]
                if kind != "BOOKMARK":
                    on_event(kind, obj)
        finally:
            resp.response.release_conn()
        return version


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
