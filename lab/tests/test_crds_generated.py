"""The committed CRD YAML under lab/crds is exactly what lab/crds/generate.py produces, and installable."""
import importlib.util
from pathlib import Path

import yaml

CRD_DIR = Path(__file__).resolve().parents[1] / "crds"


def _generator():
    spec = importlib.util.spec_from_file_location("crd_generate", CRD_DIR / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_yaml_matches_generator():
    expected = _generator().expected_files()
    on_disk = {str(p.relative_to(CRD_DIR)): p.read_text() for p in CRD_DIR.rglob("*.yaml")}
    assert sorted(on_disk) == sorted(expected), "run: python lab/crds/generate.py"
    stale = [name for name, text in expected.items() if on_disk[name] != text]
    assert not stale, f"out of date (run python lab/crds/generate.py): {stale}"


def test_every_file_is_one_v1_crd_named_after_its_plural_and_group():
    for path in CRD_DIR.rglob("*.yaml"):
        docs = list(yaml.safe_load_all(path.read_text()))
        assert len(docs) == 1, path
        crd = docs[0]
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert crd["kind"] == "CustomResourceDefinition"
        spec = crd["spec"]
        assert path.name == f"{spec['names']['plural']}.{spec['group']}.yaml"
        assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
        assert sum(v["storage"] for v in spec["versions"]) == 1, path
        assert "&id" not in path.read_text(), f"{path} uses YAML aliases"


def test_package_layout_matches_what_olm_installs():
    folders = {p.name for p in (CRD_DIR / "operators").iterdir() if p.is_dir()}
    assert folders == {"servicemeshoperator", "servicemeshoperator3", "kiali-ossm", "elasticsearch-operator"}
    mesh = {p.name for p in (CRD_DIR / "operators" / "servicemeshoperator").glob("*.yaml")}
    assert "peerauthentications.security.istio.io.yaml" in mesh
    assert "servicemeshcontrolplanes.maistra.io.yaml" in mesh
    base = {p.name for p in (CRD_DIR / "base").glob("*.yaml")}
    assert "packagemanifests.packages.operators.coreos.com.yaml" in base
    assert "routes.route.openshift.io.yaml" in base
