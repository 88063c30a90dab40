"""The modules run by real ansible-playbook, in the parts that need no cluster: envoy_tls_info on a real
Istio config dump, and mtls_probe's controller-side probe through connect_to to a real TLS server."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
SHARED = Path(os.environ["MESHLAB_SHARED"]) if os.environ.get("MESHLAB_SHARED") else REPO / ".." / "shared"
PLAYBOOK_BIN = Path(sys.executable).with_name("ansible-playbook")
SERVER_NAME = "api-istio-system.apps.lab.local"

pytestmark = pytest.mark.skipif(not PLAYBOOK_BIN.exists() or not (REPO / ".build" / "pypath").is_dir(),
                                reason="needs ansible-playbook next to the test's python and `make pypath`")


def run_playbook(tmp_path, tasks, check=False):
    (tmp_path / "play.yml").write_text(json.dumps([{"hosts": "localhost", "gather_facts": False,
                                                    "connection": "local", "tasks": tasks}]))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "pypath"), ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    argv = [str(PLAYBOOK_BIN), "-i", "localhost,", str(tmp_path / "play.yml")] + (["--check"] if check else [])
    done = subprocess.run(argv, check=False, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    out = json.loads(done.stdout[done.stdout.index("{"):])
    results = [task["hosts"]["localhost"] for task in out["plays"][0]["tasks"]]
    return done.returncode, results


@pytest.mark.skipif(not (SHARED / "fixtures").is_dir(), reason="shared fixtures absent (set MESHLAB_SHARED)")
def test_modules_in_one_playbook(tmp_path, https_server, pki, refused_port):
    """One playbook run (ansible start-up is slow) with four tasks, each checked on its own."""
    dump = SHARED / "fixtures" / "envoy" / "istio-1.6-describe" / "productpage-v1-7bbd79f8fd-k6j79.json"
    port = https_server.server_address[1]
    tasks = [
        {"name": "dump", "ignore_errors": True, "meshlab.mtls.envoy_tls_info": {
            "config_dump": "{{ lookup('file', '%s') | from_json }}" % dump, "expect_inbound": {"9080": "permissive"}}},
        {"name": "not a dump", "ignore_errors": True,
         "meshlab.mtls.envoy_tls_info": {"config_dump": {"hello": "world"}}},
        {"name": "bad connect_to", "ignore_errors": True, "meshlab.mtls.mtls_probe": {
            "external": [{"url": "https://%s/" % SERVER_NAME, "connect_to": ["%s:443:127.0.0.1" % SERVER_NAME]}]}},
        {"name": "external", "ignore_errors": True, "meshlab.mtls.mtls_probe": {
            "external": [{"url": "https://%s/productpage" % SERVER_NAME,
                          "connect_to": ["%s:443:127.0.0.1:%d" % (SERVER_NAME, port)], "ca_file": str(pki / "ca.crt")},
                         {"name": "nowhere", "url": "http://127.0.0.1:%d/" % refused_port}],
            "count": 3, "expect": {"external": "success", "nowhere": "failure (refused)"}}},
    ]
    rc, (dumped, not_dump, bad, probed) = run_playbook(tmp_path, tasks, check=True)

    assert dumped.get("failed") is not True, dumped
    assert dumped["changed"] is False and dumped["pod"] is None and dumped["converged"] is True
    assert dumped["inbound_modes"]["9080"] == "PERMISSIVE"
    assert dumped["table"].startswith("LISTENER[FilterChain]")

    assert not_dump["failed"] and "config" in not_dump["msg"].lower()

    assert bad["failed"] and "HOST1:PORT1:HOST2:PORT2" in bad["msg"]

    assert probed.get("failed") is not True, probed
    external, nowhere = probed["probes"]
    assert (external["observed"], external["statuses"]) == ("success", {"200": 3})
    assert (nowhere["observed"], nowhere["curl_exits"]) == ("failure (refused)", {"7": 3})
    assert probed["converged"] is True and probed["changed"] is False
    # the bad connect_to task was refused before any request: only the 3 good ones reached the server
    assert len(https_server.seen) == 3 and https_server.seen[-1]["sni"] == SERVER_NAME
