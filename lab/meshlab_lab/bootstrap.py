"""API objects the lab adds after the control plane is up: the kube-dns Service and its Endpoints."""
from kubernetes import client
from kubernetes.client.rest import ApiException

from meshlab_lab import addresses as A


def _create(fn, *args) -> None:
    try:
        fn(*args)
    except ApiException as exc:
        if exc.status != 409:
            raise


def create_kube_dns(api) -> None:
    """A selector-less ``kube-dns`` Service on 198.19.0.10 whose Endpoints point at the lab DNS (198.18.0.1)."""
    core = client.CoreV1Api(api)
    ports = [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "kube-dns", "namespace": "kube-system",
                        "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
           "spec": {"clusterIP": A.DNS_SERVICE_IP,
                    "ports": [{"name": n, "port": p, "protocol": proto, "targetPort": p} for n, p, proto in ports]}}
    eps = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "kube-dns", "namespace": "kube-system"},
           "subsets": [{"addresses": [{"ip": A.HOST_LAB_IP}],
                        "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]}]}
    _create(core.create_namespaced_service, "kube-system", svc)
    _create(core.create_namespaced_endpoints, "kube-system", eps)
