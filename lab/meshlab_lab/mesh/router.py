"""The lab's OpenShift router: admits Routes (host ``<name>-<namespace>.apps.lab.local``) and serves them.

HTTPS with edge termination on 127.0.0.1:8443 using a ``*.apps.lab.local`` cert from the lab router CA
(``<state>/pki/router-ca.crt``); the request is forwarded as plain HTTP to an endpoint of the Route's
``spec.to`` Service on ``spec.port.targetPort``. Only edge termination is emulated; one request per
connection is routed (the rest of the connection follows the first request's backend).
"""
import asyncio
import itertools
import logging
import ssl
from pathlib import Path

from meshlab_lab.mesh import ca as ca_mod, netio
from meshlab_lab.mesh.upstream import simple_response

LOG = logging.getLogger("meshlab.router")
DOMAIN = "apps.lab.local"
LISTEN = ("127.0.0.1", 8443)
UNAVAILABLE = (b"<html><head><title>Application is not available</title></head><body><h1>Application is not "
               b"available</h1><p>The application is currently not serving requests at this endpoint. It may not "
               b"have been started or is still starting.</p></body></html>")
_rr = itertools.count()


def route_host(route: dict) -> str:
    meta = route["metadata"]
    return f"{meta['name']}-{meta['namespace']}.{DOMAIN}"


def admitted(route: dict) -> bool:
    host = (route.get("spec") or {}).get("host")
    for ingress in (route.get("status") or {}).get("ingress") or []:
        if ingress.get("host") == host and any(c.get("type") == "Admitted" and c.get("status") == "True"
                                                for c in ingress.get("conditions") or []):
            return True
    return False


def admit_routes(api_client, snap) -> None:
    """Give hostless Routes their default host and mark every Route admitted, as OpenShift's router does."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(api_client)
    for route in snap.list("routes"):
        meta = route["metadata"]
        spec = route.get("spec") or {}
        try:
            if not spec.get("host"):
                api.patch_namespaced_custom_object("route.openshift.io", "v1", meta["namespace"], "routes",
                                                   meta["name"], {"spec": {"host": route_host(route)}})
                LOG.info("route %s/%s gets host %s", meta["namespace"], meta["name"], route_host(route))
                continue  # the watch brings the updated object; admit it then
            if not admitted(route):
                status = {"status": {"ingress": [{
                    "host": spec["host"], "routerName": "default", "wildcardPolicy": "None",
                    "routerCanonicalHostname": f"router-default.{DOMAIN}",
                    "conditions": [{"type": "Admitted", "status": "True"}]}]}}
                api.patch_namespaced_custom_object_status("route.openshift.io", "v1", meta["namespace"], "routes",
                                                          meta["name"], status)
        except ApiException as exc:
            LOG.error("route %s/%s: %s", meta["namespace"], meta["name"], exc.reason)


def backend_for(snap, host: str, path: str) -> tuple[str, int] | None:
    """An (ip, port) endpoint of the Route serving ``host`` + ``path``; None when nothing serves it."""
    host = host.split(":", 1)[0].lower()
    candidates = [r for r in snap.list("routes") if (r.get("spec") or {}).get("host", "").lower() == host
                  and path.startswith((r.get("spec") or {}).get("path") or "/")]
    candidates.sort(key=lambda r: len((r.get("spec") or {}).get("path") or ""), reverse=True)
    for route in candidates:
        ns, spec = route["metadata"]["namespace"], route["spec"]
        service = snap.get("services", ns, (spec.get("to") or {}).get("name", ""))
        endpoints = snap.get("endpoints", ns, (spec.get("to") or {}).get("name", ""))
        if not service or not endpoints:
            continue
        target = (spec.get("port") or {}).get("targetPort")
        svc_port = next((p for p in service["spec"].get("ports") or []
                         if target is None or p.get("name") == target or p.get("targetPort") == target
                         or p.get("port") == target), None)
        choices = []
        for subset in endpoints.get("subsets") or []:
            ports = subset.get("ports") or []
            port = next((p for p in ports if svc_port and p.get("name") == svc_port.get("name")), None)
            if port is None and isinstance(target, int):
                port = next((p for p in ports if p.get("port") == target), None)
            if port is None and len(ports) == 1:
                port = ports[0]
            if port:
                choices += [(a["ip"], port["port"]) for a in subset.get("addresses") or []]
        if choices:
            return choices[next(_rr) % len(choices)]
    return None


class Router:
    def __init__(self, snap, pki_dir: Path):
        self.snap = snap
        self.ca = ca_mod.CertificateAuthority.load_or_create(pki_dir, "router-ca", "meshlab router CA")
        issued = self.ca.issue(dns_names=[f"*.{DOMAIN}", DOMAIN], ttl=ca_mod.datetime.timedelta(days=90),
                               client=False)
        (pki_dir / "router-wildcard.crt").write_bytes(issued.cert_pem + self.ca.cert_pem)
        (pki_dir / "router-wildcard.key").write_bytes(issued.key_pem)
        (pki_dir / "router-wildcard.key").chmod(0o600)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki_dir / "router-wildcard.crt", pki_dir / "router-wildcard.key")
        self.context.set_alpn_protocols(["http/1.1"])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await netio.read_http_head(reader, 30)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError,
                ssl.SSLError):
            await netio.close_quietly(writer)
            return
        _method, target, headers = netio.parse_request_head(head)
        backend = backend_for(self.snap, headers.get("host", ""), target)
        if backend is None:
            writer.write(simple_response("503 Service Unavailable", UNAVAILABLE, "text/html"))
            await netio.close_quietly(writer)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*backend), 10)
        except (OSError, asyncio.TimeoutError):
            writer.write(simple_response("503 Service Unavailable", UNAVAILABLE, "text/html"))
            await netio.close_quietly(writer)
            return
        up_writer.write(head)
        await asyncio.gather(netio.pipe(reader, up_writer), netio.pipe(up_reader, writer))
        await netio.close_quietly(up_writer)
        await netio.close_quietly(writer)

    async def serve(self, host=LISTEN[0], port=LISTEN[1]):
        return await asyncio.start_server(self.handle, host, port, ssl=self.context, limit=netio.MAX_HEAD)
