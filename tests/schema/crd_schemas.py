"""The served-version openAPIV3Schema of the upstream CRDs in ../shared/crds, validated with jsonschema.

The API server prunes fields its structural schema does not declare, silently. To catch a misspelt field
before a cluster drops it, objects that declare `properties` and do not keep unknown fields are closed
(`additionalProperties: false`), as `kubectl apply --validate=strict` would report them. Keywords whose
value is null in the CRD are dropped, as the API server does."""
import copy
import os
from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml

CRD_DIRS = ("ossm2", "openshift", "olm")


def shared_dir():
    env = os.environ.get("MESHLAB_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared"


# Value validations only; the structural schema around them is what gets closed.
_LOGICAL = ("allOf", "anyOf", "oneOf", "not")


def _close_objects(schema):
    if isinstance(schema, dict):
        for key in [key for key, value in schema.items() if value is None]:
            del schema[key]  # e.g. the Route CRD's `anyOf: null`, which the API server ignores
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        for key, value in schema.items():
            if key not in _LOGICAL:
                _close_objects(value)
    elif isinstance(schema, list):
        for value in schema:
            _close_objects(value)
    return schema


@lru_cache(maxsize=None)
def _crd_index():
    index = {}
    for sub in CRD_DIRS:
        for path in sorted((shared_dir() / "crds" / sub).glob("*.yaml")):
            crd = yaml.safe_load(path.read_text())
            spec = crd["spec"]
            for version in spec["versions"]:
                if version.get("served"):
                    key = ("%s/%s" % (spec["group"], version["name"]), spec["names"]["kind"])
                    index[key] = (path, version["schema"]["openAPIV3Schema"])
    return index


def crd_validator(api_version, kind):
    """A jsonschema validator for the served version; KeyError when no CRD serves it."""
    path, schema = _crd_index()[(api_version, kind)]
    strict = copy.deepcopy(schema)
    # The API server accepts these on every custom resource, whether the CRD schema lists them or not.
    for implicit in ("apiVersion", "kind"):
        strict.setdefault("properties", {}).setdefault(implicit, {"type": "string"})
    strict["properties"].setdefault("metadata", {"type": "object"})
    strict = _close_objects(strict)
    return jsonschema.Draft4Validator(strict), path


def crd_errors(manifest):
    validator = crd_validator(manifest["apiVersion"], manifest["kind"])[0]
    return sorted("%s: %s" % ("/".join(str(p) for p in error.absolute_path) or "<root>", error.message)
                  for error in validator.iter_errors(manifest))
