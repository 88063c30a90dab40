# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters over the Envoy config dump reader.

Documentation lives next to this file: envoy_tls_summary.yml, envoy_tls_table.yml, envoy_inbound_modes.yml.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible.errors import AnsibleFilterError

from ansible_collections.meshlab.mtls.plugins.module_utils.envoy_tls import (
    EnvoyDumpError,
    inbound_modes,
    render_table,
    summarize,
)


def _dump(value, name):
    """A config dump given as a dict or as the JSON text ``pilot-agent request GET config_dump`` printed."""
    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise AnsibleFilterError("%s: the input text is not JSON (%s); pass the stdout of "
                                     "`pilot-agent request GET config_dump`" % (name, exc)) from exc
    return value


def envoy_tls_summary(config_dump):
    try:
        return summarize(_dump(config_dump, "envoy_tls_summary"))
    except EnvoyDumpError as exc:
        raise AnsibleFilterError("envoy_tls_summary: %s" % exc) from exc


def envoy_tls_table(rows):
    try:
        if isinstance(rows, (dict, str, bytes)):  # a whole dump: summarize it first
            rows = summarize(_dump(rows, "envoy_tls_table"))
        return render_table(list(rows) if isinstance(rows, tuple) else rows)
    except EnvoyDumpError as exc:
        raise AnsibleFilterError("envoy_tls_table: %s" % exc) from exc


def envoy_inbound_modes(config_dump):
    try:
        return inbound_modes(_dump(config_dump, "envoy_inbound_modes"))
    except EnvoyDumpError as exc:
        raise AnsibleFilterError("envoy_inbound_modes: %s" % exc) from exc


class FilterModule(object):
    def filters(self):
        return {
            "envoy_tls_summary": envoy_tls_summary,
            "envoy_tls_table": envoy_tls_table,
            "envoy_inbound_modes": envoy_inbound_modes,
        }
