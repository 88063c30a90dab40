"""Emulated Operator Lifecycle Manager: Subscription -> InstallPlan -> ClusterServiceVersion -> operator.

What behaves like real OLM (v0.2x on OpenShift 4.x):
- a Subscription to a package or channel the catalog lacks gets condition ``ResolutionFailed`` with
  OLM's "constraints not satisfiable: no operators found ..." message and no InstallPlan;
- otherwise an InstallPlan (``install-xxxxx``, owned by the Subscription) with ``spec.approval`` from
  ``installPlanApproval`` and ``spec.approved`` true only for Automatic; a Manual plan waits in phase
  ``RequiresApproval`` until someone sets ``spec.approved: true``;
- the approved plan goes ``Installing`` -> ``Complete``, creating the operator's CRDs and its CSV;
- the CSV walks Pending -> InstallReady -> Installing -> Succeeded; it leaves Pending only once its
  CRDs are Established, and it creates the operator Deployment (owned by the CSV);
- the Subscription reports ``currentCSV``, ``installPlanRef``/``installplan``, ``state``
  (``UpgradePending`` then ``AtLatestKnown``), ``installedCSV`` and ``CatalogSourcesUnhealthy`` False;
- deleting a Subscription leaves the CSV; deleting a CSV removes its Deployment but keeps the CRDs.

Simplified: one catalog (``catalog.py``), one bundle per channel, no upgrades/replaces graph, no
copied CSVs in other namespaces, no RBAC/ServiceAccount steps, and the CSV does not wait for its
Deployment to become Available (the lab may run no node for it). Phase steps are spaced by
``MESHLAB_OLM_STEP_SECONDS`` (default 0.75 s) so that clients can observe them, as on a real cluster.
"""
import logging
import os
import secrets
import string

from meshlab_lab.operators import catalog, crds
from meshlab_lab.operators.rest import now_rfc3339, path
from meshlab_lab.operators.status import condition, same
from meshlab_lab.operators.workqueue import Controller

LOG = logging.getLogger(__name__)
V1A1 = "operators.coreos.com/v1alpha1"
SUBS, IPS, CSVS = (path(V1A1, p) for p in ("subscriptions", "installplans", "clusterserviceversions"))
BY_CSV = {p.csv_name: p for p in catalog.PACKAGES.values()}
STEP_SECONDS = float(os.environ.get("MESHLAB_OLM_STEP_SECONDS", "0.75"))
CSV_PHASES = {  # phase -> (reason, message)
    "Pending": ("RequirementsUnknown", "requirements not yet checked"),
    "PendingNotMet": ("RequirementsNotMet", "one or more requirements couldn't be found"),
    "InstallReady": ("AllRequirementsMet", "all requirements found, attempting install"),
    "Installing": ("InstallWaiting", "installing: waiting for deployment {dep} to become ready"),
    "Succeeded": ("InstallSucceeded", "install strategy completed with no errors"),
}


def _ref(obj: dict) -> dict:
    meta = obj["metadata"]
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"],
            "namespace": meta["namespace"], "uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}


def _owner(obj: dict, controller: bool = False) -> dict:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": controller, "blockOwnerDeletion": False}


def resolution_error(sub: dict) -> str | None:
    """OLM's resolver message for a Subscription this catalog cannot satisfy, else None."""
    spec, name = sub["spec"], sub["metadata"]["name"]
    tail = f"subscription {name}, subscription {name} exists"
    if spec.get("source") != catalog.CATALOG or spec.get("sourceNamespace") != catalog.MARKETPLACE_NS:
        return (f"constraints not satisfiable: no operators found from catalog {spec.get('source')} in namespace "
                f"{spec.get('sourceNamespace')} referenced by {tail}")
    pkg = catalog.PACKAGES.get(spec["name"])
    if pkg is None:
        return (f"constraints not satisfiable: no operators found in package {spec['name']} "
                f"in the catalog referenced by {tail}")
    channel = spec.get("channel") or pkg.default_channel
    if channel not in pkg.channels:
        return (f"constraints not satisfiable: no operators found in channel {channel} of package {spec['name']} "
                f"in the catalog referenced by {tail}")
    return None


class OlmController(Controller):
    name = "olm"

    def __init__(self, rest, stop):
        super().__init__(rest, stop)
        self.csv_cache: dict[tuple[str, str], dict] = {}
        self.sub_cache: dict[tuple[str, str], dict] = {}

    def watches(self):
        return [(SUBS, self._on_sub), (IPS, self._on_ip), (CSVS, self._on_csv), (crds.CRD_PATH, self._on_crd)]

    # --- event handlers -----------------------------------------------------------------------------
    def _on_sub(self, event, obj):
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if event == "DELETED":
            self.sub_cache.pop(key, None)
        else:
            self.sub_cache[key] = obj
            self.queue.add(("sub",) + key)

    def _on_ip(self, event, obj):
        ns = obj["metadata"]["namespace"]
        if event != "DELETED":
            self.queue.add(("ip", ns, obj["metadata"]["name"]))
        for ref in obj["metadata"].get("ownerReferences", []):
            if ref.get("kind") == "Subscription":
                self.queue.add(("sub", ns, ref["name"]))

    def _on_csv(self, event, obj):
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if event == "DELETED":
            self.csv_cache.pop(key, None)
        else:
            self.csv_cache[key] = obj
        self.queue.add(("csv",) + key)
        for (ns, name), sub in list(self.sub_cache.items()):
            if ns == key[0] and sub.get("status", {}).get("currentCSV") == key[1]:
                self.queue.add(("sub", ns, name))

    def _on_crd(self, event, obj):
        owners = {pkg.csv_name for pkg in catalog.PACKAGES.values()
                  if obj["metadata"]["name"] in {c[0] for c in pkg.owned_crds}}
        for ns, name in list(self.csv_cache):
            if name in owners:
                self.queue.add(("csv", ns, name))

    # --- reconcile ----------------------------------------------------------------------------------
    def reconcile(self, key):
        kind, ns, name = key
        return {"sub": self._subscription, "ip": self._install_plan, "csv": self._csv}[kind](ns, name)

    def _subscription(self, ns, name):
        sub = self.rest.get(path(V1A1, "subscriptions", ns, name))
        if sub is None:
            return None
        status = sub.get("status") or {}
        previous = status.get("conditions", [])
        healthy = condition("CatalogSourcesUnhealthy", "False", "AllCatalogSourcesHealthy",
                             "all available catalogsources are healthy", previous)
        desired = {"catalogHealth": self._catalog_health(), "lastUpdated": now_rfc3339()}
        error = resolution_error(sub)
        if error:
            desired["conditions"] = [healthy, condition("ResolutionFailed", "True", "ConstraintsNotSatisfiable",
                                                         error, previous)]
            return self._write_sub_status(sub, desired)
        pkg = catalog.PACKAGES[sub["spec"]["name"]]
        plan = self._plan_for(sub, pkg)
        desired.update({"currentCSV": pkg.csv_name, "installPlanGeneration": 1,
                        "installPlanRef": _ref(plan),
                        "installplan": {"apiVersion": V1A1, "kind": "InstallPlan", "name": plan["metadata"]["name"],
                                        "uuid": plan["metadata"]["uid"]}})
        phase = (plan.get("status") or {}).get("phase", "")
        csv = self.rest.get(path(V1A1, "clusterserviceversions", ns, pkg.csv_name))
        if phase == "Complete" and csv is not None:
            desired.update({"installedCSV": pkg.csv_name, "state": "AtLatestKnown", "conditions": [healthy]})
        else:
            reason = "RequiresApproval" if phase in ("", "RequiresApproval") and not plan["spec"]["approved"] \
                else "Installing"
            desired.update({"state": "UpgradePending", "conditions": [
                healthy, condition("InstallPlanPending", "True", reason, "", previous)]})
        return self._write_sub_status(sub, desired)

    def _catalog_health(self):
        source = self.rest.get(path(V1A1, "catalogsources", catalog.MARKETPLACE_NS, catalog.CATALOG))
        if source is None:
            return []
        return [{"catalogSourceRef": _ref(source), "healthy": True, "lastUpdated": now_rfc3339()}]

    def _write_sub_status(self, sub, desired):
        current = sub.get("status") or {}
        comparable = {k: v for k, v in current.items() if k in desired}
        if same(comparable, desired) and set(current) == set(desired):
            return None
        meta = sub["metadata"]
        patch = dict(desired, **{k: None for k in current if k not in desired})
        self.rest.merge_patch(path(V1A1, "subscriptions", meta["namespace"], meta["name"]) + "/status",
                              {"status": patch})
        return None

    def _plan_for(self, sub, pkg):
        ns = sub["metadata"]["namespace"]
        ref = (sub.get("status") or {}).get("installPlanRef")
        if ref:
            plan = self.rest.get(path(V1A1, "installplans", ns, ref["name"]))
            if plan is not None:
                return plan
        manual = sub["spec"].get("installPlanApproval") == "Manual"
        suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))
        plan = self.rest.create(path(V1A1, "installplans", ns), {
            "apiVersion": V1A1, "kind": "InstallPlan",
            "metadata": {"name": f"install-{suffix}", "namespace": ns, "ownerReferences": [_owner(sub)],
                         "labels": {f"operators.coreos.com/{pkg.name}.{ns}": ""}},
            "spec": {"approval": "Manual" if manual else "Automatic", "approved": not manual,
                     "clusterServiceVersionNames": [pkg.csv_name], "generation": 1,
                     "source": catalog.CATALOG, "sourceNamespace": catalog.MARKETPLACE_NS}})
        self._write_plan_status(plan, "RequiresApproval" if manual else "Installing", "Unknown")
        # record the plan at once so that a retry cannot create a second one
        self.rest.merge_patch(path(V1A1, "subscriptions", ns, sub["metadata"]["name"]) + "/status",
                              {"status": {"installPlanRef": _ref(plan), "lastUpdated": now_rfc3339()}})
        return self.rest.get(path(V1A1, "installplans", ns, plan["metadata"]["name"]))

    def _write_plan_status(self, plan, phase, step_status, conditions=None):
        pkg = BY_CSV[plan["spec"]["clusterServiceVersionNames"][0]]
        steps = [{"resolving": pkg.csv_name, "status": step_status,
                  "resource": {"group": "apiextensions.k8s.io", "version": "v1", "kind": "CustomResourceDefinition",
                               "name": crd_name, "sourceName": catalog.CATALOG,
                               "sourceNamespace": catalog.MARKETPLACE_NS}} for crd_name, _, _ in pkg.owned_crds]
        steps.append({"resolving": pkg.csv_name, "status": step_status,
                      "resource": {"group": "operators.coreos.com", "version": "v1alpha1",
                                   "kind": "ClusterServiceVersion", "name": pkg.csv_name,
                                   "sourceName": catalog.CATALOG, "sourceNamespace": catalog.MARKETPLACE_NS}})
        status = {"phase": phase, "catalogSources": [catalog.CATALOG], "plan": steps,
                  "conditions": conditions or [], "startTime": (plan.get("status") or {}).get("startTime")
                  or now_rfc3339()}
        meta = plan["metadata"]
        self.rest.merge_patch(path(V1A1, "installplans", meta["namespace"], meta["name"]) + "/status",
                              {"status": status})

    def _install_plan(self, ns, name):
        plan = self.rest.get(path(V1A1, "installplans", ns, name))
        if plan is None:
            return None
        phase = (plan.get("status") or {}).get("phase", "")
        if phase == "Complete":
            return None
        if not plan["spec"].get("approved"):
            if phase != "RequiresApproval":
                self._write_plan_status(plan, "RequiresApproval", "Unknown")
            return None
        if phase != "Installing":
            self._write_plan_status(plan, "Installing", "Unknown")
            return STEP_SECONDS
        pkg = BY_CSV[plan["spec"]["clusterServiceVersionNames"][0]]
        if pkg.crd_folder:
            for crd in crds.manifests(pkg.crd_folder):
                crds.apply(self.rest, crd)
        self.rest.ensure(path(V1A1, "clusterserviceversions", ns), self._csv_manifest(pkg, ns))
        self._write_plan_status(plan, "Complete", "Created",
                                [condition("Installed", "True")])
        return None

    @staticmethod
    def _csv_manifest(pkg, ns):
        deployment_spec = {"replicas": 1, "selector": {"matchLabels": {"name": pkg.deployment}},
                           "template": {"metadata": {"labels": {"name": pkg.deployment}},
                                        "spec": {"containers": [{"name": pkg.deployment, "image": pkg.image}]}}}
        desc = catalog.csv_description(pkg)
        return {"apiVersion": V1A1, "kind": "ClusterServiceVersion",
                "metadata": {"name": pkg.csv_name, "namespace": ns,
                             "labels": {f"operators.coreos.com/{pkg.name}.{ns}": ""},
                             "annotations": {"olm.operatorGroup": "global-operators",
                                             "olm.operatorNamespace": ns, "olm.targetNamespaces": ""}},
                "spec": {"displayName": desc["displayName"], "version": pkg.version, "provider": desc["provider"],
                         "installModes": desc["installModes"],
                         "customresourcedefinitions": desc["customresourcedefinitions"],
                         "install": {"strategy": "deployment", "spec": {"deployments": [
                             {"name": pkg.deployment, "spec": deployment_spec}]}}}}

    def _csv(self, ns, name):
        pkg = BY_CSV.get(name)
        csv = self.rest.get(path(V1A1, "clusterserviceversions", ns, name))
        if pkg is None:
            return None
        if csv is None:
            # like OLM: the operator Deployment goes with its CSV, the CRDs stay
            self.rest.delete(path("apps/v1", "deployments", ns, pkg.deployment))
            return None
        phase = (csv.get("status") or {}).get("phase", "")
        if phase == "":
            self._set_csv_phase(csv, "Pending", pkg)
            return STEP_SECONDS
        if phase == "Pending":
            if not crds.all_established(self.rest, [c[0] for c in pkg.owned_crds]):
                self._set_csv_phase(csv, "PendingNotMet", pkg)
                return None  # the CRD watch re-queues this CSV
            self._set_csv_phase(csv, "InstallReady", pkg)
            return STEP_SECONDS
        if phase == "InstallReady":
            self.rest.ensure(path("apps/v1", "deployments", ns), self._deployment(csv, pkg))
            self._set_csv_phase(csv, "Installing", pkg)
            return STEP_SECONDS
        if phase == "Installing":
            self._set_csv_phase(csv, "Succeeded", pkg)
        return None

    @staticmethod
    def _deployment(csv, pkg):
        ns = csv["metadata"]["namespace"]
        spec = csv["spec"]["install"]["spec"]["deployments"][0]["spec"]
        return {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": pkg.deployment, "namespace": ns, "ownerReferences": [_owner(csv)],
                             "labels": {"olm.owner": pkg.csv_name, "olm.owner.kind": "ClusterServiceVersion",
                                        "olm.owner.namespace": ns, f"operators.coreos.com/{pkg.name}.{ns}": ""}},
                "spec": spec}

    def _set_csv_phase(self, csv, step, pkg):
        phase = "Pending" if step == "PendingNotMet" else step
        reason, message = CSV_PHASES[step]
        message = message.format(dep=pkg.deployment)
        status = csv.get("status") or {}
        if status.get("phase") == phase and status.get("reason") == reason:
            return
        now = now_rfc3339()
        conditions = list(status.get("conditions", [])) + [
            {"phase": phase, "reason": reason, "message": message, "lastTransitionTime": now, "lastUpdateTime": now}]
        meta = csv["metadata"]
        present = step != "PendingNotMet"
        self.rest.merge_patch(path(V1A1, "clusterserviceversions", meta["namespace"], meta["name"]) + "/status",
                              {"status": {"phase": phase, "reason": reason, "message": message,
                                          "lastTransitionTime": now, "lastUpdateTime": now,
                                          "conditions": conditions[-10:],
                                          "requirementStatus": [
                                              {"group": "apiextensions.k8s.io", "version": "v1",
                                               "kind": "CustomResourceDefinition", "name": c[0],
                                               "status": "Present" if present else "NotPresent",
                                               "message": "CRD is present and Established condition is true"
                                               if present else "CRD is not present"}
                                              for c in pkg.owned_crds]}})
        LOG.info("CSV %s/%s -> %s (%s)", meta["namespace"], meta["name"], phase, reason)
