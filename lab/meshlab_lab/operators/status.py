"""Helpers for writing Kubernetes-style status blocks without needless updates."""
from meshlab_lab.operators.rest import now_rfc3339


def condition(type_, status, reason="", message="", previous=None):
    """A condition that keeps its lastTransitionTime when its status did not change."""
    old = next((c for c in previous or [] if c.get("type") == type_), None)
    since = old["lastTransitionTime"] if old and old.get("status") == status and old.get("lastTransitionTime") \
        else now_rfc3339()
    cond = {"type": type_, "status": status, "lastTransitionTime": since}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def same(current: dict, desired: dict, ignore=("lastUpdated", "lastTransitionTime", "lastUpdateTime")) -> bool:
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ignore}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return strip(current or {}) == strip(desired)
