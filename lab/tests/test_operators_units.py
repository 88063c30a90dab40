"""Plain-Python parts of the emulated operators: the work queue, OLM's resolver messages, SMCP defaults."""
import threading

from meshlab_lab.operators import smcp_manifests
from meshlab_lab.operators.olm import resolution_error
from meshlab_lab.operators.workqueue import WorkQueue


def test_queue_deduplicates_and_keeps_order():
    queue, stop = WorkQueue(), threading.Event()
    for key in ("a", "b", "a", "c", "b"):
        queue.add(key)
    assert [queue.get(stop) for _ in range(3)] == ["a", "b", "c"]


def test_delayed_key_waits_and_stop_ends_get():
    queue, stop = WorkQueue(), threading.Event()
    queue.add("later", after=600)
    queue.add("now")
    assert queue.get(stop) == "now"
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    assert queue.get(stop) is None  # "later" is not due; get returns only because stop was set
    timer.join()


def test_delayed_key_becomes_ready():
    queue, stop = WorkQueue(), threading.Event()
    queue.add("soon", after=0.05)
    assert queue.get(stop) == "soon"


def sub(package, channel="stable", source="redhat-operators", ns="openshift-marketplace", name="s"):
    return {"metadata": {"name": name},
            "spec": {"name": package, "channel": channel, "source": source, "sourceNamespace": ns}}


def test_resolver_messages():
    assert resolution_error(sub("servicemeshoperator")) is None
    assert resolution_error(sub("elasticsearch-operator", channel="stable-5.8")) is None
    assert resolution_error(sub("kiali-ossm", channel="")) is None  # empty channel means the default channel
    assert "no operators found in package jaeger-product" in resolution_error(sub("jaeger-product"))
    assert "no operators found in channel fast of package kiali-ossm" in resolution_error(sub("kiali-ossm", "fast"))
    assert "no operators found from catalog community-operators" in resolution_error(
        sub("servicemeshoperator", source="community-operators"))


def test_smcp_defaults_keep_tracing_off_and_fill_the_rest():
    applied = smcp_manifests.applied_spec({"version": "v2.5", "security": {"dataPlane": {"mtls": True}}})
    assert applied["version"] == "v2.5"
    assert applied["security"]["dataPlane"] == {"mtls": True, "automtls": True}
    assert applied["tracing"]["type"] == "None"
    assert applied["addons"]["grafana"]["enabled"] is False
    smcp = {"metadata": {"name": "basic", "namespace": "istio-system", "uid": "u"}}
    names = [c[2]["metadata"]["name"] for c in smcp_manifests.components(smcp, applied)]
    assert names == ["istiod-basic", "istio-ingressgateway", "istio-egressgateway", "kiali", "prometheus"]
    pa, drs = smcp_manifests.mesh_wide_policy(smcp, applied)
    assert pa["spec"]["mtls"]["mode"] == "STRICT"
    assert [d["metadata"]["name"] for d in drs] == ["default", "api-server"]


def test_disabled_gateways_and_jaeger_tracing():
    applied = smcp_manifests.applied_spec({"gateways": {"egress": {"enabled": False}}, "tracing": {"type": "Jaeger"}})
    smcp = {"metadata": {"name": "basic", "namespace": "istio-system", "uid": "u"}}
    components = [c[0] for c in smcp_manifests.components(smcp, applied)]
    assert "istio-egressgateway" not in components and "jaeger" in components
