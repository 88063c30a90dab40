"""The lab's `redhat-operators` catalog: what OpenShift's marketplace offers for this lab, and nothing more.

Emulation notes: on OpenShift, PackageManifests come from the aggregated API
``packages.operators.coreos.com/v1`` (package-server) and are visible in every namespace. The lab serves
them from a CRD stand-in, in ``openshift-marketplace`` only, with the same ``status`` shape.
`jaeger-product` is deliberately absent (it left the catalog), so subscribing to it fails like on a
current cluster.
"""
from dataclasses import dataclass, field

from meshlab_lab.operators.rest import now_rfc3339, path

MARKETPLACE_NS = "openshift-marketplace"
OPERATORS_NS = "openshift-operators"
CATALOG = "redhat-operators"
CATALOG_DISPLAY = "Red Hat Operators"
PUBLISHER = "Red Hat"
REGISTRY = "registry.redhat.io"


@dataclass(frozen=True)
class Package:
    name: str
    display_name: str
    version: str
    csv_prefix: str
    channels: tuple[str, ...]
    default_channel: str
    deployment: str
    image: str
    crd_folder: str | None = None
    owned_crds: tuple[tuple[str, str, str], ...] = field(default=())  # (crd name, version, kind)

    @property
    def csv_name(self) -> str:
        return f"{self.csv_prefix}.v{self.version}"


MESH2_VERSION = "2.6.4"
PACKAGES = {p.name: p for p in (
    Package("servicemeshoperator", "Red Hat OpenShift Service Mesh 2", MESH2_VERSION, "servicemeshoperator",
            ("stable",), "stable", "istio-operator",
            f"{REGISTRY}/openshift-service-mesh/istio-rhel8-operator:{MESH2_VERSION}",
            "operators/servicemeshoperator",
            (("servicemeshcontrolplanes.maistra.io", "v2", "ServiceMeshControlPlane"),
             ("servicemeshmemberrolls.maistra.io", "v1", "ServiceMeshMemberRoll"),
             ("servicemeshmembers.maistra.io", "v1", "ServiceMeshMember"))),
    Package("kiali-ossm", "Kiali Operator", "1.73.10", "kiali-operator", ("stable",), "stable", "kiali-operator",
            f"{REGISTRY}/openshift-service-mesh/kiali-rhel8-operator:1.73.10", "operators/kiali-ossm",
            (("kialis.kiali.io", "v1alpha1", "Kiali"),)),
    Package("elasticsearch-operator", "OpenShift Elasticsearch Operator", "5.8.15", "elasticsearch-operator",
            ("stable", "stable-5.8"), "stable-5.8", "elasticsearch-operator",
            f"{REGISTRY}/openshift-logging/elasticsearch-rhel9-operator:v5.8.15", "operators/elasticsearch-operator",
            (("elasticsearches.logging.openshift.io", "v1", "Elasticsearch"),)),
    Package("servicemeshoperator3", "Red Hat OpenShift Service Mesh 3", "3.1.0", "servicemeshoperator3",
            ("stable", "stable-3.1"), "stable", "servicemesh-operator3",
            f"{REGISTRY}/openshift-service-mesh/istio-sail-operator-rhel9:3.1.0", "operators/servicemeshoperator3",
            (("istios.sailoperator.io", "v1", "Istio"), ("istiocnis.sailoperator.io", "v1", "IstioCNI"))),
)}


def csv_description(pkg: Package) -> dict:
    return {
        "displayName": pkg.display_name, "version": pkg.version, "provider": {"name": "Red Hat, Inc."},
        "installModes": install_modes(),
        "customresourcedefinitions": {"owned": [{"name": n, "version": v, "kind": k} for n, v, k in pkg.owned_crds]},
        "annotations": {"operators.openshift.io/valid-subscription": '["OpenShift Container Platform"]'},
    }


def install_modes() -> list[dict]:
    return [{"type": "OwnNamespace", "supported": False}, {"type": "SingleNamespace", "supported": False},
            {"type": "MultiNamespace", "supported": False}, {"type": "AllNamespaces", "supported": True}]


def package_manifest(pkg: Package) -> dict:
    channels = [{"name": ch, "currentCSV": pkg.csv_name, "currentCSVDesc": csv_description(pkg),
                 "entries": [{"name": pkg.csv_name, "version": pkg.version}]} for ch in pkg.channels]
    return {
        "apiVersion": "packages.operators.coreos.com/v1", "kind": "PackageManifest",
        "metadata": {"name": pkg.name, "namespace": MARKETPLACE_NS,
                     # the real API shows provider "Red Hat"; a CRD object needs a valid label value
                     "labels": {"catalog": CATALOG, "catalog-namespace": MARKETPLACE_NS, "provider": "Red-Hat",
                                "operatorframework.io/arch.amd64": "supported",
                                "operatorframework.io/os.linux": "supported"}},
        "spec": {},
        "status": {"catalogSource": CATALOG, "catalogSourceDisplayName": CATALOG_DISPLAY,
                   "catalogSourceNamespace": MARKETPLACE_NS, "catalogSourcePublisher": PUBLISHER,
                   "packageName": pkg.name, "defaultChannel": pkg.default_channel,
                   "provider": {"name": PUBLISHER}, "channels": channels},
    }


def catalog_source() -> dict:
    return {"apiVersion": "operators.coreos.com/v1alpha1", "kind": "CatalogSource",
            "metadata": {"name": CATALOG, "namespace": MARKETPLACE_NS},
            "spec": {"sourceType": "grpc", "displayName": CATALOG_DISPLAY, "publisher": PUBLISHER,
                     "image": f"{REGISTRY}/redhat/redhat-operator-index:v4.16", "priority": -100,
                     "updateStrategy": {"registryPoll": {"interval": "10m"}}}}


def install_base(rest) -> None:
    """Namespaces, CatalogSource (healthy), PackageManifests and the global OperatorGroup, idempotently."""
    for ns in (OPERATORS_NS, MARKETPLACE_NS):
        rest.ensure(path("v1", "namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    catsrc_path = path("operators.coreos.com/v1alpha1", "catalogsources", MARKETPLACE_NS)
    rest.ensure(catsrc_path, catalog_source())
    rest.merge_patch(f"{catsrc_path}/{CATALOG}/status", {"status": {
        "connectionState": {"address": f"{CATALOG}.{MARKETPLACE_NS}.svc:50051", "lastObservedState": "READY",
                            "lastConnect": now_rfc3339()}}})
    pm_path = path("packages.operators.coreos.com/v1", "packagemanifests", MARKETPLACE_NS)
    for pkg in PACKAGES.values():
        wanted = package_manifest(pkg)
        current = rest.ensure(pm_path, wanted)
        if current.get("status") != wanted["status"]:
            rest.merge_patch(f"{pm_path}/{pkg.name}", {"status": wanted["status"]})
    og_path = path("operators.coreos.com/v1", "operatorgroups", OPERATORS_NS)
    rest.ensure(og_path, {"apiVersion": "operators.coreos.com/v1", "kind": "OperatorGroup",
                          "metadata": {"name": "global-operators", "namespace": OPERATORS_NS}, "spec": {}})
    rest.merge_patch(f"{og_path}/global-operators/status",
                     {"status": {"namespaces": [""], "lastUpdated": now_rfc3339()}})
