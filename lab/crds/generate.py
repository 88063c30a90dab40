"""Write the lab's own CustomResourceDefinitions (trimmed, hand-reviewed schemas) as YAML.

Run ``python lab/crds/generate.py`` after changing a schema here; ``lab/tests/test_crds_generated.py``
fails when the YAML files are out of date.

Each schema types the fields the collection and the lab use (with the upstream enums and required
fields) and keeps the rest of an object open with ``x-kubernetes-preserve-unknown-fields`` so that
anything the real CRD accepts is stored, not pruned. Validation that upstream does outside the
OpenAPI schema (CEL rules, Istio's validating webhook, Route's allOf/anyOf TLS rules) is left out;
the lab runs Kubernetes 1.20, which has no CEL.

The layout follows who installs what: ``base/`` at lab up, ``operators/<package>/`` by the emulated
OLM when that package's ClusterServiceVersion installs.
"""
from pathlib import Path

import yaml

CRD_DIR = Path(__file__).resolve().parent

STR = {"type": "string"}
BOOL = {"type": "boolean"}
INT = {"type": "integer"}
INT32 = {"type": "integer", "format": "int32"}
INT64 = {"type": "integer", "format": "int64"}
OPEN = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
STR_MAP = {"type": "object", "additionalProperties": STR}
STR_LIST = {"type": "array", "items": STR}
AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def obj(props=None, required=None, open_=False, **extra):
    schema = {"type": "object"}
    if props:
        schema["properties"] = props
    if required:
        schema["required"] = required
    if open_:
        schema["x-kubernetes-preserve-unknown-fields"] = True
    schema.update(extra)
    return schema


def arr(items, **extra):
    return {"type": "array", "items": items, **extra}


def enum(*values, **extra):
    return {"type": "string", "enum": list(values), **extra}


def col(name, path, type_="string"):
    return {"name": name, "type": type_, "jsonPath": path}


def root(spec, status=None, required=None):
    props = {"apiVersion": STR, "kind": STR, "metadata": {"type": "object"}, "spec": spec}
    props["status"] = status if status is not None else OPEN
    return obj(props, required)


CONDITIONS = arr(obj({"type": STR, "status": STR, "reason": STR, "message": STR,
                      "lastTransitionTime": {"type": "string", "format": "date-time"}}))
LABEL_SELECTOR = obj({"matchLabels": STR_MAP, "matchExpressions": arr(OPEN)})
WORKLOAD_SELECTOR = obj({"matchLabels": STR_MAP})

# --- operators.coreos.com (OLM) -------------------------------------------------------------------
SUBSCRIPTION = root(
    obj({"name": STR, "source": STR, "sourceNamespace": STR, "channel": STR, "startingCSV": STR,
         # upstream has no enum here; OLM treats anything but "Manual" as automatic
         "installPlanApproval": STR, "config": OPEN},
        required=["name", "source", "sourceNamespace"]),
    required=["metadata", "spec"])
INSTALL_PLAN = root(
    obj({"approval": STR, "approved": BOOL, "clusterServiceVersionNames": STR_LIST, "generation": INT,
         "source": STR, "sourceNamespace": STR},
        required=["approval", "approved", "clusterServiceVersionNames"]),
    required=["metadata", "spec"])
CSV = root(
    obj({"displayName": STR, "version": STR, "replaces": STR, "description": STR, "provider": OPEN,
         "install": obj({"strategy": STR, "spec": OPEN}, required=["strategy"]),
         "customresourcedefinitions": OPEN, "installModes": arr(OPEN)},
        required=["displayName", "install"], open_=True),
    required=["metadata", "spec"])
CATALOG_SOURCE = root(
    obj({"sourceType": STR, "displayName": STR, "publisher": STR, "image": STR, "address": STR,
         "priority": INT, "updateStrategy": OPEN, "grpcPodConfig": OPEN},
        required=["sourceType"], open_=True),
    required=["metadata", "spec"])
OPERATOR_GROUP = root(
    obj({"targetNamespaces": STR_LIST, "selector": LABEL_SELECTOR, "serviceAccountName": STR,
         "staticProvidedAPIs": BOOL, "upgradeStrategy": OPEN}),
    required=["metadata"])
PACKAGE_MANIFEST = root(
    obj(open_=True),
    obj({"catalogSource": STR, "catalogSourceDisplayName": STR, "catalogSourcePublisher": STR,
         "catalogSourceNamespace": STR, "packageName": STR, "defaultChannel": STR, "provider": OPEN,
         "channels": arr(obj({"name": STR, "currentCSV": STR, "currentCSVDesc": OPEN, "entries": arr(OPEN)},
                             required=["name", "currentCSV"]))},
        open_=True))

# --- route.openshift.io ----------------------------------------------------------------------------
ROUTE_TARGET = obj({"kind": enum("Service", "", default="Service"), "name": {"type": "string", "minLength": 1},
                    "weight": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 256, "default": 100}},
                   required=["kind", "name"])
HOST_PATTERN = (r"^([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])"
                r"(\.([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]{0,61}[a-zA-Z0-9]))*$")
ROUTE = root(
    obj({"host": {"type": "string", "maxLength": 253, "pattern": HOST_PATTERN}, "subdomain": STR,
         "path": {"type": "string", "pattern": "^/"}, "to": ROUTE_TARGET, "alternateBackends": arr(ROUTE_TARGET),
         "port": obj({"targetPort": {"x-kubernetes-int-or-string": True}}, required=["targetPort"]),
         "tls": obj({"termination": enum("edge", "reencrypt", "passthrough"),
                     "insecureEdgeTerminationPolicy": enum("Allow", "None", "Redirect", ""),
                     "certificate": STR, "key": STR, "caCertificate": STR, "destinationCACertificate": STR,
                     "externalCertificate": obj({"name": STR})},
                    required=["termination"]),
         "wildcardPolicy": enum("None", "Subdomain", "", default="None"), "httpHeaders": OPEN},
        required=["to"]),
    obj({"ingress": arr(obj({"host": STR, "routerName": STR, "routerCanonicalHostname": STR, "wildcardPolicy": STR,
                             "conditions": arr(obj({"type": STR, "status": STR, "reason": STR, "message": STR,
                                                    "lastTransitionTime": STR}, required=["status", "type"]))}))}),
    required=["spec"])

# --- security.istio.io / networking.istio.io (as shipped by OSSM 2.6) ------------------------------
PEER_MODE = enum("UNSET", "DISABLE", "PERMISSIVE", "STRICT")
PEER_AUTHENTICATION = root(obj({"selector": WORKLOAD_SELECTOR, "mtls": obj({"mode": PEER_MODE}),
                                "portLevelMtls": obj(additionalProperties=obj({"mode": PEER_MODE}))}))
AUTHORIZATION_POLICY = root(obj({"selector": WORKLOAD_SELECTOR, "action": enum("ALLOW", "DENY", "AUDIT", "CUSTOM"),
                                 "rules": arr(OPEN), "provider": OPEN, "targetRef": OPEN}))
CLIENT_TLS = obj({"mode": enum("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"), "clientCertificate": STR,
                  "privateKey": STR, "caCertificates": STR, "credentialName": STR, "subjectAltNames": STR_LIST,
                  "sni": STR, "insecureSkipVerify": {"type": "boolean", "nullable": True}})
PORT_SELECTOR = obj({"number": {"type": "integer", "maximum": 4294967295, "minimum": 0}})
TRAFFIC_POLICY = obj({
    "tls": CLIENT_TLS, "connectionPool": OPEN, "loadBalancer": OPEN, "outlierDetection": OPEN, "tunnel": OPEN,
    "portLevelSettings": arr(obj({"port": PORT_SELECTOR, "tls": CLIENT_TLS, "connectionPool": OPEN,
                                  "loadBalancer": OPEN, "outlierDetection": OPEN}))})
DESTINATION_RULE = root(obj({
    "host": STR, "exportTo": STR_LIST, "workloadSelector": WORKLOAD_SELECTOR, "trafficPolicy": TRAFFIC_POLICY,
    "subsets": arr(obj({"name": STR, "labels": STR_MAP, "trafficPolicy": TRAFFIC_POLICY}, required=["name"]))},
    required=["host"]))
# The OSSM 2.6 CRD does not require `hosts`; istiod's validating webhook rejects a VirtualService without it.
VIRTUAL_SERVICE = root(obj({"hosts": STR_LIST, "gateways": STR_LIST, "exportTo": STR_LIST,
                            "http": arr(OPEN), "tcp": arr(OPEN), "tls": arr(OPEN)}))
SERVICE_PORT = obj({"number": {"type": "integer", "maximum": 4294967295, "minimum": 0}, "protocol": STR,
                    "name": STR, "targetPort": {"type": "integer", "maximum": 4294967295, "minimum": 0}},
                   required=["number", "protocol", "name"])
GATEWAY = root(obj({"selector": STR_MAP, "servers": arr(obj({
    "port": SERVICE_PORT, "hosts": STR_LIST, "bind": STR, "defaultEndpoint": STR, "name": STR,
    "tls": obj({"mode": enum("PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL",
                             "OPTIONAL_MUTUAL")}, open_=True)},
    required=["port", "hosts"]))}))
SERVICE_ENTRY = root(obj({
    "hosts": STR_LIST, "addresses": STR_LIST, "exportTo": STR_LIST, "subjectAltNames": STR_LIST,
    "location": enum("MESH_EXTERNAL", "MESH_INTERNAL"), "resolution": enum("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"),
    "ports": arr(obj({"number": INT, "protocol": STR, "name": STR, "targetPort": INT}, required=["number", "name"])),
    "endpoints": arr(OPEN), "workloadSelector": WORKLOAD_SELECTOR}, required=["hosts"]))
SIDECAR = root(obj({"workloadSelector": WORKLOAD_SELECTOR, "ingress": arr(OPEN),
                    "egress": arr(obj({"hosts": STR_LIST}, required=["hosts"], open_=True)),
                    "outboundTrafficPolicy": obj({"mode": enum("REGISTRY_ONLY", "ALLOW_ANY"), "egressProxy": OPEN}),
                    "inboundConnectionPool": OPEN}))
ISTIO_STATUS = OPEN

# --- maistra.io -------------------------------------------------------------------------------------
ENABLED = obj({"enabled": BOOL}, open_=True)
SMCP_V2_SPEC = obj({
    "version": STR, "mode": enum("MultiTenant", "ClusterWide"), "profiles": STR_LIST,
    "security": obj({"dataPlane": obj({"mtls": BOOL, "automtls": BOOL}),
                     "controlPlane": obj({"mtls": BOOL, "certProvider": STR, "tls": OPEN}),
                     "identity": OPEN, "trust": OPEN, "certificateAuthority": OPEN, "jwksResolverCA": STR,
                     "manageNetworkPolicy": BOOL}),
    "tracing": obj({"type": STR, "sampling": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 10000}}),
    "addons": obj({"kiali": obj({"enabled": BOOL, "name": STR, "install": OPEN}),
                   "prometheus": obj({"enabled": BOOL, "address": STR, "install": OPEN, "scrape": BOOL,
                                      "metricsExpiryDuration": STR}),
                   "grafana": obj({"enabled": BOOL, "address": STR, "install": OPEN}),
                   "jaeger": obj({"name": STR, "install": OPEN}),
                   "3scale": OPEN, "stackdriver": OPEN}),
    "gateways": obj({"enabled": BOOL, "ingress": ENABLED, "egress": ENABLED, "openshiftRoute": obj({"enabled": BOOL}),
                     "additionalIngress": obj(additionalProperties=ENABLED),
                     "additionalEgress": obj(additionalProperties=ENABLED)}),
    "general": OPEN, "proxy": OPEN, "policy": OPEN, "telemetry": OPEN, "runtime": OPEN, "techPreview": OPEN,
    "meshConfig": OPEN, "cluster": OPEN})
SMCP_V1_SPEC = obj({"version": STR, "template": STR, "profiles": STR_LIST, "networkType": STR,
                    "istio": OPEN, "threeScale": OPEN})
SMCP_STATUS = obj({"observedGeneration": INT64, "operatorVersion": STR, "chartVersion": STR,
                   "annotations": STR_MAP, "conditions": CONDITIONS,
                   "readiness": obj({"components": obj(additionalProperties=STR_LIST)}),
                   "components": arr(OPEN), "appliedSpec": OPEN, "appliedValues": OPEN}, open_=True)
SMMR = root(obj({"members": arr(STR, nullable=True),
                 "memberSelectors": arr(obj({"matchLabels": STR_MAP, "matchExpressions": arr(obj(
                     {"key": STR, "operator": STR, "values": STR_LIST}, required=["key", "operator"]))}))}),
            obj({"annotations": STR_MAP, "conditions": CONDITIONS, "observedGeneration": INT64,
                 "meshGeneration": INT64, "meshReconciledVersion": STR,
                 "members": arr(STR, nullable=True), "configuredMembers": arr(STR, nullable=True),
                 "pendingMembers": arr(STR, nullable=True), "terminatingMembers": arr(STR, nullable=True),
                 "memberStatuses": arr(obj({"namespace": STR, "conditions": CONDITIONS},
                                           required=["conditions", "namespace"]), nullable=True)}),
            required=["spec"])
SMM = root(obj({"controlPlaneRef": obj({"name": STR, "namespace": STR}, required=["name", "namespace"])},
               required=["controlPlaneRef"]),
           obj({"annotations": STR_MAP, "conditions": CONDITIONS, "observedGeneration": INT64,
                "meshGeneration": INT64, "meshReconciledVersion": STR}, required=["conditions", "observedGeneration"]),
           required=["spec"])

# --- sailoperator.io (OSSM 3) ------------------------------------------------------------------------
SAIL_VERSION = {"type": "string", "pattern": r"^v\d+\.\d+(\.\d+|-latest)$"}
SAIL_PROFILE = enum("ambient", "default", "demo", "empty", "external", "openshift", "openshift-ambient", "preview",
                    "remote", "stable")
ISTIO = root(obj({"namespace": {"type": "string", "default": "istio-system"}, "profile": SAIL_PROFILE,
                  "version": SAIL_VERSION, "updateStrategy": OPEN, "values": OPEN},
                 required=["namespace", "version"]))
ISTIO_CNI = root(obj({"namespace": {"type": "string", "default": "istio-cni"}, "profile": SAIL_PROFILE,
                      "version": SAIL_VERSION, "values": OPEN}, required=["namespace", "version"]))


def crd(group, kind, plural, versions, scope="Namespaced", short=None, categories=None, status=True, columns=None):
    """versions: list of (name, storage, schema); every version is served."""
    names = {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower()}
    if short:
        names["shortNames"] = short
    if categories:
        names["categories"] = categories
    out_versions = []
    for name, storage, schema in versions:
        version = {"name": name, "served": True, "storage": storage, "schema": {"openAPIV3Schema": schema}}
        if status:
            version["subresources"] = {"status": {}}
        if columns:
            version["additionalPrinterColumns"] = columns
        out_versions.append(version)
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}", "labels": {"meshlab.io/lab-crd": "true"}},
            "spec": {"group": group, "names": names, "scope": scope, "versions": out_versions}}


OLM = "operators.coreos.com"
ISTIO_NET = "networking.istio.io"
ISTIO_SEC = "security.istio.io"
ISTIO_CATS = {ISTIO_NET: ["istio-io", "networking-istio-io"], ISTIO_SEC: ["istio-io", "security-istio-io"]}


def istio(group, kind, plural, schema, short=None, columns=None, versions=(("v1alpha3", True), ("v1beta1", False))):
    return crd(group, kind, plural, [(v, s, schema) for v, s in versions], short=short,
               categories=ISTIO_CATS[group], columns=columns)


def all_crds():
    """{relative folder: [CRD dict, ...]}"""
    return {
        "base": [
            crd(OLM, "Subscription", "subscriptions", [("v1alpha1", True, SUBSCRIPTION)], short=["sub", "subs"],
                categories=["olm"], columns=[col("Package", ".spec.name"), col("Source", ".spec.source"),
                                             col("Channel", ".spec.channel")]),
            crd(OLM, "ClusterServiceVersion", "clusterserviceversions", [("v1alpha1", True, CSV)],
                short=["csv", "csvs"], categories=["olm"],
                columns=[col("Display", ".spec.displayName"), col("Version", ".spec.version"),
                         col("Replaces", ".spec.replaces"), col("Phase", ".status.phase")]),
            crd(OLM, "InstallPlan", "installplans", [("v1alpha1", True, INSTALL_PLAN)], short=["ip"],
                categories=["olm"], columns=[col("CSV", ".spec.clusterServiceVersionNames[0]"),
                                             col("Approval", ".spec.approval"),
                                             col("Approved", ".spec.approved", "boolean")]),
            crd(OLM, "OperatorGroup", "operatorgroups", [("v1", True, OPERATOR_GROUP),
                                                         ("v1alpha2", False, OPERATOR_GROUP)],
                short=["og"], categories=["olm"]),
            crd(OLM, "CatalogSource", "catalogsources", [("v1alpha1", True, CATALOG_SOURCE)], short=["catsrc"],
                categories=["olm"], columns=[col("Display", ".spec.displayName"), col("Type", ".spec.sourceType"),
                                             col("Publisher", ".spec.publisher"), AGE]),
            # Stand-in: on OpenShift this is an aggregated API served by package-server, read-only.
            crd("packages.operators.coreos.com", "PackageManifest", "packagemanifests",
                [("v1", True, PACKAGE_MANIFEST)], status=False,
                columns=[col("Catalog", ".status.catalogSourceDisplayName"), AGE]),
            crd("route.openshift.io", "Route", "routes", [("v1", True, ROUTE)],
                columns=[col("Host", ".status.ingress[0].host"),
                         col("Admitted", '.status.ingress[0].conditions[?(@.type=="Admitted")].status'),
                         col("Service", ".spec.to.name"), col("TLS", ".spec.tls.type")]),
        ],
        "operators/servicemeshoperator": [
            crd("maistra.io", "ServiceMeshControlPlane", "servicemeshcontrolplanes",
                [("v1", False, root(SMCP_V1_SPEC, SMCP_STATUS, ["spec"])),
                 ("v2", True, root(SMCP_V2_SPEC, SMCP_STATUS, ["spec"]))],
                short=["smcp"], categories=["maistra-io"],
                columns=[col("Ready", ".status.annotations.readyComponentCount"),
                         col("Status", '.status.conditions[?(@.type=="Ready")].reason'),
                         col("Profiles", ".status.appliedSpec.profiles"), col("Version", ".status.chartVersion"),
                         AGE]),
            crd("maistra.io", "ServiceMeshMemberRoll", "servicemeshmemberrolls", [("v1", True, SMMR)],
                short=["smmr"], categories=["maistra-io"],
                columns=[col("Ready", ".status.annotations.configuredMemberCount"),
                         col("Status", '.status.conditions[?(@.type=="Ready")].reason'), AGE,
                         col("Members", ".status.members")]),
            crd("maistra.io", "ServiceMeshMember", "servicemeshmembers", [("v1", True, SMM)],
                short=["smm"], categories=["maistra-io"],
                columns=[col("Control Plane", ".status.annotations.controlPlaneRef"),
                         col("Ready", '.status.conditions[?(@.type=="Ready")].status'), AGE]),
            istio(ISTIO_NET, "Gateway", "gateways", GATEWAY, short=["gw"]),
            istio(ISTIO_NET, "VirtualService", "virtualservices", VIRTUAL_SERVICE, short=["vs"],
                  columns=[col("Gateways", ".spec.gateways"), col("Hosts", ".spec.hosts"), AGE]),
            istio(ISTIO_NET, "DestinationRule", "destinationrules", DESTINATION_RULE, short=["dr"],
                  columns=[col("Host", ".spec.host"), AGE]),
            istio(ISTIO_NET, "ServiceEntry", "serviceentries", SERVICE_ENTRY, short=["se"],
                  columns=[col("Hosts", ".spec.hosts"), col("Location", ".spec.location"),
                           col("Resolution", ".spec.resolution"), AGE]),
            istio(ISTIO_NET, "Sidecar", "sidecars", SIDECAR),
            istio(ISTIO_SEC, "PeerAuthentication", "peerauthentications", PEER_AUTHENTICATION, short=["pa"],
                  columns=[col("Mode", ".spec.mtls.mode"), AGE], versions=(("v1beta1", True),)),
            istio(ISTIO_SEC, "AuthorizationPolicy", "authorizationpolicies", AUTHORIZATION_POLICY,
                  versions=(("v1", False), ("v1beta1", True))),
        ],
        "operators/servicemeshoperator3": [
            crd("sailoperator.io", "Istio", "istios", [("v1", True, ISTIO)], scope="Cluster", categories=["istio-io"],
                columns=[col("Namespace", ".spec.namespace"), col("Profile", ".spec.profile"),
                         col("Status", ".status.state"), col("Version", ".spec.version"), AGE]),
            crd("sailoperator.io", "IstioCNI", "istiocnis", [("v1", True, ISTIO_CNI)], scope="Cluster",
                categories=["istio-io"],
                columns=[col("Namespace", ".spec.namespace"), col("Status", ".status.state"),
                         col("Version", ".spec.version"), AGE]),
        ],
        "operators/kiali-ossm": [
            crd("kiali.io", "Kiali", "kialis", [("v1alpha1", True, root(OPEN))]),
        ],
        "operators/elasticsearch-operator": [
            crd("logging.openshift.io", "Elasticsearch", "elasticsearches", [("v1", True, root(OPEN))],
                short=["es"]),
        ],
    }


class _CrdDumper(yaml.SafeDumper):
    """Spells out shared sub-schemas (no YAML aliases) and indents lists the way yamllint expects."""

    def ignore_aliases(self, data):
        return True

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def _long_string(dumper, value):
    # a long unbreakable string (the Route host pattern) on a line of its own keeps yamllint's 120 columns
    style = "|" if len(value) > 80 and " " not in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_CrdDumper.add_representer(str, _long_string)


def render(doc) -> str:
    return yaml.dump(doc, Dumper=_CrdDumper, sort_keys=False, width=120, explicit_start=True)


def expected_files():
    """{path relative to lab/crds: YAML text}"""
    return {f"{folder}/{doc['metadata']['name']}.yaml": render(doc)
            for folder, docs in all_crds().items() for doc in docs}


def main():
    for rel, text in expected_files().items():
        path = CRD_DIR / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(CRD_DIR.parent.parent)}")


if __name__ == "__main__":
    main()
