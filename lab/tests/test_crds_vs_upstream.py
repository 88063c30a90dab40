"""Our trimmed CRDs against the real upstream ones (../shared/crds): same identity, same verdicts on objects.

Schemas are compared by validating sample objects with ``jsonschema`` against both openAPIV3Schemas
(OpenAPI's ``nullable`` and ``x-kubernetes-int-or-string`` are translated; CEL rules are not evaluated,
the lab's Kubernetes 1.20 has no CEL either).
"""
import copy
import functools
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
OURS = REPO / "lab" / "crds"
SHARED = Path(os.environ.get("MESHLAB_SHARED") or REPO / ".." / "shared").resolve()
UPSTREAM = SHARED / "crds"

pytestmark = pytest.mark.skipif(not UPSTREAM.is_dir(), reason=f"upstream CRDs not found at {UPSTREAM}")

# our file (relative to lab/crds) -> upstream folder whose CRD is the reference for identity
IDENTITY_REFERENCE = {
    "base/subscriptions.operators.coreos.com.yaml": "olm",
    "base/clusterserviceversions.operators.coreos.com.yaml": "olm",
    "base/installplans.operators.coreos.com.yaml": "olm",
    "base/operatorgroups.operators.coreos.com.yaml": "olm",
    "base/catalogsources.operators.coreos.com.yaml": "olm",
    "base/routes.route.openshift.io.yaml": "openshift",
    "operators/servicemeshoperator3/istios.sailoperator.io.yaml": "sail",
    "operators/servicemeshoperator3/istiocnis.sailoperator.io.yaml": "sail",
}
for _name in ("servicemeshcontrolplanes.maistra.io", "servicemeshmemberrolls.maistra.io",
              "servicemeshmembers.maistra.io", "gateways.networking.istio.io", "virtualservices.networking.istio.io",
              "destinationrules.networking.istio.io", "serviceentries.networking.istio.io",
              "sidecars.networking.istio.io", "peerauthentications.security.istio.io",
              "authorizationpolicies.security.istio.io"):
    IDENTITY_REFERENCE[f"operators/servicemeshoperator/{_name}.yaml"] = "ossm2"


@functools.lru_cache(maxsize=None)
def _load(path):
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - safe loader


def _identity(crd):
    spec = crd["spec"]
    names = spec["names"]
    return {
        "group": spec["group"],
        "scope": spec["scope"],
        "names": {k: names.get(k) for k in ("plural", "singular", "kind", "listKind", "shortNames")},
        "versions": sorted((v["name"], v["served"], v["storage"]) for v in spec["versions"]),
    }


@pytest.mark.parametrize("ours", sorted(IDENTITY_REFERENCE))
def test_identity_matches_upstream(ours):
    mine = _load(OURS / ours)
    reference = _load(UPSTREAM / IDENTITY_REFERENCE[ours] / Path(ours).name)
    assert _identity(mine) == _identity(reference)


def _to_jsonschema(node):
    """OpenAPI v3 (Kubernetes flavour) -> JSON Schema draft 7."""
    if isinstance(node, list):
        return [_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_jsonschema(v) for k, v in node.items()
           if v is not None and not k.startswith("x-kubernetes-")
           and k not in ("nullable", "default", "description", "format")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


@functools.lru_cache(maxsize=None)
def _validator(path, version):
    return jsonschema.Draft7Validator(_schema(_load(path), version))


def _schema(crd, version):
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return _to_jsonschema(v["schema"]["openAPIV3Schema"])
    raise AssertionError(f"{crd['metadata']['name']} has no version {version}")


def _valid(path, version, obj):
    errors = list(_validator(path, version).iter_errors(obj))
    return not errors, "; ".join(e.message for e in errors[:3])


def _set(obj, dotted, value):
    """Return a copy of obj with dotted path set (``None`` deletes); digits index lists."""
    out = copy.deepcopy(obj)
    *parents, last = dotted.split(".")
    node = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key = int(last) if isinstance(node, list) else last
    if value is None:
        del node[key]
    else:
        node[key] = value
    return out


MESH = "operators/servicemeshoperator"
PA = {"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
      "metadata": {"name": "default", "namespace": "bookinfo"},
      "spec": {"selector": {"matchLabels": {"app": "ratings"}}, "mtls": {"mode": "STRICT"},
               "portLevelMtls": {"9080": {"mode": "PERMISSIVE"}}}}
DR = {"apiVersion": "networking.istio.io/v1alpha3", "kind": "DestinationRule",
      "metadata": {"name": "reviews", "namespace": "bookinfo"},
      "spec": {"host": "reviews.bookinfo.svc.cluster.local",
               "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"},
                                 "connectionPool": {"tcp": {"maxConnections": 100}},
                                 "portLevelSettings": [{"port": {"number": 9080}, "tls": {"mode": "DISABLE"}}]},
               "subsets": [{"name": "v1", "labels": {"version": "v1"},
                            "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL", "sni": "reviews"}}}]}}
VS = {"apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
      "metadata": {"name": "bookinfo", "namespace": "bookinfo"},
      "spec": {"hosts": ["*"], "gateways": ["bookinfo-gateway"],
               "http": [{"match": [{"uri": {"exact": "/productpage"}}],
                         "route": [{"destination": {"host": "productpage", "port": {"number": 9080}}}]}]}}
GW = {"apiVersion": "networking.istio.io/v1alpha3", "kind": "Gateway",
      "metadata": {"name": "bookinfo-gateway", "namespace": "bookinfo"},
      "spec": {"selector": {"istio": "ingressgateway"},
               "servers": [{"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}}
SE = {"apiVersion": "networking.istio.io/v1alpha3", "kind": "ServiceEntry", "metadata": {"name": "ext"},
      "spec": {"hosts": ["example.com"], "location": "MESH_EXTERNAL", "resolution": "DNS",
               "ports": [{"number": 443, "name": "https", "protocol": "TLS"}]}}
SIDECAR = {"apiVersion": "networking.istio.io/v1alpha3", "kind": "Sidecar", "metadata": {"name": "default"},
           "spec": {"egress": [{"hosts": ["./*", "istio-system/*"]}],
                    "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}}
AP = {"apiVersion": "security.istio.io/v1beta1", "kind": "AuthorizationPolicy", "metadata": {"name": "deny"},
      "spec": {"action": "DENY", "rules": [{"from": [{"source": {"notPrincipals": ["*"]}}]}]}}
SMCP = {"apiVersion": "maistra.io/v2", "kind": "ServiceMeshControlPlane",
        "metadata": {"name": "basic", "namespace": "istio-system"},
        "spec": {"version": "v2.6", "tracing": {"type": "None", "sampling": 10000},
                 "security": {"dataPlane": {"mtls": False, "automtls": True}, "controlPlane": {"mtls": True}},
                 "addons": {"kiali": {"enabled": True, "name": "kiali"}, "prometheus": {"enabled": True},
                            "grafana": {"enabled": False}},
                 "gateways": {"ingress": {"enabled": True}, "egress": {"enabled": True},
                              "openshiftRoute": {"enabled": True}}}}
SMMR = {"apiVersion": "maistra.io/v1", "kind": "ServiceMeshMemberRoll",
        "metadata": {"name": "default", "namespace": "istio-system"}, "spec": {"members": ["bookinfo"]}}
SMM = {"apiVersion": "maistra.io/v1", "kind": "ServiceMeshMember", "metadata": {"name": "default"},
       "spec": {"controlPlaneRef": {"name": "basic", "namespace": "istio-system"}}}
# wildcardPolicy spelled out: the API server defaults it before validating, jsonschema does not
ROUTE = {"apiVersion": "route.openshift.io/v1", "kind": "Route", "metadata": {"name": "api"},
         "spec": {"wildcardPolicy": "None", "to": {"kind": "Service", "name": "istio-ingressgateway", "weight": 100},
                  "port": {"targetPort": "http2"}, "tls": {"termination": "edge",
                                                            "insecureEdgeTerminationPolicy": "Redirect"}}}
SUB = {"apiVersion": "operators.coreos.com/v1alpha1", "kind": "Subscription",
       "metadata": {"name": "servicemeshoperator", "namespace": "openshift-operators"},
       "spec": {"name": "servicemeshoperator", "channel": "stable", "source": "redhat-operators",
                "sourceNamespace": "openshift-marketplace", "installPlanApproval": "Automatic"}}
IP = {"apiVersion": "operators.coreos.com/v1alpha1", "kind": "InstallPlan", "metadata": {"name": "install-abcde"},
      "spec": {"approval": "Manual", "approved": False,
               "clusterServiceVersionNames": ["servicemeshoperator.v2.6.4"]}}
CSV = {"apiVersion": "operators.coreos.com/v1alpha1", "kind": "ClusterServiceVersion",
       "metadata": {"name": "servicemeshoperator.v2.6.4"},
       "spec": {"displayName": "Red Hat OpenShift Service Mesh", "version": "2.6.4",
                "install": {"strategy": "deployment", "spec": {"deployments": []}}}}
CATSRC = {"apiVersion": "operators.coreos.com/v1alpha1", "kind": "CatalogSource",
          "metadata": {"name": "redhat-operators"},
          "spec": {"sourceType": "grpc", "displayName": "Red Hat Operators", "publisher": "Red Hat"}}
OG = {"apiVersion": "operators.coreos.com/v1", "kind": "OperatorGroup", "metadata": {"name": "global-operators"},
      "spec": {}}
ISTIO = {"apiVersion": "sailoperator.io/v1", "kind": "Istio", "metadata": {"name": "default"},
         "spec": {"namespace": "istio-system", "version": "v1.26.2", "profile": "openshift"}}
ISTIO_CNI = {"apiVersion": "sailoperator.io/v1", "kind": "IstioCNI", "metadata": {"name": "default"},
             "spec": {"namespace": "istio-cni", "version": "v1.26-latest"}}

# (our file, upstream folders to compare with, version, object, expected verdict)
CASES = [
    (f"{MESH}/peerauthentications.security.istio.io.yaml", PA, True),
    (f"{MESH}/peerauthentications.security.istio.io.yaml", _set(PA, "spec.mtls.mode", "DISABLE"), True),
    (f"{MESH}/peerauthentications.security.istio.io.yaml", _set(PA, "spec.mtls.mode", "STRICTER"), False),
    (f"{MESH}/peerauthentications.security.istio.io.yaml", _set(PA, "spec.mtls.mode", "strict"), False),
    (f"{MESH}/peerauthentications.security.istio.io.yaml", _set(PA, "spec.portLevelMtls.9080.mode", "ON"), False),
    (f"{MESH}/destinationrules.networking.istio.io.yaml", DR, True),
    (f"{MESH}/destinationrules.networking.istio.io.yaml", _set(DR, "spec.host", None), False),
    (f"{MESH}/destinationrules.networking.istio.io.yaml", _set(DR, "spec.trafficPolicy.tls.mode", "STRICT"), False),
    (f"{MESH}/destinationrules.networking.istio.io.yaml",
     _set(DR, "spec.trafficPolicy.portLevelSettings.0.tls.mode", "MTLS"), False),
    (f"{MESH}/destinationrules.networking.istio.io.yaml",
     _set(DR, "spec.subsets.0.trafficPolicy.tls.mode", "PERMISSIVE"), False),
    (f"{MESH}/destinationrules.networking.istio.io.yaml", _set(DR, "spec.subsets.0.name", None), False),
    (f"{MESH}/virtualservices.networking.istio.io.yaml", VS, True),
    # the CRD itself does not require hosts (istiod's webhook does): both schemas accept it
    (f"{MESH}/virtualservices.networking.istio.io.yaml", _set(VS, "spec.hosts", None), True),
    (f"{MESH}/virtualservices.networking.istio.io.yaml", _set(VS, "spec.hosts", "productpage"), False),
    (f"{MESH}/gateways.networking.istio.io.yaml", GW, True),
    (f"{MESH}/gateways.networking.istio.io.yaml", _set(GW, "spec.servers.0.hosts", None), False),
    (f"{MESH}/gateways.networking.istio.io.yaml", _set(GW, "spec.servers.0.port.protocol", None), False),
    (f"{MESH}/serviceentries.networking.istio.io.yaml", SE, True),
    (f"{MESH}/serviceentries.networking.istio.io.yaml", _set(SE, "spec.resolution", "MAGIC"), False),
    (f"{MESH}/serviceentries.networking.istio.io.yaml", _set(SE, "spec.hosts", None), False),
    (f"{MESH}/sidecars.networking.istio.io.yaml", SIDECAR, True),
    (f"{MESH}/sidecars.networking.istio.io.yaml", _set(SIDECAR, "spec.outboundTrafficPolicy.mode", "ANY"), False),
    (f"{MESH}/authorizationpolicies.security.istio.io.yaml", AP, True),
    (f"{MESH}/authorizationpolicies.security.istio.io.yaml", _set(AP, "spec.action", "REJECT"), False),
    (f"{MESH}/servicemeshcontrolplanes.maistra.io.yaml", SMCP, True),
    (f"{MESH}/servicemeshcontrolplanes.maistra.io.yaml", _set(SMCP, "spec", None), False),
    (f"{MESH}/servicemeshcontrolplanes.maistra.io.yaml", _set(SMCP, "spec.tracing.sampling", 20000), False),
    (f"{MESH}/servicemeshcontrolplanes.maistra.io.yaml", _set(SMCP, "spec.security.dataPlane.mtls", "yes"), False),
    (f"{MESH}/servicemeshcontrolplanes.maistra.io.yaml", _set(SMCP, "spec.mode", "Global"), False),
    (f"{MESH}/servicemeshmemberrolls.maistra.io.yaml", SMMR, True),
    (f"{MESH}/servicemeshmemberrolls.maistra.io.yaml", _set(SMMR, "spec.members", "bookinfo"), False),
    (f"{MESH}/servicemeshmembers.maistra.io.yaml", SMM, True),
    (f"{MESH}/servicemeshmembers.maistra.io.yaml", _set(SMM, "spec.controlPlaneRef", None), False),
    (f"{MESH}/servicemeshmembers.maistra.io.yaml", _set(SMM, "spec.controlPlaneRef.namespace", None), False),
    ("base/routes.route.openshift.io.yaml", ROUTE, True),
    ("base/routes.route.openshift.io.yaml", _set(ROUTE, "spec.to", None), False),
    ("base/routes.route.openshift.io.yaml", _set(ROUTE, "spec.to.name", ""), False),
    ("base/routes.route.openshift.io.yaml", _set(ROUTE, "spec.tls.termination", "edgy"), False),
    ("base/routes.route.openshift.io.yaml", _set(ROUTE, "spec.host", "Bad_Host!"), False),
    ("base/routes.route.openshift.io.yaml", _set(ROUTE, "spec.host", "api-istio-system.apps.lab.local"), True),
    ("base/subscriptions.operators.coreos.com.yaml", SUB, True),
    ("base/subscriptions.operators.coreos.com.yaml", _set(SUB, "spec.name", None), False),
    ("base/subscriptions.operators.coreos.com.yaml", _set(SUB, "spec.source", None), False),
    ("base/installplans.operators.coreos.com.yaml", IP, True),
    ("base/installplans.operators.coreos.com.yaml", _set(IP, "spec.approved", None), False),
    ("base/clusterserviceversions.operators.coreos.com.yaml", CSV, True),
    ("base/clusterserviceversions.operators.coreos.com.yaml", _set(CSV, "spec.install", None), False),
    ("base/catalogsources.operators.coreos.com.yaml", CATSRC, True),
    ("base/catalogsources.operators.coreos.com.yaml", _set(CATSRC, "spec.sourceType", None), False),
    ("base/operatorgroups.operators.coreos.com.yaml", OG, True),
    ("base/operatorgroups.operators.coreos.com.yaml", _set(OG, "spec.targetNamespaces", "bookinfo"), False),
    ("operators/servicemeshoperator3/istios.sailoperator.io.yaml", ISTIO, True),
    ("operators/servicemeshoperator3/istios.sailoperator.io.yaml", _set(ISTIO, "spec.version", "latest"), False),
    ("operators/servicemeshoperator3/istios.sailoperator.io.yaml", _set(ISTIO, "spec.profile", "tiny"), False),
    ("operators/servicemeshoperator3/istiocnis.sailoperator.io.yaml", ISTIO_CNI, True),
]


def _upstream_files(ours):
    name = Path(ours).name
    folders = [IDENTITY_REFERENCE[ours]]
    if ".istio.io." in name:
        folders.append("istio-upstream")
    return [UPSTREAM / folder / name for folder in folders]


@pytest.mark.parametrize(("ours", "obj", "expected"), CASES,
                         ids=[f"{Path(c[0]).stem.split('.')[0]}-{i}-{'ok' if c[2] else 'bad'}"
                              for i, c in enumerate(CASES)])
def test_same_verdict_as_upstream(ours, obj, expected):
    version = obj["apiVersion"].split("/")[1]
    ok, why = _valid(OURS / ours, version, obj)
    assert ok is expected, f"ours: {why or 'accepted'}"
    for upstream in _upstream_files(ours):
        crd = _load(upstream)
        if version not in {v["name"] for v in crd["spec"]["versions"]}:
            continue  # e.g. istio-upstream dropped nothing we use, but be explicit
        up_ok, up_why = _valid(upstream, version, obj)
        assert up_ok is expected, f"{upstream.parent.name}: {up_why or 'accepted'}"


def test_every_served_version_of_a_mesh_kind_shares_the_schema_verdicts():
    """v1beta1 DR/VS/... and v1 AuthorizationPolicy validate like the storage version."""
    for ours, obj, expected in CASES:
        crd = _load(OURS / ours)
        for version in (v["name"] for v in crd["spec"]["versions"]):
            if crd["spec"]["group"] == "maistra.io":
                continue  # SMCP v1 and v2 are different shapes
            ok, why = _valid(OURS / ours, version, obj)
            assert ok is expected, f"{ours} {version}: {why}"
