"""Where the lab keeps things. Everything is derived from this file's location or the environment."""
import os
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = LAB_DIR.parent


def state_dir() -> Path:
    """The lab's runtime state (`.lab/` in the repo root unless MESHLAB_STATE_DIR says otherwise)."""
    return Path(os.environ.get("MESHLAB_STATE_DIR") or REPO_ROOT / ".lab").resolve()


def kubeconfig_path() -> Path:
    return Path(os.environ.get("MESHLAB_KUBECONFIG") or state_dir() / "kubeconfig")


def logs_dir() -> Path:
    return state_dir() / "logs"


def run_dir() -> Path:
    return state_dir() / "run"


def pki_dir() -> Path:
    return state_dir() / "pki"


def pods_dir() -> Path:
    return state_dir() / "pods"


def kube_bin_dir() -> Path:
    """Kubernetes 1.20.2 binaries: MESHLAB_KUBE_BIN_DIR, else the build cache."""
    env = os.environ.get("MESHLAB_KUBE_BIN_DIR")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "meshlab" / "kube-1.20.2" / "bin"


def kubectl_path() -> Path:
    return kube_bin_dir() / "kubectl"
