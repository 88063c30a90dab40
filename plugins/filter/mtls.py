# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters over the expectation engine, the Kiali namespace status and the verdict builder.

Documentation lives next to this file: mtls_predict.yml, namespace_mtls_status.yml, mtls_verdict.yml.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.meshlab.mtls.plugins.module_utils.kiali_mtls import (
    KialiMtlsError,
    namespace_mtls_status as _namespace_mtls_status,
)
from ansible_collections.meshlab.mtls.plugins.module_utils.mtls_predict import (
    MtlsPredictError,
    predict,
)
from ansible_collections.meshlab.mtls.plugins.module_utils.mtls_verdict import (
    MtlsVerdictError,
    verdict,
)


def _resources(value, what):
    """Accept a k8s_info result (``{resources: [...]}``), a plain list, or nothing (no objects)."""
    if value is None:
        return []
    if isinstance(value, dict):
        if "resources" not in value:
            raise AnsibleFilterError("%s: expected a list or a k8s_info result with 'resources'" % what)
        value = value["resources"]
    if not isinstance(value, (list, tuple)):
        raise AnsibleFilterError("%s: expected a list of Kubernetes objects, got %s" % (what, type(value).__name__))
    return [dict(item) if isinstance(item, dict) else item for item in value]


def mtls_predict(peer_authentications, destination_rules=None, client=None, server=None,
                 root_namespace="istio-system", auto_mtls=False):
    if client is None or server is None:
        raise AnsibleFilterError("mtls_predict: client and server are required")
    try:
        return predict(_resources(peer_authentications, "mtls_predict input"),
                       _resources(destination_rules, "mtls_predict destination_rules"),
                       dict(client), dict(server), root_namespace=root_namespace, auto_mtls=auto_mtls)
    except MtlsPredictError as exc:
        raise AnsibleFilterError("mtls_predict: %s" % exc) from exc


def namespace_mtls_status(peer_authentications, destination_rules=None, namespace=None, auto_mtls=False,
                          root_namespace="istio-system"):
    if not namespace:
        raise AnsibleFilterError("namespace_mtls_status: namespace is required")
    try:
        return _namespace_mtls_status(_resources(peer_authentications, "namespace_mtls_status input"),
                                      _resources(destination_rules, "namespace_mtls_status destination_rules"),
                                      namespace, auto_mtls=auto_mtls, root_namespace=root_namespace)
    except KialiMtlsError as exc:
        raise AnsibleFilterError("namespace_mtls_status: %s" % exc) from exc


def mtls_verdict(checks):
    if not isinstance(checks, (list, tuple)):
        raise AnsibleFilterError("mtls_verdict: input must be a list of checks, got %s" % type(checks).__name__)
    try:
        return verdict([dict(check) if isinstance(check, dict) else check for check in checks])
    except (MtlsVerdictError, TypeError) as exc:
        raise AnsibleFilterError("mtls_verdict: %s" % exc) from exc


class FilterModule(object):
    def filters(self):
        return {
            "mtls_predict": mtls_predict,
            "namespace_mtls_status": namespace_mtls_status,
            "mtls_verdict": mtls_verdict,
        }
