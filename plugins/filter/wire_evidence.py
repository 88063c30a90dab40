# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filter over the telemetry wire judgement. Documentation lives next to this file: mtls_wire_evidence.yml."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.meshlab.mtls.plugins.module_utils.wire_telemetry import TelemetryError, wire_evidence


def mtls_wire_evidence(before, after):
    try:
        return wire_evidence(before, after)
    except TelemetryError as exc:
        raise AnsibleFilterError("mtls_wire_evidence: %s; pass the raw text of the server sidecar's "
                                 "`pilot-agent request GET stats/prometheus` (or stats)" % exc) from exc


class FilterModule(object):
    def filters(self):
        return {"mtls_wire_evidence": mtls_wire_evidence}
