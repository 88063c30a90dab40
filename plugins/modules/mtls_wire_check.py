#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: mtls_wire_check
short_description: Show whether traffic between two mesh workloads is encrypted on the wire
version_added: 0.1.0
author:
  - meshlab.mtls maintainers (@meshlab)
description:
  - Sends a burst of requests and collects evidence of whether the connections between the client
    workload and the server workload carried TLS.
  - With O(method=telemetry) (unprivileged, the default) it reads Istio's standard request telemetry on the
    server sidecar (C(pilot-agent request GET stats/prometheus)) before and after the burst and judges the
    difference of C(istio_requests_total) / C(istio_tcp_connections_opened_total) at
    C(reporter="destination") from the client's workload, by C(connection_security_policy) (C(mutual_tls)
    is C(encrypted), C(none) C(plaintext)); see the filter P(meshlab.mtls.mtls_wire_evidence#filter). It works
    with Istio's default stats inclusion. Without Istio metrics the verdict is C(unknown), never a guess.
  - With O(method=stats) (unprivileged) it reads the Envoy counters of the client sidecar's outbound
    cluster (C(upstream_cx_total), C(ssl.handshake)) and of the server sidecar's inbound listener
    C(0.0.0.0_15006) (C(downstream_cx_total), C(ssl.handshake)) before and after the burst. New connections
    with handshakes are C(encrypted), without C(plaintext), both C(mixed), none C(no-traffic).
  - With O(method=capture) (privileged) it starts a temporary privileged pod (C(hostPID), C(hostNetwork))
    on the server pod's node, runs C(tcpdump) in the server container's network namespace while the burst
    is sent, reads the capture back and classifies it. The temporary pod is always deleted, also on failure;
    in check mode nothing is created, the verdict is C(unknown) and C(evidence.basis) says which pod would
    have been created where.
  - Never reports a change.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
options:
  client:
    description: The calling workload (its sidecar's outbound cluster counters are read when it has one).
    type: dict
    required: true
    suboptions: &workload
      name:
        description: Name used in the results.
        type: str
      namespace:
        description: Namespace of the workload.
        type: str
        required: true
      deployment:
        description: Deployment whose Running and Ready pod is used.
        type: str
      pod:
        description: A pod by name.
        type: str
      label_selector:
        description: A label selector for candidate pods.
        type: str
      container:
        description:
          - Application container. For O(traffic_source) it runs curl (default the first container);
            for O(server) with O(method=capture) its PID gives the network namespace (default the first
            container that is not O(proxy_container)).
        type: str
  server:
    description: The called workload. It must have a sidecar for O(method=stats).
    type: dict
    required: true
    suboptions: *workload
  url:
    description:
      - URL requested O(count) times by O(traffic_source) (the burst). Also gives the default O(service) and O(port).
    type: str
  traffic_source:
    description: Workload that sends the burst; defaults to O(client).
    type: dict
    suboptions: *workload
  traffic_command:
    description: A shell command run (C(sh -c)) in O(traffic_source) instead of curl.
    type: str
  service:
    description: Service host of the server as the client calls it (short, C(name.namespace) or FQDN).
    type: str
  port:
    description: Service port of the server (the port captured on the wire with O(method=capture)).
    type: int
  cluster:
    description: Envoy outbound cluster name to read; defaults to C(outbound|<port>||<service FQDN>).
    type: str
  cluster_domain:
    description: Cluster DNS domain used to complete a short O(service).
    type: str
    default: cluster.local
  count:
    description: Requests in the burst.
    type: int
    default: 10
  timeout:
    description: Seconds per request, and the base of every exec time budget.
    type: int
    default: 5
  method:
    description: How to collect evidence.
    type: str
    choices: [telemetry, stats, capture]
    default: telemetry
  proxy_container:
    description: Name of the sidecar container.
    type: str
    default: istio-proxy
  capture_image:
    description: Image of the temporary capture pod (needs sh, tcpdump, nsenter, crictl, base64).
    type: str
    default: docker.io/nicolaka/netshoot:latest
  capture_namespace:
    description: Namespace of the temporary capture pod; defaults to the server's namespace.
    type: str
  capture_timeout:
    description: Seconds to wait for the capture pod to run.
    type: int
    default: 120
  dest:
    description: Where to save the capture (pcap) on the host running the module.
    type: path
  expect:
    description:
      - Acceptable verdicts (C(encrypted), C(plaintext), C(mixed), C(no-traffic), C(unknown)). With O(wait_timeout) the
        check is repeated, with a growing pause, until the verdict is one of them.
    type: list
    elements: str
    default: []
  wait_timeout:
    description: Seconds to keep repeating the check until O(expect) is met (0 checks once).
    type: int
    default: 0
requirements:
  - kubernetes >= 24.2.0
"""

EXAMPLES = r"""
- name: Is productpage -> details encrypted? (requests sent from productpage's pod by curl)
  meshlab.mtls.mtls_wire_check:
    client: {namespace: bookinfo, deployment: productpage-v1}
    server: {namespace: bookinfo, deployment: details-v1}
    url: http://details.bookinfo.svc.cluster.local:9080/details/0
  register: wire

- name: Same, with a packet capture, the traffic made by loading the product page from inside-mesh
  meshlab.mtls.mtls_wire_check:
    method: capture
    client: {namespace: bookinfo, deployment: productpage-v1}
    server: {namespace: bookinfo, deployment: details-v1}
    traffic_source: {namespace: bookinfo, deployment: inside-mesh, container: inside-mesh}
    url: http://productpage.bookinfo.svc.cluster.local:9080/productpage
    service: details
    port: 9080
    dest: /tmp/details.pcap
"""

RETURN = r"""
verdict:
  description: C(encrypted), C(plaintext), C(mixed), C(no-traffic) or (telemetry only) C(unknown).
  returned: always
  type: str
method:
  description: The method used.
  returned: always
  type: str
evidence:
  description:
    - For C(telemetry), the result of P(meshlab.mtls.mtls_wire_evidence#filter) for the client's workload
      (C(basis), C(mtls_requests), C(plaintext_requests), C(plaintext_sources) of all clients) and
      C(source_workload).
    - For C(stats), the counter deltas per side (C(client), C(server)) with each side's verdict and basis.
    - For C(capture), the pcap summary (TLS records, handshakes, cleartext HTTP seen).
    - Both carry C(traffic), the result of the burst.
  returned: always
  type: dict
converged:
  description: Whether the last verdict is in O(expect) (true when it is empty).
  returned: always
  type: bool
converged_after_s:
  description: Seconds from the first check to the matching one (null if none matched).
  returned: always
  type: float
pods:
  description: The pods used.
  returned: always
  type: dict
capture_pod:
  description: Name of the temporary capture pod.
  returned: when O(method=capture)
  type: str
capture_pod_deleted:
  description: Whether the temporary capture pod was deleted (it always is attempted).
  returned: when O(method=capture)
  type: bool
pcap_path:
  description: Where the capture was saved.
  returned: when O(dest) is given and the capture succeeded
  type: str
"""

import copy

from ansible_collections.kubernetes.core.plugins.module_utils.ansiblemodule import AnsibleModule
from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException
from ansible_collections.meshlab.mtls.plugins.module_utils.k8s_exec import K8sExecError, core_and_apps_api
from ansible_collections.meshlab.mtls.plugins.module_utils.pcap_tls import PcapError
from ansible_collections.meshlab.mtls.plugins.module_utils.wire_capture import CaptureError
from ansible_collections.meshlab.mtls.plugins.module_utils.wire_options import validate_options
from ansible_collections.meshlab.mtls.plugins.module_utils.probe_sources import WORKLOAD_SPEC, SourceError
from ansible_collections.meshlab.mtls.plugins.module_utils.probe_wait import poll_until
from ansible_collections.meshlab.mtls.plugins.module_utils.wire_run import WireCheck
from ansible_collections.meshlab.mtls.plugins.module_utils.wire_stats import StatsError
from ansible_collections.meshlab.mtls.plugins.module_utils.wire_telemetry import TelemetryError


def argument_spec():
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(
        client=dict(type="dict", required=True, options=copy.deepcopy(WORKLOAD_SPEC)),
        server=dict(type="dict", required=True, options=copy.deepcopy(WORKLOAD_SPEC)),
        traffic_source=dict(type="dict", options=copy.deepcopy(WORKLOAD_SPEC)),
        url=dict(type="str"),
        traffic_command=dict(type="str"),
        service=dict(type="str"),
        port=dict(type="int"),
        cluster=dict(type="str"),
        cluster_domain=dict(type="str", default="cluster.local"),
        count=dict(type="int", default=10),
        timeout=dict(type="int", default=5),
        method=dict(type="str", choices=["telemetry", "stats", "capture"], default="telemetry"),
        proxy_container=dict(type="str", default="istio-proxy"),
        capture_image=dict(type="str", default="docker.io/nicolaka/netshoot:latest"),
        capture_namespace=dict(type="str"),
        capture_timeout=dict(type="int", default=120),
        dest=dict(type="path"),
        expect=dict(type="list", elements="str", default=[]),
        wait_timeout=dict(type="int", default=0),
    )
    return spec


def main():
    module = AnsibleK8SModule(module_class=AnsibleModule, argument_spec=argument_spec(), supports_check_mode=True,
                              check_pyyaml=False)
    try:
        opts = validate_options(module.params)
    except SourceError as exc:
        module.fail_json(msg=str(exc))
    try:
        api, apps_api = core_and_apps_api(get_api_client(module))
        check = WireCheck(api, apps_api, opts)
        run = {"capture": lambda: check.capture_check(module.check_mode), "stats": check.stats_check,
               "telemetry": check.telemetry_check}[opts["method"]]
        expect = opts["expect"]
        dry = module.check_mode and opts["method"] == "capture"  # nothing to repeat: it only says what it would do
        result, converged, after, attempts = poll_until(
            run, lambda got: not expect or got["verdict"] in expect, 0 if dry else opts["wait_timeout"])
    except (K8sExecError, CaptureError, StatsError, TelemetryError, PcapError) as exc:
        module.fail_json(msg=str(exc))
    except CoreException as exc:
        module.fail_from_exception(exc)
    module.exit_json(changed=False, converged=converged, converged_after_s=after, attempts=attempts, **result)


if __name__ == "__main__":
    main()
