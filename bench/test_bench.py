"""Tests of bench/run.py's parts that do not touch the lab.

Run: .venv/bin/python -m pytest -q bench/test_bench.py
"""
import http.server
import json
import importlib.util
import threading
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("bench_run", Path(__file__).with_name("run.py"))
run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)

# The tail of a real `ansible-playbook playbooks/install.yml` run, colour codes included.
RECAP = """\
TASK [meshlab.mtls.test_pods : Wait for the test pods] *************************
ok: [localhost]

PLAY RECAP *********************************************************************
\x1b[0;33mlocalhost\x1b[0m                  : \x1b[0;32mok=57  \x1b[0m \x1b[0;33mchanged=3   \x1b[0m unreachable=0    \
failed=0    skipped=12   rescued=0    ignored=0
"""


def test_parse_args_defaults():
    args = run.parse_args([])
    assert args.modes == ["PERMISSIVE", "DISABLE", "STRICT"]
    assert not (args.skip_install or args.skip_lab_start or args.cold)
    assert args.json == run.REPO / "reports" / "bench.json"


def test_parse_args_options(tmp_path):
    args = run.parse_args(["--modes", "strict, permissive", "--skip-install", "--skip-lab-start",
                           "--json", str(tmp_path / "b.json")])
    assert args.modes == ["STRICT", "PERMISSIVE"]
    assert args.skip_install and args.skip_lab_start
    assert args.json == tmp_path / "b.json"
    assert run.parse_args(["--cold"]).cold


@pytest.mark.parametrize("argv", [["--modes", "LAX"], ["--modes", ","], ["--cold", "--skip-lab-start"]])
def test_parse_args_rejects(argv):
    with pytest.raises(SystemExit) as exc:
        run.parse_args(argv)
    assert exc.value.code == 2


def test_recap_parser():
    assert run.parse_recap(RECAP) == {"localhost": {"ok": 57, "changed": 3, "unreachable": 0, "failed": 0,
                                                    "skipped": 12, "rescued": 0, "ignored": 0}}
    assert run.changed_count(RECAP) == 3
    two_hosts = "PLAY RECAP ***\na : ok=1 changed=0 failed=0\nb : ok=2 changed=2 failed=0\n"
    assert run.changed_count(two_hosts) == 2
    assert run.changed_count("ERROR! the playbook could not be found") is None


def test_classify():
    assert run.classify("200 0\n503 0\n000 56\nnoise\n") == ["200", "503", "curl exit 56"]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if self.path == "/productpage" else 404
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_article_way_local(server):
    seen = run.article_way([], f"{server}/productpage", count=4, pause=0.2)
    assert seen["rc"] == 0 and seen["requests"] == 4
    assert seen["statuses"] == {"200": 4}
    assert 0.6 <= seen["seconds"] < 10  # three pauses between four requests


def test_article_way_statuses(server):
    assert run.article_way([], f"{server}/nope", count=2, pause=0)["statuses"] == {"404": 2}
    closed = run.article_way([], "http://127.0.0.1:9/productpage", count=2, pause=0)
    assert closed["statuses"] == {"curl exit 7": 2}


def test_kubectl_prefix_and_table():
    prefix = run.kubectl_exec_prefix("outside-mesh")
    assert prefix[-7:] == ["-n", "bookinfo", "exec", "deploy/outside-mesh", "-c", "outside-mesh", "--"]
    table = run.format_table([("install.yml", 61.234, "changed=3"), ("x", None, "")])
    assert "61.23" in table and table.splitlines()[-1].split() == ["x", "-"]


def test_no_lab_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(run, "KUBECONFIG", tmp_path / "kubeconfig")
    monkeypatch.setattr(run.os, "geteuid", lambda: 0)
    assert run.main(["--skip-lab-start"]) == 2
    assert "needs a running lab" in capsys.readouterr().err
    (tmp_path / "kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n")
    assert run.api_version() is None
    assert run.main(["--skip-lab-start"]) == 2


def test_needs_root(monkeypatch, capsys):
    monkeypatch.setattr(run.os, "geteuid", lambda: 1000)
    assert run.main(["--skip-lab-start"]) == 2
    assert "needs root" in capsys.readouterr().err


def test_main_flow_without_lab(tmp_path, monkeypatch, capsys):
    """main() end to end with the lab-touching calls replaced: order of runs, table and JSON."""
    calls = []
    monkeypatch.setattr(run.os, "geteuid", lambda: 0)
    monkeypatch.setattr(run, "api_version", lambda: "v1.20.2")
    monkeypatch.setattr(run, "make_pypath", lambda: None)
    monkeypatch.setattr(run, "playbook", lambda name, log: calls.append(name) or
                        {"seconds": 1.5, "rc": 0, "changed": 0 if "rerun" in log else 7, "log": log})
    monkeypatch.setattr(run, "read_report", lambda mode, t: {"verdict": "PASS", "converged_after_s": 2.5})
    monkeypatch.setattr(run, "article_way", lambda prefix: {"seconds": 18.2, "rc": 0, "statuses": {"200": 10},
                                                            "requests": 10, "stderr": ""})
    out = tmp_path / "bench.json"
    assert run.main(["--skip-lab-start", "--modes", "STRICT,DISABLE", "--json", str(out)]) == 0
    assert calls == ["install.yml", "install.yml", "mtls-strict.yml", "mtls-disable.yml"]
    data = json.loads(out.read_text())
    assert data["install"]["changed"] == 7 and data["install-rerun"]["changed"] == 0
    assert list(data["modes"]) == ["STRICT", "DISABLE"]
    assert data["modes"]["STRICT"]["article"]["outside-mesh"]["statuses"] == {"200": 10}
    assert {"metric": "STRICT converged_after_s", "seconds": 2.5, "detail": "from the JSON report"} in data["table"]
    printed = capsys.readouterr().out
    assert "install.yml re-run (idempotent)" in printed and "changed=0 rc=0" in printed
