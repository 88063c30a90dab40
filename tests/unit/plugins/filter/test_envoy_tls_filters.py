"""The envoy_tls filters: thin wrappers that turn dump errors into AnsibleFilterError."""

import json
import os
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.meshlab.mtls.plugins.filter.envoy_tls import FilterModule


def _envoy_fixtures():
    shared = Path(os.environ["MESHLAB_SHARED"]) if os.environ.get("MESHLAB_SHARED") else \
        Path(__file__).resolve().parents[4] / ".." / "shared"
    path = shared / "fixtures" / "envoy"
    if not path.is_dir():
        pytest.skip("shared Envoy fixtures not found at %s (set MESHLAB_SHARED to the shared folder)" % path)
    return path


@pytest.fixture
def filters():
    return FilterModule().filters()


@pytest.fixture
def golden_pair():
    folder = _envoy_fixtures() / "istio-1.6-authz-check"
    return (folder / "productpage_config_dump.json").read_text(), (folder / "productpage.golden").read_text()


def test_filter_names(filters):
    assert set(filters) == {"envoy_tls_summary", "envoy_tls_table", "envoy_inbound_modes"}


def test_summary_then_table_is_the_istioctl_table(filters, golden_pair):
    dump_text, golden = golden_pair
    rows = filters["envoy_tls_summary"](json.loads(dump_text))
    assert filters["envoy_tls_table"](rows) == golden.split("\n", 1)[1]
    assert filters["envoy_tls_table"](tuple(rows)) == golden.split("\n", 1)[1]


def test_json_text_is_accepted_like_pilot_agent_stdout(filters, golden_pair):
    dump_text, golden = golden_pair
    assert filters["envoy_tls_summary"](dump_text) == filters["envoy_tls_summary"](json.loads(dump_text))
    assert filters["envoy_tls_table"](dump_text) == golden.split("\n", 1)[1]
    assert filters["envoy_inbound_modes"](dump_text) == {9080: "STRICT", 15020: "DISABLE"}


def test_modern_dump_modes(filters):
    dump = json.loads((_envoy_fixtures() / "istio-1.19plus" / "configdump.json").read_text())
    assert filters["envoy_inbound_modes"](dump)[80] == "PERMISSIVE"


@pytest.mark.parametrize("name", ["envoy_tls_summary", "envoy_tls_table", "envoy_inbound_modes"])
def test_bad_input_becomes_a_filter_error(filters, name):
    with pytest.raises(AnsibleFilterError, match=r"%s: .*a dict with a 'configs' list; got a dict" % name):
        filters[name]({"items": []})
    with pytest.raises(AnsibleFilterError, match=r"%s: the input text is not JSON" % name):
        filters[name]("upstream connect error or disconnect/reset before headers")


def test_table_of_foreign_rows_is_refused(filters):
    with pytest.raises(AnsibleFilterError, match="envoy_tls_table: .*lacks the key 'listener'"):
        filters["envoy_tls_table"]([{"name": "virtualInbound"}])
    with pytest.raises(AnsibleFilterError, match="envoy_tls_table: expected a list of rows"):
        filters["envoy_tls_table"](42)
