"""The emulated OLM through a real kube-apiserver 1.20 (bare: no controller-manager, no nodes)."""
import pytest

from meshlab_lab.k8s import wait_for
from meshlab_lab.operators import testing
from meshlab_lab.operators.rest import ApiError, path

pytestmark = [pytest.mark.skipif(testing.missing_binaries() is not None, reason=str(testing.missing_binaries())),
              pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]

V1A1 = "operators.coreos.com/v1alpha1"
OPS = "openshift-operators"
MARKET = "openshift-marketplace"
CRD = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


@pytest.fixture(scope="module")
def rest():
    server = testing.apiserver()
    testing.operators_addon(server)
    return testing.client(server)


def subscribe(rest, name, package, channel="stable", approval="Automatic", ns=OPS):
    return rest.create(path(V1A1, "subscriptions", ns), {
        "apiVersion": V1A1, "kind": "Subscription", "metadata": {"name": name, "namespace": ns},
        "spec": {"name": package, "channel": channel, "source": "redhat-operators", "sourceNamespace": MARKET,
                 "installPlanApproval": approval}})


def get(rest, plural, name, ns=OPS):
    return rest.get(path(V1A1, plural, ns, name))


def csv_phase(rest, name):
    csv = get(rest, "clusterserviceversions", name)
    return (csv or {}).get("status", {}).get("phase")


def remove_crd(rest, crd_name):
    """Start from a cluster without this CRD (another test module may have installed it)."""
    rest.delete(f"{CRD}/{crd_name}")
    wait_for(lambda: rest.get(f"{CRD}/{crd_name}") is None, 60, f"CRD {crd_name} deleted")


def established(rest, crd_name):
    crd = rest.get(f"{CRD}/{crd_name}")
    return bool(crd) and any(c["type"] == "Established" and c["status"] == "True"
                             for c in crd.get("status", {}).get("conditions", []))


def test_catalog_offers_the_lab_packages_and_no_jaeger(rest):
    manifests = rest.list(path("packages.operators.coreos.com/v1", "packagemanifests", MARKET))["items"]
    by_name = {m["metadata"]["name"]: m["status"] for m in manifests}
    assert set(by_name) == {"servicemeshoperator", "kiali-ossm", "elasticsearch-operator", "servicemeshoperator3"}
    mesh = by_name["servicemeshoperator"]
    assert (mesh["catalogSource"], mesh["catalogSourceNamespace"], mesh["defaultChannel"], mesh["packageName"]) == \
        ("redhat-operators", MARKET, "stable", "servicemeshoperator")
    stable = next(c for c in mesh["channels"] if c["name"] == "stable")
    assert stable["currentCSV"].startswith("servicemeshoperator.v2.6.")
    assert stable["currentCSVDesc"]["version"].startswith("2.6.")
    assert "stable-5.8" in {c["name"] for c in by_name["elasticsearch-operator"]["channels"]}
    assert by_name["kiali-ossm"]["channels"][0]["currentCSV"].startswith("kiali-operator.v1.73.")
    source = rest.get(path(V1A1, "catalogsources", MARKET, "redhat-operators"))
    assert source["status"]["connectionState"]["lastObservedState"] == "READY"
    group = rest.get(path("operators.coreos.com/v1", "operatorgroups", OPS, "global-operators"))
    assert group["status"]["namespaces"] == [""]


def test_automatic_subscription_installs_csv_crds_and_deployment(rest):
    remove_crd(rest, "kialis.kiali.io")
    subscribe(rest, "kiali-ossm", "kiali-ossm")
    csv_name = wait_for(lambda: (get(rest, "subscriptions", "kiali-ossm").get("status") or {}).get("currentCSV"),
                        30, "currentCSV")
    wait_for(lambda: csv_phase(rest, csv_name) == "Succeeded", 60, "CSV Succeeded")
    sub = get(rest, "subscriptions", "kiali-ossm")
    wait_for(lambda: get(rest, "subscriptions", "kiali-ossm")["status"].get("state") == "AtLatestKnown", 30,
             "Subscription AtLatestKnown")
    sub = get(rest, "subscriptions", "kiali-ossm")
    assert sub["status"]["installedCSV"] == sub["status"]["currentCSV"] == csv_name
    assert {c["type"]: c["status"] for c in sub["status"]["conditions"]}["CatalogSourcesUnhealthy"] == "False"
    plan = get(rest, "installplans", sub["status"]["installPlanRef"]["name"])
    assert plan["spec"]["approval"] == "Automatic" and plan["spec"]["approved"] is True
    assert plan["spec"]["clusterServiceVersionNames"] == [csv_name]
    assert plan["status"]["phase"] == "Complete"
    csv = get(rest, "clusterserviceversions", csv_name)
    phases = [c["phase"] for c in csv["status"]["conditions"]]
    assert phases[0] == "Pending" and phases[-1] == "Succeeded"
    assert phases.index("InstallReady") < phases.index("Installing") < phases.index("Succeeded")
    assert csv["status"]["reason"] == "InstallSucceeded"
    assert established(rest, "kialis.kiali.io")
    deployment = rest.get(path("apps/v1", "deployments", OPS, "kiali-operator"))
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "ClusterServiceVersion"


def test_manual_install_plan_waits_for_approval(rest):
    remove_crd(rest, "istios.sailoperator.io")
    subscribe(rest, "servicemeshoperator3", "servicemeshoperator3", approval="Manual")

    def plan():
        ref = (get(rest, "subscriptions", "servicemeshoperator3").get("status") or {}).get("installPlanRef")
        found = ref and get(rest, "installplans", ref["name"])
        return found if found and (found.get("status") or {}).get("phase") == "RequiresApproval" else None

    waiting = wait_for(plan, 30, "InstallPlan RequiresApproval")
    assert waiting["spec"]["approval"] == "Manual" and waiting["spec"]["approved"] is False
    csv_name = waiting["spec"]["clusterServiceVersionNames"][0]
    sub = wait_for(lambda: (s := get(rest, "subscriptions", "servicemeshoperator3"))["status"].get("state") and s,
                   30, "Subscription state")
    assert sub["status"]["state"] == "UpgradePending"
    pending = {c["type"]: c for c in sub["status"]["conditions"]}["InstallPlanPending"]
    assert (pending["status"], pending["reason"]) == ("True", "RequiresApproval")
    assert get(rest, "clusterserviceversions", csv_name) is None
    assert rest.get(f"{CRD}/istios.sailoperator.io") is None

    rest.merge_patch(path(V1A1, "installplans", OPS, waiting["metadata"]["name"]), {"spec": {"approved": True}})
    wait_for(lambda: csv_phase(rest, csv_name) == "Succeeded", 60, "CSV Succeeded after approval")
    assert established(rest, "istios.sailoperator.io") and established(rest, "istiocnis.sailoperator.io")


@pytest.mark.parametrize(("name", "package", "channel", "expected"), [
    ("jaeger-product", "jaeger-product", "stable",
     "constraints not satisfiable: no operators found in package jaeger-product in the catalog referenced by "
     "subscription jaeger-product"),
    ("mesh-candidate", "servicemeshoperator", "candidate",
     "no operators found in channel candidate of package servicemeshoperator in the catalog referenced by "
     "subscription mesh-candidate"),
])
def test_unresolvable_subscription_fails_resolution_without_install_plan(rest, name, package, channel, expected):
    subscribe(rest, name, package, channel=channel)

    def failed():
        conditions = (get(rest, "subscriptions", name).get("status") or {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == "ResolutionFailed" and c["status"] == "True"), None)

    condition = wait_for(failed, 30, "ResolutionFailed")
    assert condition["reason"] == "ConstraintsNotSatisfiable"
    assert expected in condition["message"]
    assert "installPlanRef" not in get(rest, "subscriptions", name)["status"]
    owned = [p for p in rest.list(path(V1A1, "installplans", OPS))["items"]
             if any(r["name"] == name for r in p["metadata"].get("ownerReferences", []))]
    assert owned == []


def test_subscription_without_source_is_rejected_by_the_api_server(rest):
    with pytest.raises(ApiError) as err:
        rest.create(path(V1A1, "subscriptions", OPS), {
            "apiVersion": V1A1, "kind": "Subscription", "metadata": {"name": "no-source"},
            "spec": {"name": "servicemeshoperator", "sourceNamespace": MARKET}})
    assert err.value.status == 422
    assert "spec.source" in str(err.value)


def test_deleting_subscription_keeps_csv_and_deleting_csv_removes_deployment_not_crds(rest):
    subscribe(rest, "elasticsearch-operator", "elasticsearch-operator", channel="stable-5.8")
    csv_name = wait_for(lambda: (get(rest, "subscriptions", "elasticsearch-operator").get("status") or {})
                        .get("installedCSV"), 60, "installedCSV")
    wait_for(lambda: csv_phase(rest, csv_name) == "Succeeded", 60, "CSV Succeeded")
    deployment = path("apps/v1", "deployments", OPS, "elasticsearch-operator")
    assert rest.get(deployment) is not None

    rest.delete(path(V1A1, "subscriptions", OPS, "elasticsearch-operator"))
    wait_for(lambda: get(rest, "subscriptions", "elasticsearch-operator") is None, 30, "Subscription gone")
    assert csv_phase(rest, csv_name) == "Succeeded"

    rest.delete(path(V1A1, "clusterserviceversions", OPS, csv_name))
    wait_for(lambda: rest.get(deployment) is None, 30, "operator Deployment removed with its CSV")
    assert established(rest, "elasticsearches.logging.openshift.io")
