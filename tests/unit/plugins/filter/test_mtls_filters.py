"""The mtls filters: thin wrappers, k8s_info input shapes, AnsibleFilterError, and a real playbook run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.meshlab.mtls.plugins.filter import mtls as mtls_filters

FILTERS = mtls_filters.FilterModule().filters()
# <collections root>/ansible_collections/meshlab/mtls/plugins/filter/mtls.py (not resolved: keep the symlinked root)
COLLECTIONS_ROOT = Path(mtls_filters.__file__).parents[5]
_VENV_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
ANSIBLE_BIN = _VENV_PLAYBOOK if _VENV_PLAYBOOK.exists() else Path(shutil.which("ansible-playbook") or _VENV_PLAYBOOK)

STRICT_PA = {"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
             "metadata": {"name": "default", "namespace": "bookinfo", "creationTimestamp": "2024-01-01T00:00:00Z"},
             "spec": {"mtls": {"mode": "STRICT"}}}
NS_DR = {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
         "metadata": {"name": "bookinfo-mtls", "namespace": "bookinfo", "creationTimestamp": "2024-01-01T00:00:00Z"},
         "spec": {"host": "*.bookinfo.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}}
OUTSIDE = {"namespace": "outside-mesh", "labels": {"app": "curl"}, "sidecar": False}
INSIDE = {"namespace": "inside-mesh", "labels": {"app": "curl"}, "sidecar": True}
DETAILS = {"namespace": "bookinfo", "labels": {"app": "details", "security.istio.io/tlsMode": "istio"},
           "sidecar": True, "host": "details.bookinfo", "port": 9080}


def test_the_three_filters_are_exported():
    assert set(FILTERS) == {"mtls_predict", "namespace_mtls_status", "mtls_verdict"}


def test_mtls_predict_accepts_k8s_info_results_and_plain_lists():
    from_info = FILTERS["mtls_predict"]({"resources": [STRICT_PA]}, destination_rules={"resources": [NS_DR]},
                                        client=INSIDE, server=DETAILS)
    from_list = FILTERS["mtls_predict"]([STRICT_PA], destination_rules=[NS_DR], client=INSIDE, server=DETAILS)
    assert from_info == from_list
    assert (from_info["outcome"], from_info["transport"]) == ("success", "mtls")


def test_mtls_predict_strict_refuses_the_outside_client():
    result = FILTERS["mtls_predict"]([STRICT_PA], client=OUTSIDE, server=DETAILS)
    assert (result["outcome"], result["symptom"]) == ("failure", "reset")


def test_mtls_predict_errors_become_ansible_filter_errors():
    with pytest.raises(AnsibleFilterError, match="mtls_predict: .*client is missing sidecar"):
        FILTERS["mtls_predict"]([], client={"namespace": "x", "labels": {}}, server=DETAILS)
    with pytest.raises(AnsibleFilterError, match="client and server are required"):
        FILTERS["mtls_predict"]([])
    with pytest.raises(AnsibleFilterError, match="k8s_info result with 'resources'"):
        FILTERS["mtls_predict"]({"items": []}, client=INSIDE, server=DETAILS)


def test_namespace_mtls_status_filter():
    assert FILTERS["namespace_mtls_status"]({"resources": [STRICT_PA]}, destination_rules=[NS_DR],
                                            namespace="bookinfo") == "MTLS_ENABLED"
    assert FILTERS["namespace_mtls_status"]([STRICT_PA], namespace="bookinfo") == "MTLS_PARTIALLY_ENABLED"
    assert FILTERS["namespace_mtls_status"]([STRICT_PA], namespace="bookinfo", auto_mtls=True) == "MTLS_ENABLED"
    with pytest.raises(AnsibleFilterError, match="namespace is required"):
        FILTERS["namespace_mtls_status"]([STRICT_PA])


def test_mtls_verdict_filter():
    check = {"name": "c", "kind": "config", "source": "s", "target": "t", "expected": "A", "observed": "B",
             "detail": ""}
    assert FILTERS["mtls_verdict"]([check])["verdict"] == "FAIL"
    with pytest.raises(AnsibleFilterError, match="kind 'speed'"):
        FILTERS["mtls_verdict"]([dict(check, kind="speed")])
    with pytest.raises(AnsibleFilterError, match="must be a list"):
        FILTERS["mtls_verdict"]("checks")


PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  vars:
    pas: {pas}
    drs: {drs}
    outside: {outside}
    details: {details}
  tasks:
    - name: Run the three filters through real Ansible templating
      ansible.builtin.debug:
        msg:
          predict: "{{{{ pas | meshlab.mtls.mtls_predict(destination_rules=drs, client=outside, server=details) }}}}"
          kiali: "{{{{ pas | meshlab.mtls.namespace_mtls_status(destination_rules=drs, namespace='bookinfo') }}}}"
          verdict: "{{{{ [check] | meshlab.mtls.mtls_verdict }}}}"
      vars:
        check: {{name: c, kind: config, source: s, target: t, expected: x, observed: x, detail: ''}}
"""


@pytest.mark.skipif(not ANSIBLE_BIN.exists(), reason="ansible-playbook is not installed next to this Python")
def test_filters_resolve_by_fqcn_in_a_real_playbook(tmp_path):
    playbook = tmp_path / "filters.yml"
    playbook.write_text(PLAYBOOK.format(pas=json.dumps({"resources": [STRICT_PA]}), drs=json.dumps([NS_DR]),
                                        outside=json.dumps(OUTSIDE), details=json.dumps(DETAILS)))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_ROOT), ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               ANSIBLE_HOME=str(tmp_path / "ansible-home"))
    proc = subprocess.run([str(ANSIBLE_BIN), "-i", "localhost,", "-c", "local", str(playbook)], env=env,
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    output = json.loads(proc.stdout)
    msg = output["plays"][0]["tasks"][0]["hosts"]["localhost"]["msg"]
    assert msg["predict"]["outcome"] == "failure" and msg["predict"]["symptom"] == "reset"
    assert msg["kiali"] == "MTLS_ENABLED"
    assert msg["verdict"]["verdict"] == "PASS"
