"""Write kubeconfig files that authenticate with the lab's client certificates."""
from pathlib import Path

import yaml

from meshlab_lab.addresses import API_URL


def write(path: Path, pki: Path, cert_name: str, user: str, server: str = API_URL) -> None:
    doc = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "meshlab", "cluster": {"server": server,
                                                     "certificate-authority": str(pki / "ca.crt")}}],
        "users": [{"name": user, "user": {"client-certificate": str(pki / f"{cert_name}.crt"),
                                          "client-key": str(pki / f"{cert_name}.key")}}],
        "contexts": [{"name": "meshlab", "context": {"cluster": "meshlab", "user": user, "namespace": "default"}}],
        "current-context": "meshlab",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
