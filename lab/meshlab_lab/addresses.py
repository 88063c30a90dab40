"""Fixed addresses and ports of the lab (see docs/design.md for the pod/service ranges)."""
POD_CIDR = "198.18.0.0/16"
SERVICE_CIDR = "198.19.0.0/16"
LAB_SUPERNET = "198.18.0.0/15"
KUBERNETES_SERVICE_IP = "198.19.0.1"
DNS_SERVICE_IP = "198.19.0.10"
# The host's address on the lab dummy interface; also the advertised API address (node 0's subnet is unused).
HOST_LAB_IP = "198.18.0.1"
DUMMY_IF = "meshlab0"
CLUSTER_DOMAIN = "cluster.local"

ETCD_CLIENT_PORT = 23790
ETCD_PEER_PORT = 23800
API_PORT = 6443
API_URL = f"https://127.0.0.1:{API_PORT}"
KUBELET_BASE_PORT = 10250


def node_name(index: int) -> str:
    return f"lab-node-{index}"


def node_pod_subnet(index: int) -> str:
    return f"198.18.{index}.0/24"


def kubelet_port(index: int) -> int:
    return KUBELET_BASE_PORT + index - 1
