"""Install the lab's CRD manifests (lab/crds/...) and tell whether they are Established."""
from pathlib import Path

import yaml

from meshlab_lab.operators.rest import ApiError

CRD_ROOT = Path(__file__).resolve().parents[2] / "crds"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def manifests(folder: str) -> list[dict]:
    """The CRDs in ``lab/crds/<folder>`` (e.g. ``base``, ``operators/servicemeshoperator``)."""
    directory = CRD_ROOT / folder
    if not directory.is_dir():
        raise FileNotFoundError(f"no CRD folder {directory}")
    return [yaml.safe_load(p.read_text()) for p in sorted(directory.glob("*.yaml"))]


def apply(rest, crd: dict) -> None:
    """Create the CRD, or replace its spec if it already exists (keeps resourceVersion semantics)."""
    try:
        rest.create(CRD_PATH, crd)
    except ApiError as exc:
        if exc.status != 409:
            raise
        current = rest.get(f"{CRD_PATH}/{crd['metadata']['name']}")
        body = dict(crd, metadata=dict(crd["metadata"], resourceVersion=current["metadata"]["resourceVersion"]))
        rest.call("PUT", f"{CRD_PATH}/{crd['metadata']['name']}", body)


def is_established(crd: dict | None) -> bool:
    if not crd:
        return False
    return any(c.get("type") == "Established" and c.get("status") == "True"
               for c in crd.get("status", {}).get("conditions", []))


def all_established(rest, names) -> bool:
    return all(is_established(rest.get(f"{CRD_PATH}/{name}")) for name in names)
