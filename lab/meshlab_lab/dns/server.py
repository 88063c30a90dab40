"""Cluster DNS for the lab on 198.19.0.10:53 and 198.18.0.1:53 (UDP and TCP), fed by a watch on Services."""
import argparse
import asyncio
import json
import logging
import struct
import threading

from kubernetes import client, watch

from meshlab_lab import addresses as A
from meshlab_lab.dns.message import CLASS_IN, RCODE_NXDOMAIN, TYPE_A, DnsFormatError, build_response, parse_question
from meshlab_lab.k8s import api_client

log = logging.getLogger("meshlab.dns")
ZONE = f"svc.{A.CLUSTER_DOMAIN}"


class Records:
    """``<svc>.<ns>.svc.cluster.local`` -> [ClusterIP] (headless: the ready endpoint addresses)."""

    def __init__(self):
        self._services: dict = {}
        self._endpoints: dict = {}
        self._lock = threading.Lock()

    def lookup(self, name: str) -> list[str] | None:
        if not name.endswith("." + ZONE):
            return None
        parts = name[: -len(ZONE) - 1].split(".")
        if len(parts) != 2:
            return None
        key = (parts[1], parts[0])
        with self._lock:
            ip = self._services.get(key)
            if ip is None:
                return None
            return [ip] if ip != "None" else list(self._endpoints.get(key, []))

    def set_service(self, kind: str, svc: dict) -> None:
        key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
        with self._lock:
            if kind == "DELETED":
                self._services.pop(key, None)
            elif svc["spec"].get("clusterIP"):
                self._services[key] = svc["spec"]["clusterIP"]

    def set_endpoints(self, kind: str, ep: dict) -> None:
        key = (ep["metadata"]["namespace"], ep["metadata"]["name"])
        ips = [a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []]
        with self._lock:
            if kind == "DELETED":
                self._endpoints.pop(key, None)
            else:
                self._endpoints[key] = ips


def _follow(list_fn, apply, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            listing = json.loads(list_fn(_preload_content=False).data)
            for item in listing["items"]:
                apply("ADDED", item)
            for event in watch.Watch().stream(list_fn, resource_version=listing["metadata"]["resourceVersion"],
                                              timeout_seconds=300):
                if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    apply(event["type"], event["raw_object"])
        except Exception:  # noqa: BLE001 - relist after any failure
            log.exception("watch failed; relisting")
            stop.wait(1)


def answer(records: Records, query: bytes) -> bytes:
    try:
        _ident, _flags, name, qtype, qclass, _end = parse_question(query)
    except DnsFormatError:
        return build_response(query, 0, [])
    ips = records.lookup(name)
    if ips is None:
        return build_response(query, RCODE_NXDOMAIN, [])
    return build_response(query, 0, ips if qtype == TYPE_A and qclass == CLASS_IN else [])


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, records):
        self.records = records

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(answer(self.records, data), addr)


async def _tcp_client(records, reader, writer):
    try:
        while True:
            head = await reader.readexactly(2)
            query = await reader.readexactly(struct.unpack("!H", head)[0])
            reply = answer(records, query)
            writer.write(struct.pack("!H", len(reply)) + reply)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(records: Records, hosts: list[str], port: int, ready_file: str | None) -> None:
    loop = asyncio.get_running_loop()
    for host in hosts:
        await loop.create_datagram_endpoint(lambda: _Udp(records), local_addr=(host, port))
        await asyncio.start_server(lambda r, w: _tcp_client(records, r, w), host, port)
    if ready_file:
        open(ready_file, "w").close()
    await asyncio.Event().wait()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="meshlab_lab.dns")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--listen", action="append", default=None)
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--ready-file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    core = client.CoreV1Api(api_client(args.kubeconfig))
    records, stop = Records(), threading.Event()
    threading.Thread(target=_follow, args=(core.list_service_for_all_namespaces, records.set_service, stop),
                     daemon=True).start()
    threading.Thread(target=_follow, args=(core.list_endpoints_for_all_namespaces, records.set_endpoints, stop),
                     daemon=True).start()
    asyncio.run(serve(records, args.listen or [A.DNS_SERVICE_IP, A.HOST_LAB_IP], args.port, args.ready_file))


if __name__ == "__main__":
    main()
