"""Option checks of the three modules: bad input is refused with a clear message before anything runs;
envoy_tls_info's view of real Istio config dumps."""

import json
import os
from pathlib import Path

import pytest
from ansible_collections.meshlab.mtls.plugins.module_utils.probe_sources import SourceError, normalize_sources
from ansible_collections.meshlab.mtls.plugins.module_utils.wire_options import validate_options
from ansible_collections.meshlab.mtls.plugins.modules import envoy_tls_info, mtls_probe


def probe_params(**kw):
    params = {"sources": [], "targets": [], "count": 10, "timeout": 5, "external": [], "expect": {},
              "wait_timeout": 0}
    params.update(kw)
    return params


SRC = {"name": None, "namespace": "bookinfo", "deployment": "inside-mesh", "pod": None, "label_selector": None,
       "container": "nginx"}


def test_probe_accepts_sources_and_external():
    ext = {"name": "external", "url": "https://api.apps.lab.local/productpage",
           "connect_to": ["api.apps.lab.local:443:127.0.0.1:8443"], "ca_file": None, "validate_certs": True}
    sources, targets, external = mtls_probe.validate(probe_params(
        sources=[SRC], targets=["http://productpage:9080/productpage"], external=[ext]))
    assert sources[0]["name"] == "inside-mesh"
    assert external[0]["rules"] == [("api.apps.lab.local", 443, "127.0.0.1", 8443)]


@pytest.mark.parametrize("params, message", [
    (probe_params(), "nothing to probe"),
    (probe_params(sources=[SRC]), "no targets"),
    (probe_params(sources=[SRC], targets=["ftp://x/"]), "not an http"),
    (probe_params(sources=[SRC], targets=["http://x/$(reboot)"]), "shell characters"),
    (probe_params(sources=[SRC], targets=["http://x:99999/"]), "bad port"),
    (probe_params(sources=[SRC, SRC], targets=["http://x/"]), "unique"),
    (probe_params(sources=[dict(SRC, pod="p")], targets=["http://x/"]), "exactly one of"),
    (probe_params(sources=[SRC], targets=["http://x/"], count=0), "count"),
    (probe_params(external=[{"name": "external", "url": "https://x/", "connect_to": ["x:443:y"]}]),
     "HOST1:PORT1:HOST2:PORT2"),
    (probe_params(sources=[SRC], targets=["http://x/"], expect={"outside-mesh": "success"}), "unknown sources"),
    (probe_params(sources=[SRC], targets=["http://x/"], wait_timeout=-1), "wait_timeout"),
])
def test_probe_rejects(params, message):
    with pytest.raises(SourceError, match=message):
        mtls_probe.validate(params)


def test_sources_need_a_namespace():
    with pytest.raises(SourceError, match="no namespace"):
        normalize_sources([{"deployment": "a"}])


def wire_params(**kw):
    params = {"client": dict(SRC, deployment="productpage-v1", container=None),
              "server": dict(SRC, deployment="details-v1", container=None), "traffic_source": None,
              "url": "http://details:9080/details/0", "traffic_command": None, "service": None, "port": None,
              "cluster": None, "cluster_domain": "cluster.local", "count": 10, "timeout": 5, "method": "stats",
              "capture_timeout": 120}
    params.update(kw)
    return params


def test_wire_options_derive_cluster_from_url_and_default_traffic_source():
    opts = validate_options(wire_params())
    assert opts["cluster"] == "outbound|9080||details.bookinfo.svc.cluster.local"
    assert opts["traffic_source"]["deployment"] == "productpage-v1"


def test_wire_options_with_traffic_from_elsewhere_need_service_and_port():
    opts = validate_options(wire_params(url="http://productpage:9080/productpage", service="details", port=9080,
                                        traffic_source=dict(SRC)))
    assert opts["cluster"] == "outbound|9080||details.bookinfo.svc.cluster.local"
    with pytest.raises(SourceError, match="give port"):
        validate_options(wire_params(url=None, traffic_command="true"))
    with pytest.raises(SourceError, match="url .* or traffic_command"):
        validate_options(wire_params(url=None))


SHARED = Path(os.environ["MESHLAB_SHARED"]) if os.environ.get("MESHLAB_SHARED") else \
    Path(__file__).resolve().parents[4] / ".." / "shared"
FIXTURES = SHARED / "fixtures" / "envoy"


def load(rel):
    path = FIXTURES / rel
    if not path.is_file():
        pytest.skip("shared fixture %s is absent (set MESHLAB_SHARED)" % path)
    return json.loads(path.read_text())


def test_envoy_view_of_a_permissive_istio_16_sidecar():
    view = envoy_tls_info.tls_view(load("istio-1.6-describe/productpage-v1-7bbd79f8fd-k6j79.json"))
    assert view["inbound_modes"]["9080"] == "PERMISSIVE"
    assert all(isinstance(k, str) for k in view["inbound_modes"])
    assert view["table"].startswith("LISTENER[FilterChain]")
    assert len(view["table"].splitlines()) == len(view["rows"]) + 1
    assert view["outbound_tls"] and all(k.startswith("outbound|") for k in view["outbound_tls"])


def test_envoy_view_of_a_listeners_only_dump_has_no_outbound_tls():
    view = envoy_tls_info.tls_view(load("istio-1.19plus/configdump.json"))
    assert view["outbound_tls"] is None
    assert view["inbound_modes"]["80"] == "PERMISSIVE"
