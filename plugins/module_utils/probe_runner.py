# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Build the one in-pod script for all targets of a source, read its output back, and run the
controller-side (external) requests."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.meshlab.mtls.plugins.module_utils.curl_result import (
    classify_curl, parse_probe_output, probe_shell_command,
)
from ansible_collections.meshlab.mtls.plugins.module_utils.probe_external import request_once, tls_context
from ansible_collections.meshlab.mtls.plugins.module_utils.probe_summary import summarize_probe

TARGET_MARK = "MESHLAB-TARGET"


def run_in_pod_script(targets, count, timeout_s):
    """One shell script: for each target, a marker line then curl_result's N-request script."""
    parts = []
    for index, url in enumerate(targets):
        parts.append("echo '%s %d'" % (TARGET_MARK, index))
        parts.append(probe_shell_command(url, count, timeout_s))
    return "\n".join(parts) + "\n"


def split_by_target(text, n_targets):
    """{target index: output text} from the script's combined stdout."""
    chunks, current = {}, None
    for line in text.splitlines():
        if line.startswith(TARGET_MARK + " "):
            current = int(line.split()[1])
            chunks[current] = []
        elif current is not None:
            chunks[current].append(line)
    return {i: "\n".join(chunks.get(i, [])) for i in range(n_targets)}


def summarize_pod_output(source, targets, count, rc, stdout, stderr):
    """Probe rows for one source. A target whose output is missing or short (the script died) is
    padded with failed requests that carry the exec's rc and stderr, so nothing is silently lost."""
    chunks = split_by_target(stdout, len(targets))
    rows = []
    for index, url in enumerate(targets):
        attempts = parse_probe_output(chunks[index])
        missing = count - len(attempts)
        if missing > 0:
            lost = classify_curl(rc if rc not in (0, None) else 1, "000", stderr or "the probe script stopped early")
            attempts.extend([lost] * missing)
        rows.append(summarize_probe(source, url, attempts))
    return rows


def run_external(ext, count, timeout_s):
    """Probe row for one controller-side entry ({name, url, rules, ca_file, validate_certs})."""
    ctx = None
    if ext["url"].startswith("https:"):
        ctx = tls_context(ext.get("ca_file"), ext.get("validate_certs", True))
    answers = [request_once(ext["url"], ext["rules"], timeout_s, ctx=ctx) for _n in range(count)]
    attempts = [classify_curl(got["curl_exit"], got["http_code"], got["error"]) for got in answers]
    return summarize_probe(ext.get("name") or "external", ext["url"], attempts)
