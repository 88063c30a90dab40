# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Filters the verify role builds its expectations and its report with.

Documentation lives next to this file: mtls_verify_plan.yml, mtls_verify_checks.yml, mtls_junit_xml.yml,
mtls_verdict_table.yml.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.meshlab.mtls.plugins.module_utils.mtls_predict import MtlsPredictError
from ansible_collections.meshlab.mtls.plugins.module_utils.mtls_verdict import (
    MtlsVerdictError, junit_xml, render_verdict_table,
)
from ansible_collections.meshlab.mtls.plugins.module_utils.report import ReportError, verify_checks, verify_plan


def _plain(value):
    """Templated data may arrive as Ansible's own dict/list subclasses; hand plain ones to module_utils."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _resources(value):
    if isinstance(value, dict) and "resources" in value:
        value = value["resources"]
    return _plain(value or [])


def mtls_verify_plan(mode, namespace="bookinfo", root_namespace="istio-system", peer_authentications=None,
                     destination_rules=None, smcp=None, pods=None, deployments=None, gateway_pods=None, sources=None):
    try:
        smcp_list = _resources(smcp)
        return verify_plan(mode, namespace, root_namespace, _resources(peer_authentications),
                           _resources(destination_rules), smcp_list[0] if isinstance(smcp_list, list) and smcp_list
                           else (smcp_list or None), _resources(pods), _resources(deployments),
                           _resources(gateway_pods), _plain(sources or []))
    except (ReportError, MtlsPredictError) as exc:
        raise AnsibleFilterError("mtls_verify_plan: %s" % exc) from exc


def mtls_verify_checks(plan, probe=None, listener=None, wire=None):
    try:
        return verify_checks(_plain(plan), _plain(probe), _plain(listener), _plain(wire))
    except (ReportError, KeyError, TypeError) as exc:
        raise AnsibleFilterError("mtls_verify_checks: %s" % exc) from exc


def mtls_junit_xml(report):
    try:
        return junit_xml(_plain(report))
    except MtlsVerdictError as exc:
        raise AnsibleFilterError("mtls_junit_xml: %s" % exc) from exc


def mtls_verdict_table(checks, mode):
    try:
        return render_verdict_table(mode, _plain(checks)).splitlines()
    except MtlsVerdictError as exc:
        raise AnsibleFilterError("mtls_verdict_table: %s" % exc) from exc


class FilterModule(object):
    def filters(self):
        return {
            "mtls_verify_plan": mtls_verify_plan,
            "mtls_verify_checks": mtls_verify_checks,
            "mtls_junit_xml": mtls_junit_xml,
            "mtls_verdict_table": mtls_verdict_table,
        }
