"""The one-exec probe script, run by a real `sh` with real curl against real local servers, then read
back the way mtls_probe reads a pod's output."""

import shutil
import subprocess

import pytest
from ansible_collections.meshlab.mtls.plugins.module_utils.probe_runner import (
    run_in_pod_script, split_by_target, summarize_pod_output,
)
from ansible_collections.meshlab.mtls.plugins.module_utils.probe_summary import probe_detail, summarize_probe

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def _run(script):
    done = subprocess.run(["sh", "-c", script], check=False, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


def test_one_script_probes_every_target(http_server, refused_port, raw_server):
    reset = raw_server("reset")
    targets = ["http://127.0.0.1:%d/productpage" % http_server.server_address[1],
               "http://127.0.0.1:%d/" % refused_port,
               "http://127.0.0.1:%d/" % reset.port,
               "http://127.0.0.1:%d/fail" % http_server.server_address[1]]
    rc, out, err = _run(run_in_pod_script(targets, 3, 5))
    rows = summarize_pod_output("inside-mesh", targets, 3, rc, out, err)
    by_target = {r["target"]: r for r in rows}
    ok, refused, was_reset, fail = (by_target[t] for t in targets)
    assert (ok["result"], ok["statuses"], ok["curl_exits"]) == ("success", {"200": 3}, {"0": 3})
    assert (refused["result"], refused["curl_exits"]) == ("failure", {"7": 3})
    assert (was_reset["result"], was_reset["curl_exits"]) == ("failure", {"56": 3})
    assert probe_detail(was_reset).startswith("curl exit 56 (connection reset by peer")
    assert probe_detail(was_reset).endswith(" 3/3")
    assert (fail["result"], fail["statuses"]) == ("failure", {"503": 3})
    assert probe_detail(fail) == "HTTP 503 (server or proxy answered with an error) 3/3"
    assert len(http_server.seen) == 6


def test_missing_curl_fails_every_request_with_its_exit_code(tmp_path):
    script = "PATH=%s\n%s" % (tmp_path, run_in_pod_script(["http://127.0.0.1:1/"], 2, 1))
    rc, out, err = _run(script)
    row = summarize_pod_output("x", ["http://127.0.0.1:1/"], 2, rc, out, err)[0]
    assert row["curl_exits"] == {"127": 2} and row["result"] == "failure"


def test_script_that_died_early_is_padded_with_failures():
    rows = summarize_pod_output("x", ["http://a/", "http://b/"], 2, 137, "MESHLAB-TARGET 0\nMESHLAB 0 200\n",
                                "Killed")
    assert [r["count"] for r in rows] == [2, 2]
    assert rows[0]["result"] == "mixed" and rows[1]["result"] == "failure"
    assert rows[1]["curl_exits"] == {"137": 2} and "Killed" in rows[1]["meaning"]


def test_split_by_target_ignores_noise_before_first_marker():
    assert split_by_target("noise\nMESHLAB-TARGET 1\nMESHLAB 0 200\n", 2) == {0: "", 1: "MESHLAB 0 200"}


def test_summary_of_mixed_results_keeps_one_sample_per_outcome():
    ok = {"result": "success", "status": 200, "curl_exit": 0, "meaning": "HTTP 200"}
    bad = {"result": "failure", "status": None, "curl_exit": 56, "meaning": "connection reset by peer"}
    row = summarize_probe("s", "t", [ok, bad, ok, bad, bad])
    assert (row["result"], row["succeeded"], row["failed"]) == ("mixed", 2, 3)
    assert row["meaning"] == "connection reset by peer" and len(row["samples"]) == 2
    assert probe_detail(row) == "curl exit 56 (connection reset by peer) 3/5, 2/5 succeeded"
    assert summarize_probe("s", "t", [])["result"] == "failure"
