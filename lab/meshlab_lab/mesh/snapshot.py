"""What istiod knows about the cluster: the latest copy of every watched object, by kind."""
import threading
from dataclasses import dataclass, field

KINDS = ("pods", "services", "endpoints", "namespaces", "peerauthentications", "destinationrules", "gateways",
         "virtualservices", "smcps", "smmrs", "routes")


@dataclass
class Snapshot:
    objects: dict = field(default_factory=lambda: {kind: {} for kind in KINDS})
    lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def key(obj: dict) -> tuple:
        meta = obj.get("metadata", {})
        return meta.get("namespace", ""), meta.get("name", "")

    def replace(self, kind: str, items: list[dict]) -> None:
        with self.lock:
            self.objects[kind] = {self.key(o): o for o in items}

    def apply(self, kind: str, event_type: str, obj: dict) -> None:
        with self.lock:
            if event_type == "DELETED":
                self.objects[kind].pop(self.key(obj), None)
            else:
                self.objects[kind][self.key(obj)] = obj

    def list(self, kind: str) -> list[dict]:
        with self.lock:
            return list(self.objects[kind].values())

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        with self.lock:
            return self.objects[kind].get((namespace, name))
