"""Sidecar injection as Maistra does it: a JSON patch answered to the API server's AdmissionReview.

A pod is injected when its namespace is a member of the control plane (the webhook's namespaceSelector)
and the pod opts in with annotation or label ``sidecar.istio.io/inject: "true"`` (Maistra needs the
opt-in), unless it already carries ``sidecar.istio.io/status``.
"""
import base64
import json

INJECT_KEY = "sidecar.istio.io/inject"
STATUS_KEY = "sidecar.istio.io/status"
PROXY_CONFIG_KEY = "proxy.istio.io/config"
DEFAULT_PROXY_IMAGE = "registry.redhat.io/openshift-service-mesh/proxyv2-rhel8:2.4"
PROXY_UID = 1337


def wants_injection(pod: dict) -> bool:
    meta = pod.get("metadata") or {}
    annotations, labels = meta.get("annotations") or {}, meta.get("labels") or {}
    if STATUS_KEY in annotations:
        return False
    if any(c.get("name") == "istio-proxy" for c in (pod.get("spec") or {}).get("containers") or []):
        return False
    value = annotations.get(INJECT_KEY, labels.get(INJECT_KEY, ""))
    return str(value).lower() in ("true", "yes", "y", "1")


def _pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def init_container(image: str) -> dict:
    return {"name": "istio-init", "image": image,
            "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", str(PROXY_UID), "-m", "REDIRECT",
                     "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020"],
            "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "10m", "memory": "10Mi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": False,
                                "runAsGroup": 0, "runAsNonRoot": False, "runAsUser": 0,
                                "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}}}


def proxy_config(meta: dict, mesh_id: str, cp_namespace: str) -> dict:
    """Mesh defaults merged with the pod's ``proxy.istio.io/config`` annotation, as the injector does."""
    config = {"discoveryAddress": f"istiod-{mesh_id}.{cp_namespace}.svc:15012"}
    try:
        override = json.loads((meta.get("annotations") or {}).get(PROXY_CONFIG_KEY) or "{}")
    except ValueError:
        override = {}  # Istio rejects the pod; the lab ignores the annotation
    if isinstance(override, dict):
        config.update(override)
    return config


def proxy_container(pod: dict, image: str, mesh_id: str, cp_namespace: str) -> dict:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    labels = meta.get("labels") or {}
    ports = [p for c in spec.get("containers") or [] for p in c.get("ports") or []]
    workload = labels.get("app") or meta.get("generateName", "").rstrip("-") or meta.get("name", "")
    field = lambda path: {"valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}  # noqa: E731
    env = [dict({"name": "POD_NAME"}, **field("metadata.name")),
           dict({"name": "POD_NAMESPACE"}, **field("metadata.namespace")),
           dict({"name": "INSTANCE_IP"}, **field("status.podIP")),
           dict({"name": "SERVICE_ACCOUNT"}, **field("spec.serviceAccountName")),
           {"name": "PROXY_CONFIG", "value": json.dumps(proxy_config(meta, mesh_id, cp_namespace))},
           {"name": "ISTIO_METAJSON_ANNOTATIONS", "value": json.dumps(meta.get("annotations") or {})},
           {"name": "ISTIO_METAJSON_LABELS", "value": json.dumps(labels)},
           {"name": "ISTIO_META_POD_PORTS", "value": json.dumps(ports)},
           {"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"},
           {"name": "ISTIO_META_INTERCEPTION_MODE", "value": "REDIRECT"},
           {"name": "ISTIO_META_WORKLOAD_NAME", "value": workload},
           {"name": "ISTIO_META_MESH_ID", "value": "cluster.local"},
           {"name": "TRUST_DOMAIN", "value": "cluster.local"}]
    return {"name": "istio-proxy", "image": image,
            "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning",
                     "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info", "--concurrency", "2"],
            "env": env,
            "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}, "initialDelaySeconds": 1,
                               "periodSeconds": 2, "failureThreshold": 30, "timeoutSeconds": 3},
            "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "10m", "memory": "128Mi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True,
                                "runAsGroup": PROXY_UID, "runAsNonRoot": True, "runAsUser": PROXY_UID,
                                "capabilities": {"drop": ["ALL"]}}}


def _port_number(container: dict, port) -> int | None:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    return next((p["containerPort"] for p in container.get("ports") or [] if p.get("name") == port), None)


def probe_rewrites(pod: dict) -> tuple[list[dict], dict]:
    """Istio's rewriteAppHTTPProbe: httpGet probes of app containers go to pilot-agent on 15020.

    Returns the patch operations and the ISTIO_KUBE_APP_PROBERS map (new path -> original httpGet).
    """
    ops, probers = [], {}
    kinds = {"readinessProbe": "readyz", "livenessProbe": "livez", "startupProbe": "startupz"}
    for index, container in enumerate((pod.get("spec") or {}).get("containers") or []):
        for field_name, suffix in kinds.items():
            get = (container.get(field_name) or {}).get("httpGet")
            port = _port_number(container, (get or {}).get("port"))
            if not get or port is None:
                continue
            path = f"/app-health/{container['name']}/{suffix}"
            probers[path] = {"httpGet": {"path": get.get("path") or "/", "port": port,
                                         "scheme": get.get("scheme") or "HTTP"},
                             "timeoutSeconds": container[field_name].get("timeoutSeconds") or 1}
            ops.append({"op": "replace", "path": f"/spec/containers/{index}/{field_name}/httpGet",
                        "value": {"path": path, "port": 15020, "scheme": "HTTP"}})
    return ops, probers


def patch_for(pod: dict, *, image: str, revision: str, cp_namespace: str) -> list[dict]:
    """The JSON patch (RFC 6902) that injects ``istio-init`` + ``istio-proxy`` and the sidecar labels."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    labels = meta.get("labels") or {}
    patch = []
    if spec.get("initContainers"):
        patch.append({"op": "add", "path": "/spec/initContainers/-", "value": init_container(image)})
    else:
        patch.append({"op": "add", "path": "/spec/initContainers", "value": [init_container(image)]})
    probe_ops, probers = probe_rewrites(pod)
    proxy = proxy_container(pod, image, revision, cp_namespace)
    if probers:
        proxy["env"].append({"name": "ISTIO_KUBE_APP_PROBERS", "value": json.dumps(probers)})
    patch += probe_ops
    patch.append({"op": "add", "path": "/spec/containers/-", "value": proxy})
    new_labels = {"security.istio.io/tlsMode": "istio",
                  "service.istio.io/canonical-name": labels.get("app") or labels.get("app.kubernetes.io/name") or
                  meta.get("generateName", "").rstrip("-") or meta.get("name", ""),
                  "service.istio.io/canonical-revision": labels.get("version") or "latest"}
    if not meta.get("labels"):
        patch.append({"op": "add", "path": "/metadata/labels", "value": new_labels})
    else:
        patch += [{"op": "add", "path": f"/metadata/labels/{_pointer(k)}", "value": v} for k, v in new_labels.items()]
    status = json.dumps({"initContainers": ["istio-init"], "containers": ["istio-proxy"], "volumes": [],
                         "imagePullSecrets": None, "revision": revision})
    if not meta.get("annotations"):
        patch.append({"op": "add", "path": "/metadata/annotations", "value": {STATUS_KEY: status}})
    else:
        patch.append({"op": "add", "path": f"/metadata/annotations/{_pointer(STATUS_KEY)}", "value": status})
    return patch


def review_response(review: dict, *, image: str, revision: str, cp_namespace: str) -> dict:
    """AdmissionReview (admission.k8s.io/v1 or v1beta1) in, AdmissionReview out."""
    request = review.get("request")
    if not isinstance(request, dict) or "uid" not in request:
        raise ValueError("AdmissionReview without request.uid")
    response = {"uid": request["uid"], "allowed": True}
    pod = request.get("object") or {}
    if request.get("kind", {}).get("kind") == "Pod" and wants_injection(pod):
        patch = patch_for(pod, image=image, revision=revision, cp_namespace=cp_namespace)
        response.update(patchType="JSONPatch", patch=base64.b64encode(json.dumps(patch).encode()).decode())
    return {"apiVersion": review.get("apiVersion", "admission.k8s.io/v1"), "kind": "AdmissionReview",
            "response": response}
