"""Emulated Red Hat OpenShift Service Mesh 2.6 operator (maistra istio-operator), active while its CSV is Succeeded.

Like the real operator:
- the validating webhook ``smcp.validation.maistra.io`` rejects an SMCP in the operator's namespace,
  a second SMCP in a namespace ("only one service mesh may be installed per project/namespace"),
  v1 resources, unknown versions and versions below v2.4 ("Only '[v2.4 v2.5 v2.6]' versions are
  supported", the 2.6 operator's wording);
- an SMCP becomes Deployments/Services/ServiceAccounts (``istiod-<name>``, ``istio-ingressgateway``,
  ``istio-egressgateway``, ``kiali``/``prometheus``/``grafana``/``jaeger`` when enabled) owned by it and
  labelled ``maistra.io/owner``; its finalizer ``maistra.io/istio-operator`` removes them on deletion;
- the mesh-wide PeerAuthentication ``default`` is PERMISSIVE unless ``security.dataPlane.mtls`` is
  true (then STRICT, with DestinationRules ``default`` for ``*.local`` and ``api-server``);
- status: ``Installed``/``Reconciled``/``Ready`` conditions, ``readiness.components``,
  ``annotations.readyComponentCount``, ``observedGeneration``, ``operatorVersion``, ``chartVersion``,
  ``appliedSpec``, ``appliedValues``; Ready is True (``ComponentsReady``) only when every component
  Deployment reports ``Available`` — the controller watches them;
- members: namespaces listed in SMMR ``default`` ``spec.members`` or holding an SMM ``default`` that
  points at the control plane get the label ``maistra.io/member-of``; SMMR ``default`` is created
  when an SMM appears; SMMR/SMM statuses report them; the label goes when membership ends or the SMCP goes.

Simplified: no Helm charts, no NetworkPolicies/RBAC/ConfigMaps, no mutating defaults on the SMCP,
no conversion webhook between v1 and v2 (both versions share one stored shape), no memberSelectors,
no IOR Routes. Sidecar injection and istiod itself are the mesh emulation's job (meshlab_lab.mesh).
"""
import logging
import re

from meshlab_lab.operators import catalog
from meshlab_lab.operators import smcp_manifests as M
from meshlab_lab.operators.rest import ApiError, path
from meshlab_lab.operators.status import condition, same
from meshlab_lab.operators.webhook import VWC_PATH
from meshlab_lab.operators.workqueue import Controller

LOG = logging.getLogger(__name__)
SMCP_V2, MAISTRA_V1 = "maistra.io/v2", "maistra.io/v1"
FINALIZER = "maistra.io/istio-operator"
MEMBER_LABEL = "maistra.io/member-of"
VWC_NAME = "openshift-operators.servicemesh-resources.maistra.io"
CSV_PATTERN = re.compile(r"^servicemeshoperator\.v2\.")
OWNED_KINDS = (("apps/v1", "deployments"), ("v1", "services"), ("v1", "serviceaccounts"),
               ("security.istio.io/v1beta1", "peerauthentications"),
               ("networking.istio.io/v1alpha3", "destinationrules"))


def validate_smcp(rest, request: dict) -> tuple[bool, str]:
    """The admission decision of the real SMCP validator, for the checks this lab needs."""
    obj = request.get("object") or {}
    if request.get("operation") not in ("CREATE", "UPDATE") or obj.get("metadata", {}).get("deletionTimestamp"):
        return True, ""
    ns = request.get("namespace") or obj["metadata"].get("namespace")
    name = request.get("name") or obj["metadata"].get("name")
    if ns == catalog.OPERATORS_NS:
        return False, "service mesh may not be installed in the same project/namespace as the operator"
    others = [s for s in rest.list(path(SMCP_V2, "servicemeshcontrolplanes", ns)).get("items", [])
              if s["metadata"]["name"] != name]
    if others:
        return False, "only one service mesh may be installed per project/namespace"
    if (request.get("kind") or {}).get("version") == "v1":
        return False, "must use v2 ServiceMeshControlPlane resource"
    version = (obj.get("spec") or {}).get("version") or M.DEFAULT_VERSION
    if version not in M.KNOWN_VERSIONS:
        return False, f"invalid Version specified; supported versions are: [{' '.join(M.KNOWN_VERSIONS)}]"
    if version not in M.SUPPORTED_VERSIONS:
        return False, f"Only '[{' '.join(M.SUPPORTED_VERSIONS)}]' versions are supported"
    return True, ""


def _deployment_state(dep: dict) -> str:
    conditions = (dep.get("status") or {}).get("conditions", [])
    available = next((c for c in conditions if c.get("type") == "Available"), None)
    if available is None:
        return "pending"
    return "ready" if available.get("status") == "True" else "unready"


class MaistraController(Controller):
    name = "maistra"

    def __init__(self, rest, stop, webhook_server):
        super().__init__(rest, stop)
        self.webhook = webhook_server
        self.active = False
        self.started_mesh_watches = False
        self.control_planes: set[str] = set()

    def watches(self):
        return [(path("operators.coreos.com/v1alpha1", "clusterserviceversions"), self._on_csv)]

    # --- activation ---------------------------------------------------------------------------------
    def _on_csv(self, event, obj):
        if CSV_PATTERN.match(obj["metadata"]["name"]):
            self.queue.add(("activation",))

    def _activation(self):
        csvs = self.rest.list(path("operators.coreos.com/v1alpha1", "clusterserviceversions")).get("items", [])
        active = any(CSV_PATTERN.match(c["metadata"]["name"]) and (c.get("status") or {}).get("phase") == "Succeeded"
                     and not c["metadata"].get("deletionTimestamp") for c in csvs)
        if active:
            self._register_webhook()
            if not self.started_mesh_watches:
                self.started_mesh_watches = True
                self.start_watch(path(SMCP_V2, "servicemeshcontrolplanes"), self._on_smcp)
                self.start_watch(path(MAISTRA_V1, "servicemeshmemberrolls"), self._on_smmr)
                self.start_watch(path(MAISTRA_V1, "servicemeshmembers"), self._on_smm)
                self.start_watch(path("apps/v1", "deployments"), self._on_deployment,
                                 label_selector=f"app.kubernetes.io/managed-by={M.MANAGED_BY}")
                self.start_watch(path("v1", "namespaces"), self._on_namespace)
        elif self.active:
            self.rest.delete(f"{VWC_PATH}/{VWC_NAME}")
        if active and not self.active:
            for smcp in self.rest.list(path(SMCP_V2, "servicemeshcontrolplanes")).get("items", []):
                self.queue.add(("smcp", smcp["metadata"]["namespace"], smcp["metadata"]["name"]))
        if active != self.active:
            LOG.info("service mesh operator %s", "active" if active else "inactive")
        self.active = active

    def _register_webhook(self):
        body = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": VWC_NAME, "labels": {"app.kubernetes.io/managed-by": M.MANAGED_BY}},
                "webhooks": [{
                    "name": "smcp.validation.maistra.io", "admissionReviewVersions": ["v1", "v1beta1"],
                    "sideEffects": "None", "failurePolicy": "Fail", "matchPolicy": "Exact", "timeoutSeconds": 10,
                    "clientConfig": {"url": self.webhook.url("/validate-smcp"), "caBundle": self.webhook.ca_bundle},
                    "rules": [{"apiGroups": ["maistra.io"], "apiVersions": ["v1", "v2"],
                               "operations": ["CREATE", "UPDATE"], "resources": ["servicemeshcontrolplanes"],
                               "scope": "Namespaced"}]}]}
        current = self.rest.get(f"{VWC_PATH}/{VWC_NAME}")
        if current is None:
            self.rest.create(VWC_PATH, body)
        elif current.get("webhooks", [{}])[0].get("clientConfig") != body["webhooks"][0]["clientConfig"]:
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            self.rest.call("PUT", f"{VWC_PATH}/{VWC_NAME}", body)

    # --- event handlers -----------------------------------------------------------------------------
    def _on_smcp(self, event, obj):
        ns = obj["metadata"]["namespace"]
        self.control_planes.add(ns)
        if event != "DELETED":
            self.queue.add(("smcp", ns, obj["metadata"]["name"]))
        self.queue.add(("members", ns))

    def _on_smmr(self, event, obj):
        self.queue.add(("members", obj["metadata"]["namespace"]))

    def _on_smm(self, event, obj):
        ref = (obj.get("spec") or {}).get("controlPlaneRef") or {}
        if ref.get("namespace"):
            self.control_planes.add(ref["namespace"])
            self.queue.add(("members", ref["namespace"]))

    def _on_deployment(self, event, obj):
        labels = obj["metadata"].get("labels", {})
        if "maistra.io/owner-name" in labels:
            self.queue.add(("smcp", obj["metadata"]["namespace"], labels["maistra.io/owner-name"]))

    def _on_namespace(self, event, obj):
        # a member namespace that appears, terminates or goes changes SMMR status
        if event in ("ADDED", "DELETED") or obj["metadata"].get("deletionTimestamp"):
            for cp_ns in list(self.control_planes):
                self.queue.add(("members", cp_ns))

    # --- reconcile ----------------------------------------------------------------------------------
    def reconcile(self, key):
        if key[0] == "activation":
            return self._activation()
        if not self.active:
            return None
        if key[0] == "smcp":
            return self._smcp(key[1], key[2])
        return self._members(key[1])

    def _smcp(self, ns, name):
        smcp_path = path(SMCP_V2, "servicemeshcontrolplanes", ns, name)
        smcp = self.rest.get(smcp_path)
        if smcp is None:
            return None
        finalizers = smcp["metadata"].get("finalizers", [])
        if smcp["metadata"].get("deletionTimestamp"):
            self._remove_owned(ns, name, keep=set())
            if FINALIZER in finalizers:
                self.rest.merge_patch(smcp_path, {"metadata": {
                    "finalizers": [f for f in finalizers if f != FINALIZER],
                    "resourceVersion": smcp["metadata"]["resourceVersion"]}})
            self.queue.add(("members", ns))
            return None
        if FINALIZER not in finalizers:
            smcp = self.rest.merge_patch(smcp_path, {"metadata": {
                "finalizers": finalizers + [FINALIZER], "resourceVersion": smcp["metadata"]["resourceVersion"]}})
        applied = M.applied_spec(smcp.get("spec"))
        wanted = M.components(smcp, applied)
        keep = set()
        for _, account, deployment, service in wanted:
            self.rest.ensure(path("v1", "serviceaccounts", ns), account)
            self._apply(path("v1", "services", ns), service)
            self._apply(path("apps/v1", "deployments", ns), deployment)
            keep |= {("serviceaccounts", account["metadata"]["name"]), ("services", service["metadata"]["name"]),
                     ("deployments", deployment["metadata"]["name"])}
        pa, drs = M.mesh_wide_policy(smcp, applied)
        self._apply(path("security.istio.io/v1beta1", "peerauthentications", ns), pa)
        keep.add(("peerauthentications", "default"))
        for dr in drs:
            self._apply(path("networking.istio.io/v1alpha3", "destinationrules", ns), dr)
            keep.add(("destinationrules", dr["metadata"]["name"]))
        self._remove_owned(ns, name, keep)
        self._write_status(smcp, applied, [c for c, _, _, _ in wanted])
        return None

    def _apply(self, collection, body, fields=("spec",)):
        """Create ``body``, or bring the given top-level ``fields`` of an existing object back to it."""
        current = self.rest.ensure(collection, body)
        if any(not _contains(current.get(f), body.get(f)) for f in fields):
            self.rest.merge_patch(f"{collection}/{body['metadata']['name']}", {f: body[f] for f in fields})

    def _remove_owned(self, ns, name, keep):
        """Delete what this SMCP created except ``keep`` ({(plural, name)})."""
        selector = f"maistra.io/owner-name={name},app.kubernetes.io/managed-by={M.MANAGED_BY}"
        for api, plural in OWNED_KINDS:
            try:
                items = self.rest.list(path(api, plural, ns), labelSelector=selector).get("items", [])
            except ApiError as exc:
                if exc.status == 404:
                    continue
                raise
            for item in items:
                if (plural, item["metadata"]["name"]) not in keep:
                    self.rest.delete(path(api, plural, ns, item["metadata"]["name"]))

    def _write_status(self, smcp, applied, component_names):
        ns, name = smcp["metadata"]["namespace"], smcp["metadata"]["name"]
        deployments = self.rest.list(path("apps/v1", "deployments", ns),
                                     labelSelector=f"maistra.io/owner-name={name}").get("items", [])
        by_component = {d["metadata"]["labels"].get("app.kubernetes.io/component"): d for d in deployments}
        readiness = {"ready": [], "pending": [], "unready": []}
        for component in component_names:
            dep = by_component.get(component)
            readiness[_deployment_state(dep) if dep else "pending"].append(component)
        readiness = {k: sorted(v) for k, v in readiness.items()}
        all_ready = not readiness["pending"] and not readiness["unready"]
        previous = (smcp.get("status") or {}).get("conditions", [])
        installed_msg = f"Successfully installed version {applied['version']}"
        ready = condition("Ready", "True", "ComponentsReady", "All component deployments are Available", previous) \
            if all_ready else condition("Ready", "False", "ComponentsNotReady",
                                         "Some components are not fully available", previous)
        desired = {
            "observedGeneration": smcp["metadata"].get("generation", 1),
            "operatorVersion": M.OPERATOR_VERSION, "chartVersion": M.CHART_VERSION,
            "annotations": {"readyComponentCount": f"{len(readiness['ready'])}/{len(component_names)}"},
            "readiness": {"components": readiness},
            "conditions": [condition("Installed", "True", "InstallSuccessful", installed_msg, previous),
                           condition("Reconciled", "True", "InstallSuccessful", installed_msg, previous), ready],
            "appliedSpec": applied, "appliedValues": M.applied_values(applied),
        }
        if same(smcp.get("status") or {}, desired):
            return
        self.rest.merge_patch(path(SMCP_V2, "servicemeshcontrolplanes", ns, name) + "/status", {"status": desired})

    # --- members ------------------------------------------------------------------------------------
    def _members(self, cp_ns):
        smcps = [s for s in self.rest.list(path(SMCP_V2, "servicemeshcontrolplanes", cp_ns)).get("items", [])
                 if not s["metadata"].get("deletionTimestamp")]
        smcp = smcps[0] if smcps else None
        smms = [m for m in self.rest.list(path(MAISTRA_V1, "servicemeshmembers")).get("items", [])
                if (m["spec"].get("controlPlaneRef") or {}).get("namespace") == cp_ns
                and not m["metadata"].get("deletionTimestamp")]
        smmr_path = path(MAISTRA_V1, "servicemeshmemberrolls", cp_ns)
        smmr = self.rest.get(f"{smmr_path}/default")
        if smmr is None and smms and smcp:
            smmr = self.rest.ensure(smmr_path, {"apiVersion": MAISTRA_V1, "kind": "ServiceMeshMemberRoll",
                                                "metadata": {"name": "default", "namespace": cp_ns}, "spec": {}})
        listed = set((smmr or {}).get("spec", {}).get("members") or []) if smmr else set()
        members = sorted((listed | {m["metadata"]["namespace"] for m in smms}) - {cp_ns})
        configured, pending = [], []
        for ns in members:
            namespace = self.rest.get(path("v1", "namespaces", None, ns))
            if smcp is None or namespace is None or namespace["metadata"].get("deletionTimestamp"):
                pending.append(ns)
                continue
            if namespace["metadata"].get("labels", {}).get(MEMBER_LABEL) != cp_ns:
                self.rest.merge_patch(path("v1", "namespaces", None, ns),
                                      {"metadata": {"labels": {MEMBER_LABEL: cp_ns}}})
            configured.append(ns)
        labelled = self.rest.list(path("v1", "namespaces"), labelSelector=f"{MEMBER_LABEL}={cp_ns}").get("items", [])
        for namespace in labelled:
            if namespace["metadata"]["name"] not in configured:
                self.rest.merge_patch(path("v1", "namespaces", None, namespace["metadata"]["name"]),
                                      {"metadata": {"labels": {MEMBER_LABEL: None}}})
        if smmr is not None:
            self._write_smmr_status(smmr, smcp, members, configured, pending)
        for smm in smms:
            self._write_smm_status(smm, smcp, smm["metadata"]["namespace"] in configured)
        return None

    def _write_smmr_status(self, smmr, smcp, members, configured, pending):
        previous = (smmr.get("status") or {}).get("conditions", [])
        if smcp is None:
            ready = condition("Ready", "False", "SMCPMissing", "No ServiceMeshControlPlane exists in the namespace",
                               previous)
        elif pending:
            ready = condition("Ready", "False", "ReconcileError", f"namespaces not configured: {pending}", previous)
        else:
            ready = condition("Ready", "True", "Configured", "All namespaces have been configured successfully",
                               previous)
        desired = {
            "observedGeneration": smmr["metadata"].get("generation", 1),
            "meshGeneration": (smcp or {}).get("metadata", {}).get("generation", 0),
            "meshReconciledVersion": M.OPERATOR_VERSION if smcp else "",
            "annotations": {"configuredMemberCount": f"{len(configured)}/{len(members)}"},
            "members": members, "configuredMembers": configured, "pendingMembers": pending,
            "terminatingMembers": [],
            "memberStatuses": [{"namespace": ns, "conditions": [condition(
                "Reconciled", "True" if ns in configured else "False",
                "Reconciled" if ns in configured else "ReconcileError", "", previous)]} for ns in members],
            "conditions": [ready],
        }
        if not same(smmr.get("status") or {}, desired):
            meta = smmr["metadata"]
            self.rest.merge_patch(path(MAISTRA_V1, "servicemeshmemberrolls", meta["namespace"], meta["name"])
                                  + "/status", {"status": desired})

    def _write_smm_status(self, smm, smcp, configured):
        previous = (smm.get("status") or {}).get("conditions", [])
        ref = smm["spec"]["controlPlaneRef"]
        status = "True" if configured else "False"
        reason = "Reconciled" if configured else "SMCPMissing"
        desired = {
            "observedGeneration": smm["metadata"].get("generation", 1),
            "meshGeneration": (smcp or {}).get("metadata", {}).get("generation", 0),
            "annotations": {"controlPlaneRef": f"{ref['namespace']}/{ref['name']}"},
            "conditions": [condition("Reconciled", status, reason, "", previous),
                           condition("Ready", status, reason, "", previous)],
        }
        if not same(smm.get("status") or {}, desired):
            meta = smm["metadata"]
            self.rest.merge_patch(path(MAISTRA_V1, "servicemeshmembers", meta["namespace"], meta["name"])
                                  + "/status", {"status": desired})


def _contains(current, wanted) -> bool:
    """True if every key/value in ``wanted`` is present in ``current`` (server-side defaults may add more)."""
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(_contains(current.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(current, list) and len(current) == len(wanted) and \
            all(_contains(c, w) for c, w in zip(current, wanted, strict=True))
    return current == wanted

