#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: envoy_tls_info
short_description: Read the TLS settings of a sidecar's Envoy (inbound mTLS mode per port, outbound TLS per cluster)
version_added: 0.1.0
author:
  - meshlab.mtls maintainers (@meshlab)
description:
  - Runs C(pilot-agent request GET config_dump) in the sidecar container of one Running and Ready pod,
    or reads a config dump given directly in O(config_dump), and summarizes its TLS side.
  - Never changes anything.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
options:
  config_dump:
    description:
      - An Envoy config dump (parsed JSON). When given, no cluster is contacted and the pod options are ignored.
    type: dict
  namespace:
    description: Namespace of the pod. Required unless O(config_dump) is given.
    type: str
  pod:
    description: Pod name.
    type: str
  deployment:
    description: Deployment whose Running and Ready pod is read.
    type: str
  label_selector:
    description: Label selector whose Running and Ready pod is read.
    type: str
  container:
    description: Sidecar container that has C(pilot-agent).
    type: str
    default: istio-proxy
  timeout:
    description: Seconds allowed for the exec.
    type: int
    default: 60
  expect_inbound:
    description:
      - 'Expected inbound mode per port (C(*) for the catch-all), for example C({"9080": "STRICT"}). With
        O(wait_timeout) the dump is read again, with a growing pause, until the modes match.'
    type: dict
    default: {}
  wait_timeout:
    description: Seconds to keep re-reading the dump until O(expect_inbound) is met (0 reads once).
    type: int
    default: 0
requirements:
  - kubernetes >= 24.2.0 (unless O(config_dump) is given)
"""

EXAMPLES = r"""
- name: Inbound modes of productpage's sidecar
  meshlab.mtls.envoy_tls_info:
    namespace: bookinfo
    deployment: productpage-v1
  register: envoy

- name: Summarize a saved dump
  meshlab.mtls.envoy_tls_info:
    config_dump: "{{ lookup('file', 'productpage_config_dump.json') | from_json }}"
"""

RETURN = r"""
rows:
  description: One row per filter chain (see the C(envoy_tls_summary) filter).
  returned: always
  type: list
  elements: dict
table:
  description: The rows as an C(istioctl experimental authz check) style table.
  returned: always
  type: str
inbound_modes:
  description: Effective inbound mode per port (C(*) for chains without a port match).
  returned: always
  type: dict
  sample: {"9080": "PERMISSIVE", "*": "PERMISSIVE"}
outbound_tls:
  description: Per outbound cluster, whether the sidecar originates TLS; null when the dump has no clusters.
  returned: always
  type: dict
  sample: {"outbound|9080||details.bookinfo.svc.cluster.local": true}
converged:
  description: Whether the last read matched O(expect_inbound) (true when it is empty).
  returned: always
  type: bool
converged_after_s:
  description: Seconds from the first read to the matching one (null if none matched).
  returned: always
  type: float
pod:
  description: The pod that was read (null for O(config_dump)).
  returned: always
  type: str
"""

import copy
import json

from ansible_collections.kubernetes.core.plugins.module_utils.ansiblemodule import AnsibleModule
from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException
from ansible_collections.meshlab.mtls.plugins.module_utils.envoy_tls import (
    EnvoyDumpError, inbound_modes, outbound_tls, render_table, summarize,
)
from ansible_collections.meshlab.mtls.plugins.module_utils.k8s_exec import (
    K8sExecError, core_and_apps_api, exec_in_pod, find_pod, require_container,
)
from ansible_collections.meshlab.mtls.plugins.module_utils.probe_sources import SourceError, normalize_workload
from ansible_collections.meshlab.mtls.plugins.module_utils.probe_wait import poll_until

CONFIG_DUMP_ARGV = ["pilot-agent", "request", "GET", "config_dump"]


def argument_spec():
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(
        config_dump=dict(type="dict"),
        namespace=dict(type="str"),
        pod=dict(type="str"),
        deployment=dict(type="str"),
        label_selector=dict(type="str"),
        container=dict(type="str", default="istio-proxy"),
        timeout=dict(type="int", default=60),
        expect_inbound=dict(type="dict", default={}),
        wait_timeout=dict(type="int", default=0),
    )
    return spec


def tls_view(dump):
    """The module's result fields from a dump; outbound_tls is None for a listeners-only dump."""
    # Port keys become text: a JSON object cannot mix numbers and "*" as keys.
    modes = {str(port): mode for port, mode in inbound_modes(dump).items()}
    result = {"rows": summarize(dump), "inbound_modes": modes}
    result["table"] = render_table(result["rows"])
    try:
        result["outbound_tls"] = outbound_tls(dump)
    except EnvoyDumpError:
        result["outbound_tls"] = None
    return result


def inbound_matches(expect, modes):
    """True when every expected port has the expected mode (a port missing from the dump falls back to '*')."""
    for port, mode in expect.items():
        if modes.get(str(port), modes.get("*")) != str(mode).upper():
            return False
    return True


def read_dump(module, api, apps_api):
    ref = normalize_workload(module.params, "pod")
    pod = find_pod(api, apps_api, ref["namespace"], pod=ref["pod"], deployment=ref["deployment"],
                   label_selector=ref["label_selector"])
    name = pod["metadata"]["name"]
    container = require_container(pod, module.params["container"])
    rc, out, err = exec_in_pod(api, ref["namespace"], name, container, CONFIG_DUMP_ARGV, module.params["timeout"])
    if rc != 0:
        raise K8sExecError("%s in %s/%s (%s) exited %d: %s"
                           % (" ".join(CONFIG_DUMP_ARGV), ref["namespace"], name, container, rc, err.strip()[:500]))
    try:
        return name, json.loads(out)
    except ValueError:
        raise EnvoyDumpError("the config dump of %s/%s is not JSON (first bytes: %r)" % (ref["namespace"], name,
                                                                                         out[:200])) from None


def main():
    module = AnsibleK8SModule(module_class=AnsibleModule, argument_spec=argument_spec(),
                              supports_check_mode=True, check_k8s=False, check_pyyaml=False)
    expect = module.params["expect_inbound"]
    try:
        if module.params["config_dump"] is not None:
            name, result = None, tls_view(module.params["config_dump"])
            converged, after = inbound_matches(expect, result["inbound_modes"]), 0.0
        else:
            module.requires("kubernetes")
            api, apps_api = core_and_apps_api(get_api_client(module))

            def observe():
                pod_name, dump = read_dump(module, api, apps_api)
                return pod_name, tls_view(dump)

            (name, result), converged, after, _attempts = poll_until(
                observe, lambda got: inbound_matches(expect, got[1]["inbound_modes"]), module.params["wait_timeout"])
    except (SourceError, K8sExecError, EnvoyDumpError) as exc:
        module.fail_json(msg=str(exc))
    except CoreException as exc:
        module.fail_from_exception(exc)
    if result["outbound_tls"] is None:
        module.warn("the config dump has no clusters section; outbound_tls is not available")
    module.exit_json(changed=False, pod=name, converged=converged, converged_after_s=after if converged else None,
                     **result)


if __name__ == "__main__":
    main()
