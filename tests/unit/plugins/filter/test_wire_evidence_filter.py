"""The mtls_wire_evidence filter: a thin wrapper with an actionable AnsibleFilterError."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.meshlab.mtls.plugins.filter.wire_evidence import FilterModule

BEFORE = '# TYPE istio_build gauge\nistio_build{component="proxy",tag="1.20.8"} 1\n'
AFTER = BEFORE + ('istio_requests_total{reporter="destination",source_workload="productpage-v1",'
                  'source_workload_namespace="bookinfo",connection_security_policy="mutual_tls"} 10\n')


@pytest.fixture
def mtls_wire_evidence():
    return FilterModule().filters()["mtls_wire_evidence"]


def test_returns_the_documented_shape(mtls_wire_evidence):
    result = mtls_wire_evidence(BEFORE, AFTER)
    assert set(result) == {"verdict", "basis", "mtls_requests", "plaintext_requests", "plaintext_sources"}
    assert result["verdict"] == "encrypted" and result["mtls_requests"] == 10


def test_bad_input_names_what_to_pass(mtls_wire_evidence):
    with pytest.raises(AnsibleFilterError, match="pilot-agent request GET stats/prometheus"):
        mtls_wire_evidence({"not": "text"}, AFTER)
