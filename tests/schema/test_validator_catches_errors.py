"""The validators used above really reject bad manifests (otherwise passing them would prove nothing)."""
import copy

import pytest

from crd_schemas import crd_errors, shared_dir
from rendering import render

needs_shared = pytest.mark.skipif(not (shared_dir() / "crds").is_dir(),
                                  reason="../shared/crds (upstream CRDs) not present; set MESHLAB_SHARED")


@needs_shared
def test_peer_authentication_with_misspelt_mode_is_rejected():
    pa = render("mtls_mode", "peer_authentication.yaml.j2", mtls_mode_effective="STRIC")
    errors = crd_errors(pa)
    assert any("STRIC" in error and "spec/mtls/mode" in error for error in errors), errors


@needs_shared
def test_smcp_with_misspelt_field_is_rejected():
    smcp = render("control_plane", "smcp.yaml.j2")
    broken = copy.deepcopy(smcp)
    broken["spec"]["security"]["dataPlane"]["automtl"] = broken["spec"]["security"]["dataPlane"].pop("automtls")
    assert crd_errors(smcp) == []
    assert any("automtl" in error for error in crd_errors(broken))


@needs_shared
def test_destination_rule_with_unknown_tls_mode_is_rejected():
    dr = render("bookinfo", "destination_rule_subsets.yaml.j2", bookinfo_app="details",
                bookinfo_subset_tls_mode_effective="MUTUAL_ISTIO")
    assert any("MUTUAL_ISTIO" in error for error in crd_errors(dr))


@needs_shared
def test_unserved_api_version_is_rejected():
    pa = render("mtls_mode", "peer_authentication.yaml.j2", mtls_mode_effective="STRICT")
    pa["apiVersion"] = "security.istio.io/v1"  # OSSM 2.6 serves only v1beta1 for PeerAuthentication
    with pytest.raises(KeyError):
        crd_errors(pa)


def test_deployment_with_bad_field_is_rejected_by_kubernetes_schema():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    dep = render("test_pods", "deployment.yaml.j2", test_pod={"name": "inside-mesh", "inject": True})
    dep["spec"]["template"]["spec"]["containers"][0]["port"] = 8080
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, "1.25.0", strict=True)
