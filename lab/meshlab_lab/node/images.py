"""The image table: which program an emulated node runs for a container image.

Each ``lab/images/<family>.yaml`` holds ``images: [entry, ...]``; an entry has:

- ``name``: entry name (for logs); ``match``: glob patterns on the image *repository* (registry, tag and
  digest stripped, e.g. ``nginxinc/nginx-unprivileged``);
- ``entrypoint`` / ``cmd``: the image's ENTRYPOINT and CMD. As with a container runtime, a container's
  ``command`` replaces ``entrypoint`` and its ``args`` replace ``cmd`` (``cmd`` is dropped when only
  ``command`` is given). Strings may use ``{python}``, ``{images_dir}``, ``{repo}``, ``{state_dir}``,
  ``{pod_dir}`` placeholders;
- ``uid``: default user (``securityContext.runAsUser`` wins); ``path``: PATH directories for the process
  and for exec (placeholders allowed); ``env``: extra default environment;
- ``ready_probe``: a Kubernetes probe (``httpGet``/``tcpSocket``/``exec``) used as readiness probe when the
  container declares none, so Ready means "really serving".
"""
import fnmatch
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from meshlab_lab import paths

IMAGES_DIR = paths.LAB_DIR / "images"


@dataclass
class ImageEntry:
    name: str
    match: list
    entrypoint: list = field(default_factory=list)
    cmd: list = field(default_factory=list)
    uid: int | None = None
    path: list = field(default_factory=list)
    env: dict = field(default_factory=dict)
    ready_probe: dict | None = None
    source: str = ""


class ImageTableError(ValueError):
    pass


def repository(image: str) -> str:
    """``registry.example:5000/ns/name:tag@sha256:..`` -> ``ns/name`` (registry, tag and digest removed)."""
    ref = image.split("@", 1)[0]
    parts = ref.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    last = parts[-1].split(":", 1)[0]
    return "/".join(parts[:-1] + [last])


def load_table(images_dir: Path = IMAGES_DIR) -> list[ImageEntry]:
    entries = []
    for path in sorted(images_dir.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text()) or {}
        if not isinstance(doc.get("images"), list):
            raise ImageTableError(f"{path}: expected a top-level 'images' list")
        for raw in doc["images"]:
            if not isinstance(raw, dict) or not raw.get("name") or not isinstance(raw.get("match"), list):
                raise ImageTableError(f"{path}: each entry needs 'name' and a 'match' list: {raw!r}")
            unknown = set(raw) - (set(ImageEntry.__dataclass_fields__) - {"source"})
            if unknown:
                raise ImageTableError(f"{path}: entry {raw['name']}: unknown keys {sorted(unknown)}")
            entries.append(ImageEntry(source=str(path), **raw))
    return entries


def lookup(table: list[ImageEntry], image: str) -> ImageEntry | None:
    repo = repository(image)
    for entry in table:
        if any(fnmatch.fnmatchcase(repo, pattern) for pattern in entry.match):
            return entry
    return None


def expand(value: str, pod_dir: Path) -> str:
    return value.format(python=sys.executable, images_dir=IMAGES_DIR, repo=paths.REPO_ROOT,
                        state_dir=paths.state_dir(), pod_dir=pod_dir)


def container_argv(entry: ImageEntry, command: list | None, args: list | None, pod_dir: Path) -> list:
    """Runtime semantics: command replaces ENTRYPOINT, args replace CMD (CMD dropped if only command given)."""
    if command:
        return list(command) + list(args or [])
    entrypoint = [expand(v, pod_dir) for v in entry.entrypoint]
    return entrypoint + list(args if args else [expand(v, pod_dir) for v in entry.cmd])
