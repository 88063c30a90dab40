#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: mtls_probe
short_description: Send HTTP requests from mesh workloads and from the controller and summarize the outcome
version_added: 0.1.0
author:
  - meshlab.mtls maintainers (@meshlab)
description:
  - For each source workload, picks one Running and Ready pod and runs all requests to all targets
    inside one exec (C(sh -c) running C(curl) O(count) times per target) in an explicit container.
  - For each O(external) entry, sends the requests from the controller with Python's C(http.client)
    and C(ssl), honouring curl-style O(external[].connect_to) rules, SNI and the Host header.
  - Every request is classified with the same vocabulary as curl exit codes (refused, reset, empty
    reply, TLS error, timeout). The module never changes anything.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
options:
  sources:
    description: Workloads to send requests from.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name of the source in the results; defaults to the deployment, pod or selector.
        type: str
      namespace:
        description: Namespace of the workload.
        type: str
        required: true
      deployment:
        description: Deployment whose pods are candidates (its C(spec.selector.matchLabels)).
        type: str
      pod:
        description: A pod by name.
        type: str
      label_selector:
        description: A label selector for candidate pods.
        type: str
      container:
        description: Container to run curl in; defaults to the pod's first container.
        type: str
  targets:
    description: URLs every source requests.
    type: list
    elements: str
    default: []
  count:
    description: Requests per source and target.
    type: int
    default: 10
  timeout:
    description: Seconds allowed per request (curl C(--max-time)).
    type: int
    default: 5
  external:
    description: Requests sent from the controller.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Source name in the results.
        type: str
        default: external
      url:
        description: URL to request.
        type: str
        required: true
      connect_to:
        description: curl C(--connect-to) rules C(HOST1:PORT1:HOST2:PORT2); the first match wins.
        type: list
        elements: str
        default: []
      ca_file:
        description: PEM file with the CA certificates to trust instead of the system ones.
        type: path
      validate_certs:
        description: Whether to verify the server certificate and its name.
        type: bool
        default: true
  expect:
    description:
      - Expected observation per source name, for all its targets, as C(success), C(mixed) or
        C(failure (<symptom>)) with symptom C(reset), C(http-503), C(empty-reply), C(refused), C(timeout),
        C(tls-error) or C(curl-<exit code>) (the vocabulary of the C(mtls_predict) filter). A list gives
        several acceptable values.
      - With O(wait_timeout) the whole round of probes is repeated, with a growing pause, until every
        source observes what is expected.
    type: dict
    default: {}
  wait_timeout:
    description: Seconds to keep repeating the probes until O(expect) is met (0 probes once).
    type: int
    default: 0
requirements:
  - kubernetes >= 24.2.0 (only when O(sources) is given)
notes:
  - Sources without C(curl) in the chosen container fail with curl's exit code 127 in the results.
"""

EXAMPLES = r"""
- name: Probe productpage from inside and outside the mesh and through the route
  meshlab.mtls.mtls_probe:
    sources:
      - name: inside-mesh
        namespace: bookinfo
        deployment: inside-mesh
        container: nginx
      - name: outside-mesh
        namespace: bookinfo
        deployment: outside-mesh
        container: nginx
    targets:
      - http://productpage.bookinfo.svc.cluster.local:9080/productpage
    external:
      - url: https://api-istio-system.apps.lab.local/productpage
        connect_to:
          - api-istio-system.apps.lab.local:443:127.0.0.1:8443
        ca_file: .lab/pki/router-ca.crt
    count: 10
  register: probe
"""

RETURN = r"""
probes:
  description: One entry per source and target.
  returned: always
  type: list
  elements: dict
  sample:
    - source: outside-mesh
      target: http://productpage.bookinfo.svc.cluster.local:9080/productpage
      count: 10
      succeeded: 0
      failed: 10
      statuses: {}
      curl_exits: {"56": 10}
      result: failure
      meaning: connection reset by peer
      observed: failure (reset)
      samples: []
converged:
  description: Whether the last round matched O(expect) (true when O(expect) is empty).
  returned: always
  type: bool
converged_after_s:
  description: Seconds from the start of the first round to the start of the matching one (null if none matched).
  returned: always
  type: float
attempts:
  description: Rounds of probes sent.
  returned: always
  type: int
pods:
  description: The pod chosen for each source, keyed by source name.
  returned: always
  type: dict
  sample: {"inside-mesh": "inside-mesh-6d4b8c-2x7kq"}
"""

import copy

from ansible_collections.kubernetes.core.plugins.module_utils.ansiblemodule import AnsibleModule
from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException
from ansible_collections.meshlab.mtls.plugins.module_utils.k8s_exec import (
    K8sExecError, core_and_apps_api, exec_in_pod, find_pod, require_container,
)
from ansible_collections.meshlab.mtls.plugins.module_utils.probe_external import ConnectToError, parse_connect_to
from ansible_collections.meshlab.mtls.plugins.module_utils.probe_runner import (
    run_external, run_in_pod_script, summarize_pod_output,
)
from ansible_collections.meshlab.mtls.plugins.module_utils.probe_summary import observed_reachability
from ansible_collections.meshlab.mtls.plugins.module_utils.probe_wait import poll_until
from ansible_collections.meshlab.mtls.plugins.module_utils.probe_sources import (
    WORKLOAD_SPEC, SourceError, check_url, normalize_sources,
)


def argument_spec():
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(
        sources=dict(type="list", elements="dict", default=[], options=copy.deepcopy(WORKLOAD_SPEC)),
        targets=dict(type="list", elements="str", default=[]),
        count=dict(type="int", default=10),
        timeout=dict(type="int", default=5),
        expect=dict(type="dict", default={}),
        wait_timeout=dict(type="int", default=0),
        external=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", default="external"),
            url=dict(type="str", required=True),
            connect_to=dict(type="list", elements="str", default=[]),
            ca_file=dict(type="path"),
            validate_certs=dict(type="bool", default=True),
        )),
    )
    return spec


def validate(params):
    """Everything that can be wrong with the options, checked before any request is sent."""
    if params["count"] < 1 or params["count"] > 1000:
        raise SourceError("count must be between 1 and 1000, got %d" % params["count"])
    if params["timeout"] < 1:
        raise SourceError("timeout must be at least 1 second, got %d" % params["timeout"])
    sources = normalize_sources(params["sources"])
    targets = [check_url(t) for t in params["targets"]]
    if sources and not targets:
        raise SourceError("sources were given but no targets")
    if not sources and not params["external"]:
        raise SourceError("nothing to probe: give sources and targets, or external")
    if params["wait_timeout"] < 0:
        raise SourceError("wait_timeout must not be negative")
    names = {s["name"] for s in sources} | {e["name"] for e in params["external"]}
    unknown = sorted(set(params["expect"]) - names)
    if unknown:
        raise SourceError("expect names unknown sources: %s (sources: %s)"
                          % (", ".join(unknown), ", ".join(sorted(names))))
    external = []
    for ext in params["external"]:
        check_url(ext["url"])
        try:
            rules = [parse_connect_to(c) for c in ext["connect_to"]]
        except ConnectToError as exc:
            raise SourceError(str(exc)) from None
        external.append(dict(ext, rules=rules))
    return sources, targets, external


def meets(expect, probes):
    """True when every probe of every source named in ``expect`` observes an acceptable value."""
    for probe in probes:
        wanted = expect.get(probe["source"])
        if wanted is None:
            continue
        acceptable = wanted if isinstance(wanted, list) else [wanted]
        if observed_reachability(probe) not in acceptable:
            return False
    return True


def probe_round(module, api, apps_api, sources, targets, external):
    probes, pods = [], {}
    if sources:
        probes, pods = probe_sources(module, api, apps_api, sources, targets)
    for ext in external:
        probes.append(run_external(ext, module.params["count"], module.params["timeout"]))
    for probe in probes:
        probe["observed"] = observed_reachability(probe)
    return probes, pods


def probe_sources(module, api, apps_api, sources, targets):
    count, timeout = module.params["count"], module.params["timeout"]
    probes, pods = [], {}
    for src in sources:
        pod = find_pod(api, apps_api, src["namespace"], pod=src["pod"], deployment=src["deployment"],
                       label_selector=src["label_selector"])
        name = pod["metadata"]["name"]
        pods[src["name"]] = name
        container = require_container(pod, src["container"])
        script = run_in_pod_script(targets, count, timeout)
        exec_budget = len(targets) * count * (timeout + 2) + 30
        rc, out, err = exec_in_pod(api, src["namespace"], name, container, ["sh", "-c", script], exec_budget)
        probes.extend(summarize_pod_output(src["name"], targets, count, rc, out, err))
    return probes, pods


def main():
    module = AnsibleK8SModule(module_class=AnsibleModule, argument_spec=argument_spec(),
                              supports_check_mode=True, check_k8s=False, check_pyyaml=False)
    try:
        sources, targets, external = validate(module.params)
    except SourceError as exc:
        module.fail_json(msg=str(exc))
    api = apps_api = None
    try:
        if sources:
            module.requires("kubernetes")
            api, apps_api = core_and_apps_api(get_api_client(module))
        expect = module.params["expect"]
        (probes, pods), converged, after, attempts = poll_until(
            lambda: probe_round(module, api, apps_api, sources, targets, external),
            lambda result: meets(expect, result[0]), module.params["wait_timeout"])
    except K8sExecError as exc:
        module.fail_json(msg=str(exc))
    except CoreException as exc:
        module.fail_from_exception(exc)
    module.exit_json(changed=False, probes=probes, pods=pods, converged=converged, converged_after_s=after,
                     attempts=attempts)


if __name__ == "__main__":
    main()
