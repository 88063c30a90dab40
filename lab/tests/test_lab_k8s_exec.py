"""kubernetes.core.k8s_exec (ansible-playbook from the venv) through the real API server into a lab pod."""
import json
import os
import subprocess
import sys
from pathlib import Path

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: run a failing command in the pod
      kubernetes.core.k8s_exec:
        namespace: "{ns}"
        pod: "{pod}"
        command: "sh -c 'echo hi; exit 3'"
      register: result
      ignore_errors: true
    - name: show the result
      ansible.builtin.copy:
        content: "{{{{ result | to_json }}}}"
        dest: "{out}"
"""


def test_k8s_exec_returns_stdout_and_rc_of_a_failing_command(lab, test_namespace, tmp_path: Path):
    ns = test_namespace
    lab.kubectl("-n", ns, "run", "shell", "--image=nicolaka/netshoot", "--restart=Never", "--", "sleep", "infinity")
    lab.wait(lambda: (lab.get("pod", "shell", "-n", ns) or {}).get("status", {}).get("phase") == "Running",
             "pod shell Running")
    out = tmp_path / "result.json"
    book = tmp_path / "exec.yml"
    book.write_text(PLAYBOOK.format(ns=ns, pod="shell", out=out))
    venv_bin = Path(sys.executable).parent
    env = dict(os.environ, K8S_AUTH_KUBECONFIG=str(lab.kubeconfig), ANSIBLE_NOCOLOR="1",
               PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    done = subprocess.run([str(venv_bin / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", f"ansible_python_interpreter={sys.executable}", str(book)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["rc"] == 3
    assert result["stdout"] == "hi\n"
