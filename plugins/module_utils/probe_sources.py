# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Validate workload references (``{name, namespace, deployment|pod|label_selector, container}``)
and URLs before anything is sent to a cluster."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

try:
    from urllib.parse import urlsplit
except ImportError:  # Python 2 is not supported
    urlsplit = None

SELECTOR_KEYS = ("deployment", "pod", "label_selector")

# Shared by the modules' argument specs.
WORKLOAD_SPEC = dict(
    name=dict(type="str"),
    namespace=dict(type="str", required=True),
    deployment=dict(type="str"),
    pod=dict(type="str"),
    label_selector=dict(type="str"),
    container=dict(type="str"),
)


class SourceError(ValueError):
    """A workload reference or URL is unusable."""


def normalize_workload(ref, what="source"):
    """The reference with exactly one of deployment/pod/label_selector and a display name."""
    if not isinstance(ref, dict):
        raise SourceError("%s must be a dict, got %r" % (what, ref))
    if not ref.get("namespace"):
        raise SourceError("%s %r has no namespace" % (what, ref))
    given = [k for k in SELECTOR_KEYS if ref.get(k)]
    if len(given) != 1:
        raise SourceError("%s %r needs exactly one of deployment, pod, label_selector (got %s)"
                          % (what, ref.get("name") or ref, ", ".join(given) or "none"))
    out = {k: ref.get(k) or None for k in ("namespace", "container") + SELECTOR_KEYS}
    out["name"] = ref.get("name") or ref.get(given[0])
    return out


def normalize_sources(refs, what="source"):
    """Validate a list of references; names must be unique (they key the results)."""
    out = [normalize_workload(r, what) for r in refs or []]
    names = [r["name"] for r in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SourceError("%s names must be unique, repeated: %s" % (what, ", ".join(dupes)))
    return out


def check_url(url):
    """Return the URL if it is http(s) with a host, else raise SourceError."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if not parts or parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceError("target %r is not an http:// or https:// URL with a host" % (url,))
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise SourceError("target %r has a bad port" % (url,))
    if any(c in url for c in "'\"\\`$ \n"):
        raise SourceError("target %r contains quotes, spaces or shell characters" % (url,))
    return url
