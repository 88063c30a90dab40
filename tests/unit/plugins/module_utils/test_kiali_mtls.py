"""Kiali v1.73 namespace mTLS status.

The combination table is the one Kiali documents in kiali/kiali PR #2821 ("Strict and permissive
modes can enable/disable TLS status at ns-level"); the object selection facts come from Kiali
v1.73's business/tls.go and kubernetes filters (namespace PAs without selector, DR host
``*.<ns>.svc.cluster.local`` from any namespace, PERMISSIVE not allowed for the namespace lock).
"""

import pytest

from ansible_collections.meshlab.mtls.plugins.module_utils.kiali_mtls import (
    KialiMtlsError,
    displayed_namespace_status,
    mesh_mtls_status,
    namespace_modes,
    namespace_mtls_status,
)

NS_HOST = "*.bookinfo.svc.cluster.local"


def pa(namespace="bookinfo", mode="STRICT", name="default", selector=None, mtls=True):
    spec = {}
    if mtls:
        spec["mtls"] = {"mode": mode} if mode else {}
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    return {"kind": "PeerAuthentication", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def dr(host=NS_HOST, mode="ISTIO_MUTUAL", namespace="bookinfo", name="bookinfo-mtls", tls=True):
    spec = {"host": host}
    if tls:
        spec["trafficPolicy"] = {"tls": {"mode": mode} if mode else {}}
    return {"kind": "DestinationRule", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


# (PA mode, DR mode, status without auto mTLS, status with auto mTLS) -- kiali PR #2821 table
KIALI_TABLE = [
    ("STRICT", None, "MTLS_PARTIALLY_ENABLED", "MTLS_ENABLED"),
    ("STRICT", "ISTIO_MUTUAL", "MTLS_ENABLED", "MTLS_ENABLED"),
    ("STRICT", "DISABLE", "MTLS_PARTIALLY_ENABLED", "MTLS_PARTIALLY_ENABLED"),
    ("PERMISSIVE", None, "MTLS_PARTIALLY_ENABLED", "MTLS_PARTIALLY_ENABLED"),
    ("PERMISSIVE", "ISTIO_MUTUAL", "MTLS_PARTIALLY_ENABLED", "MTLS_PARTIALLY_ENABLED"),
    ("PERMISSIVE", "DISABLE", "MTLS_PARTIALLY_ENABLED", "MTLS_PARTIALLY_ENABLED"),
    ("DISABLE", None, "MTLS_PARTIALLY_ENABLED", "MTLS_DISABLED"),
    ("DISABLE", "ISTIO_MUTUAL", "MTLS_PARTIALLY_ENABLED", "MTLS_PARTIALLY_ENABLED"),
    ("DISABLE", "DISABLE", "MTLS_DISABLED", "MTLS_DISABLED"),
]


@pytest.mark.parametrize("pa_mode, dr_mode, without_auto, with_auto", KIALI_TABLE)
def test_kiali_173_namespace_table_from_pr_2821(pa_mode, dr_mode, without_auto, with_auto):
    drs = [dr(mode=dr_mode)] if dr_mode else []
    assert namespace_mtls_status([pa(mode=pa_mode)], drs, "bookinfo", auto_mtls=False) == without_auto
    assert namespace_mtls_status([pa(mode=pa_mode)], drs, "bookinfo", auto_mtls=True) == with_auto


def test_kiali_173_namespace_strict_pa_and_namespace_dr_istio_mutual_is_enabled():
    assert namespace_mtls_status([pa()], [dr()], "bookinfo") == "MTLS_ENABLED"


def test_kiali_173_mutual_counts_like_istio_mutual_for_the_lock():
    assert namespace_mtls_status([pa()], [dr(mode="MUTUAL")], "bookinfo") == "MTLS_ENABLED"


@pytest.mark.parametrize("auto", [False, True])
def test_kiali_173_nothing_configured_is_not_enabled(auto):
    assert namespace_mtls_status([], [], "bookinfo", auto_mtls=auto) == "MTLS_NOT_ENABLED"


def test_kiali_173_a_lone_namespace_dr_is_partially_enabled():
    assert namespace_mtls_status([], [dr()], "bookinfo") == "MTLS_PARTIALLY_ENABLED"


def test_kiali_173_workload_selector_policies_do_not_count():
    assert namespace_modes([pa(selector={"app": "details"})], [], "bookinfo") == ("", "")
    assert namespace_mtls_status([pa(selector={})], [dr()], "bookinfo") == "MTLS_PARTIALLY_ENABLED"


def test_kiali_173_policies_of_other_namespaces_do_not_count():
    assert namespace_mtls_status([pa(namespace="istio-system")], [dr()], "bookinfo") == "MTLS_PARTIALLY_ENABLED"


def test_kiali_173_root_namespace_ignores_its_own_policies():
    pas = [pa(namespace="istio-system")]
    drs = [dr(host="*.istio-system.svc.cluster.local", namespace="istio-system")]
    assert namespace_modes(pas, drs, "istio-system") == ("", "ISTIO_MUTUAL")
    assert namespace_mtls_status(pas, drs, "istio-system") == "MTLS_PARTIALLY_ENABLED"
    assert namespace_mtls_status(pas, drs, "istio-system", root_namespace="elsewhere") == "MTLS_ENABLED"


def test_kiali_173_namespace_dr_may_live_in_any_namespace():
    assert namespace_mtls_status([pa()], [dr(namespace="istio-system")], "bookinfo") == "MTLS_ENABLED"


@pytest.mark.parametrize("host", ["*", "*.local", "details", "*.bookinfo", "details.bookinfo.svc.cluster.local"])
def test_kiali_173_only_the_exact_namespace_wildcard_host_counts(host):
    assert namespace_modes([pa()], [dr(host=host)], "bookinfo") == ("STRICT", "")


def test_kiali_173_empty_tls_block_reads_as_disable_and_missing_tls_as_nothing():
    assert namespace_modes([], [dr(mode=None)], "bookinfo") == ("", "DISABLE")
    assert namespace_modes([], [dr(tls=False)], "bookinfo") == ("", "")


def test_kiali_173_empty_mtls_block_reads_as_unset_which_is_partial():
    assert namespace_modes([pa(mode=None)], [], "bookinfo") == ("UNSET", "")
    assert namespace_mtls_status([pa(mode=None)], [], "bookinfo") == "MTLS_PARTIALLY_ENABLED"


def test_kiali_173_policy_without_mtls_is_skipped_for_the_next_one():
    assert namespace_modes([pa(mtls=False, name="a"), pa(mode="DISABLE", name="b")], [], "bookinfo")[0] == "DISABLE"


def test_kiali_173_first_object_in_list_order_wins():
    assert namespace_modes([pa(mode="STRICT"), pa(mode="DISABLE", name="x")], [], "bookinfo")[0] == "STRICT"


def test_k8s_info_results_are_accepted():
    assert namespace_mtls_status({"resources": [pa()]}, {"resources": [dr()]}, "bookinfo") == "MTLS_ENABLED"


def test_bad_input_is_rejected():
    with pytest.raises(KialiMtlsError, match="needs metadata.namespace"):
        namespace_mtls_status([{"spec": {}}], [], "bookinfo")
    with pytest.raises(KialiMtlsError, match="namespace must be"):
        namespace_mtls_status([], [], "")
    with pytest.raises(KialiMtlsError, match="must be a list"):
        namespace_mtls_status("STRICT", [], "bookinfo")


# ---------------------------------------------------------------- the lab's three modes (auto mTLS off)


def lab_drs(mode, namespace_host=NS_HOST):
    rules = [dr(host=app, mode=mode, name=app) for app in ("productpage", "reviews", "ratings", "details")]
    return rules + [dr(host=namespace_host, mode=mode)]


def test_lab_permissive_mode_shows_partially_enabled():
    status = namespace_mtls_status([pa(mode="PERMISSIVE")], lab_drs("ISTIO_MUTUAL"), "bookinfo")
    assert status == "MTLS_PARTIALLY_ENABLED"


def test_lab_strict_mode_shows_enabled():
    assert namespace_mtls_status([pa(mode="STRICT")], lab_drs("ISTIO_MUTUAL"), "bookinfo") == "MTLS_ENABLED"


def test_lab_disable_mode_shows_disabled_only_with_a_namespace_wide_disable_rule():
    assert namespace_mtls_status([pa(mode="DISABLE")], lab_drs("DISABLE"), "bookinfo") == "MTLS_DISABLED"
    # a host "*" rule is not namespace-wide for Kiali: with auto mTLS off the lock is only partial
    star = lab_drs("DISABLE", namespace_host="*")
    assert namespace_mtls_status([pa(mode="DISABLE")], star, "bookinfo") == "MTLS_PARTIALLY_ENABLED"
    assert namespace_mtls_status([pa(mode="DISABLE")], star, "bookinfo", auto_mtls=True) == "MTLS_DISABLED"


# ---------------------------------------------------------------- mesh-wide status


def test_kiali_mesh_strict_policy_and_local_rule_is_enabled():
    assert mesh_mtls_status([pa(namespace="istio-system")], [dr(host="*.local")]) == "MTLS_ENABLED"


def test_kiali_mesh_uses_only_root_namespace_policies_and_local_host():
    assert mesh_mtls_status([pa(namespace="bookinfo")], [dr(host=NS_HOST)]) == "MTLS_NOT_ENABLED"


def test_kiali_mesh_half_configuration_is_completed_by_auto_mtls():
    assert mesh_mtls_status([pa(namespace="istio-system")], [], auto_mtls=False) == "MTLS_PARTIALLY_ENABLED"
    assert mesh_mtls_status([pa(namespace="istio-system")], [], auto_mtls=True) == "MTLS_ENABLED"
    assert mesh_mtls_status([], [dr(host="*.local")], auto_mtls=True) == "MTLS_ENABLED"


def test_kiali_mesh_lone_disable_reads_as_disabled():
    assert mesh_mtls_status([pa(namespace="istio-system", mode="DISABLE")], []) == "MTLS_DISABLED"
    assert mesh_mtls_status([], [dr(host="*.local", mode="DISABLE")]) == "MTLS_DISABLED"


def test_kiali_ui_lifts_a_namespace_without_config_when_the_mesh_is_enabled():
    assert displayed_namespace_status("MTLS_NOT_ENABLED", "MTLS_ENABLED") == "MTLS_ENABLED"
    assert displayed_namespace_status("MTLS_PARTIALLY_ENABLED", "MTLS_ENABLED") == "MTLS_PARTIALLY_ENABLED"
    assert displayed_namespace_status("MTLS_NOT_ENABLED", "MTLS_PARTIALLY_ENABLED") == "MTLS_NOT_ENABLED"
