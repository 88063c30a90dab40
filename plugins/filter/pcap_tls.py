# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filter over the pcap TLS classifier. Documentation lives next to this file: pcap_tls_summary.yml."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.meshlab.mtls.plugins.module_utils.pcap_tls import PcapError, summarize_base64


def pcap_tls_summary(capture_base64):
    try:
        return summarize_base64(capture_base64)
    except PcapError as exc:
        raise AnsibleFilterError("pcap_tls_summary: %s" % exc) from exc


class FilterModule(object):
    def filters(self):
        return {"pcap_tls_summary": pcap_tls_summary}
