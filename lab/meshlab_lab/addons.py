"""Addon supervisor: modules from lab/addons.txt run as `python -m <module> --kubeconfig K --state-dir S`.

An addon is ready when it creates `.lab/run/<module>.ready`. Missing modules are skipped with a warning.
"""
import importlib.util
import os
import sys

from meshlab_lab import paths, procs
from meshlab_lab.k8s import wait_for

ADDONS_FILE = paths.LAB_DIR / "addons.txt"


class AddonError(RuntimeError):
    pass


def listed() -> list[str]:
    """Modules from lab/addons.txt; MESHLAB_ADDONS (comma-separated, may be empty) overrides the file."""
    override = os.environ.get("MESHLAB_ADDONS")
    if override is not None:
        return [m.strip() for m in override.split(",") if m.strip()]
    if not ADDONS_FILE.exists():
        return []
    names = []
    for line in ADDONS_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    return names


def _runnable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None and (
            importlib.util.find_spec(module + ".__main__") is not None or
            not hasattr(importlib.util.find_spec(module), "submodule_search_locations") or
            importlib.util.find_spec(module).submodule_search_locations is None)
    except (ImportError, ValueError):
        return False


def ready_file(module: str):
    return paths.run_dir() / f"{module}.ready"


def start_all(timeout: float = 180, log=print) -> list[str]:
    started = []
    env = {"PYTHONPATH": os.pathsep.join([str(paths.LAB_DIR)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    for module in listed():
        if not _runnable(module):
            log(f"warning: addon {module} is not importable as `python -m {module}`; skipped")
            continue
        ready_file(module).unlink(missing_ok=True)
        procs.start(module, [sys.executable, "-m", module, "--kubeconfig", str(paths.kubeconfig_path()),
                             "--state-dir", str(paths.state_dir())], env=env)
        started.append(module)
    for module in started:
        def check(module=module):
            if not procs.running_pid(module):
                raise AddonError(f"addon {module} exited; log tail:\n{_tail(module)}")
            return ready_file(module).exists()
        try:
            wait_for(check, timeout, f"addon {module} readiness ({ready_file(module)})", fatal=(AddonError,))
        except TimeoutError as exc:
            raise AddonError(f"{exc}; log tail:\n{_tail(module)}") from None
        log(f"addon {module}: ready")
    return started


def _tail(module: str) -> str:
    path = procs.log_file(module)
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


def stop_all(grace: float = 10) -> None:
    for module in reversed(listed()):
        procs.stop(module, grace=grace)
        ready_file(module).unlink(missing_ok=True)
