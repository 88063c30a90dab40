"""The istiod emulation: pushes proxy config + workload certs, serves and registers the injection webhook."""
import base64
import json
import logging
import os
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

from meshlab_lab.mesh import ca as ca_mod, injector, proxy_config, pushgen
from meshlab_lab.mesh.snapshot import Snapshot

LOG = logging.getLogger("meshlab.istiod")
WEBHOOK_HOST, WEBHOOK_PORT = "127.0.0.1", 15017
OWNER_LABEL = "meshlab.io/managed-by"
OWNER_VALUE = "meshlab-istiod-emulation"
MEMBER_LABEL = "maistra.io/member-of"


def webhook_name(smcp: dict) -> str:
    return f"istio-sidecar-injector-{smcp['metadata']['name']}-{smcp['metadata']['namespace']}"


class Istiod:
    def __init__(self, api_client, snap: Snapshot, state_dir: Path, cert_ttl=ca_mod.WORKLOAD_CERT_TTL,
                 webhook_port: int = WEBHOOK_PORT):
        self.api = api_client
        self.webhook_port = webhook_port
        self.snap = snap
        self.pods_dir = state_dir / "pods"
        self.mesh_ca = ca_mod.CertificateAuthority.load_or_create(state_dir / "pki" / "mesh", "mesh-root",
                                                                  "meshlab mesh root CA")
        self.cert_ttl = cert_ttl
        self._pushed: dict[str, str] = {}   # pod uid -> last config body
        self._cert_expiry: dict[str, object] = {}
        self._counter = 0
        self.webhook_server = None

    # ------------------------------------------------------------- config push
    def _proxy_folder(self, pod: dict) -> Path | None:
        meta = pod["metadata"]
        pod_dir = self.pods_dir / f"{meta['namespace']}_{meta['name']}"
        return pod_dir / "istio-proxy" if pod_dir.is_dir() else None

    @staticmethod
    def _proxy_uid(pod: dict) -> int:
        for container in pod["spec"].get("containers") or []:
            if pushgen.proxy_kind({"spec": {"containers": [container]}}):
                uid = ((container.get("securityContext") or {}).get("runAsUser")
                       or (pod["spec"].get("securityContext") or {}).get("runAsUser"))
                return int(uid) if uid is not None else injector.PROXY_UID
        return injector.PROXY_UID

    def push(self, since: float | None) -> int:
        """Write config/certs for every proxy whose view changed; returns how many proxies got a new version."""
        pushed, live = 0, set()
        for smcp in self.snap.list("smcps"):
            view = pushgen.MeshView(self.snap, smcp)
            for pod in self.snap.list("pods"):
                meta, status = pod["metadata"], pod.get("status") or {}
                if meta["namespace"] not in view.members or not pushgen.proxy_kind(pod) or not status.get("podIP"):
                    continue
                if status.get("phase") in ("Succeeded", "Failed") or meta.get("deletionTimestamp"):
                    continue
                folder = self._proxy_folder(pod)
                if folder is None:
                    continue
                live.add(meta["uid"])
                try:
                    pushed += self._push_pod(view, pod, folder, since)
                except (OSError, ValueError) as exc:
                    LOG.error("push to %s/%s failed: %s", meta["namespace"], meta["name"], exc)
        for uid in set(self._pushed) - live:
            self._pushed.pop(uid, None)
            self._cert_expiry.pop(uid, None)
        return pushed

    def _push_pod(self, view, pod, folder: Path, since) -> int:
        meta = pod["metadata"]
        uid = self._proxy_uid(pod)
        if not folder.is_dir():
            folder.mkdir()
            os.chown(folder, uid, uid)
        rotate = meta["uid"] not in self._cert_expiry or ca_mod.needs_rotation(self._cert_expiry[meta["uid"]],
                                                                               self.cert_ttl)
        self._counter += 1
        version = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + f"/{self._counter}"
        if rotate:
            issued = self.mesh_ca.issue_workload(meta["namespace"], pod["spec"].get("serviceAccountName") or "default",
                                                 ttl=self.cert_ttl)
            proxy_config.write_secrets(folder, issued.cert_pem, issued.key_pem, self.mesh_ca.cert_pem, version, uid)
            self._cert_expiry[meta["uid"]] = issued.not_after
        body = pushgen.proxy_config(view, pod)
        encoded = json.dumps(body, sort_keys=True)
        if self._pushed.get(meta["uid"]) == encoded:
            return int(rotate)  # a new certificate alone is a push too (SDS)
        proxy_config.write_config(folder, json.loads(encoded), version)
        self._pushed[meta["uid"]] = encoded
        LOG.info("pushed %s to %s/%s (%.1f ms after the API event)", version, meta["namespace"], meta["name"],
                 (time.time() - since) * 1000 if since else 0.0)
        return 1

    # ------------------------------------------------------------- injection webhook
    def proxy_image(self, root_ns: str) -> str:
        for pod in self.snap.list("pods"):
            if pod["metadata"]["namespace"] == root_ns and pushgen.proxy_kind(pod) == "router":
                return pod["spec"]["containers"][0]["image"]
        return injector.DEFAULT_PROXY_IMAGE

    def start_webhook(self) -> None:
        serving = self.mesh_ca.issue(dns_names=["istiod.lab.local"], ips=[WEBHOOK_HOST],
                                     ttl=ca_mod.datetime.timedelta(days=30), client=False)
        folder = self.pods_dir.parent / "pki" / "mesh"
        (folder / "webhook.crt").write_bytes(serving.cert_pem)
        (folder / "webhook.key").write_bytes(serving.key_pem)
        (folder / "webhook.key").chmod(0o600)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(folder / "webhook.crt", folder / "webhook.key")
        istiod = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server naming
                # /inject/<control plane namespace>/<SMCP name> (webhook URLs may not carry a query)
                parts = urlparse(self.path).path.strip("/").split("/")
                try:
                    if len(parts) != 3 or parts[0] != "inject":
                        raise ValueError(f"unknown webhook path {self.path}")
                    length = int(self.headers.get("Content-Length", "0"))
                    review = json.loads(self.rfile.read(length))
                    cp_ns = parts[1]
                    answer = injector.review_response(review, image=istiod.proxy_image(cp_ns),
                                                      revision=parts[2], cp_namespace=cp_ns)
                    data, code = json.dumps(answer).encode(), 200
                except (ValueError, KeyError) as exc:
                    data, code = json.dumps({"error": str(exc)}).encode(), 400
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, fmt, *args):
                LOG.debug("webhook: " + fmt, *args)

        server = ThreadingHTTPServer((WEBHOOK_HOST, self.webhook_port), Handler)
        self.webhook_port = server.server_address[1]
        server.socket = context.wrap_socket(server.socket, server_side=True)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="webhook", daemon=True).start()
        self.webhook_server = server

    def webhook_config(self, smcp: dict) -> dict:
        ns, name = smcp["metadata"]["namespace"], smcp["metadata"]["name"]
        return {
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": webhook_name(smcp), "labels": {OWNER_LABEL: OWNER_VALUE, "app": "sidecar-injector",
                                                                 "maistra-version": "2.4",
                                                                 "maistra.io/owner": ns}},
            "webhooks": [{
                "name": "sidecar-injector.istio.io",
                "admissionReviewVersions": ["v1", "v1beta1"],
                "clientConfig": {"url": f"https://{WEBHOOK_HOST}:{self.webhook_port}/inject/{ns}/{name}",
                                 "caBundle": base64.b64encode(self.mesh_ca.cert_pem).decode()},
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                           "resources": ["pods"]}],
                "failurePolicy": "Fail", "sideEffects": "None", "reinvocationPolicy": "Never",
                "timeoutSeconds": 10, "matchPolicy": "Equivalent",
                "namespaceSelector": {"matchLabels": {MEMBER_LABEL: ns}},
                "objectSelector": {"matchExpressions": [{"key": injector.INJECT_KEY, "operator": "NotIn",
                                                         "values": ["false"]}]}}]}

    def sync_webhooks(self) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        api = client.AdmissionregistrationV1Api(self.api)
        wanted = {webhook_name(s): self.webhook_config(s) for s in self.snap.list("smcps")}
        existing = {m.metadata.name: m for m in api.list_mutating_webhook_configuration(
            label_selector=f"{OWNER_LABEL}={OWNER_VALUE}").items}
        for name, body in wanted.items():
            try:
                if name in existing:
                    current = self.api.sanitize_for_serialization(existing[name])
                    if current["webhooks"][0]["clientConfig"] != body["webhooks"][0]["clientConfig"]:
                        api.patch_mutating_webhook_configuration(name, body)
                else:
                    api.create_mutating_webhook_configuration(body)
                    LOG.info("created MutatingWebhookConfiguration %s", name)
            except ApiException as exc:
                LOG.error("webhook configuration %s: %s %s", name, exc.reason, exc.body)
        for name in set(existing) - set(wanted):
            try:
                api.delete_mutating_webhook_configuration(name)
                LOG.info("deleted MutatingWebhookConfiguration %s (its SMCP is gone)", name)
            except ApiException as exc:
                LOG.error("delete webhook configuration %s: %s", name, exc.reason)
