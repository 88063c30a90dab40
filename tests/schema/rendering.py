"""Render the roles' manifest templates the way Ansible does: the real ansible-core Templar, the role's
defaults and vars (themselves templates, resolved lazily), plus the loop variables a task would set."""
from pathlib import Path

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

REPO_ROOT = Path(__file__).resolve().parents[2]
ROLES_DIR = REPO_ROOT / "roles"


def _trusted(value):
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {key: _trusted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_trusted(item) for item in value]
    return value


def role_variables(role):
    """defaults/main.yml overlaid by vars/main.yml, as Ansible's precedence orders them."""
    merged = {}
    for name in ("defaults", "vars"):
        path = ROLES_DIR / role / name / "main.yml"
        if path.exists():
            merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def render(role, template, **task_vars):
    """One rendered manifest (a dict) of roles/<role>/templates/<template> with the role's variables."""
    variables = _trusted(role_variables(role))
    variables.update(_trusted(task_vars))
    text = (ROLES_DIR / role / "templates" / template).read_text()
    templar = Templar(loader=DataLoader(), variables=variables)
    rendered = templar.template(trust_as_template(text))
    docs = [doc for doc in yaml.safe_load_all(rendered) if doc is not None]
    if len(docs) != 1:
        raise AssertionError("%s/%s rendered %d documents, expected one" % (role, template, len(docs)))
    return docs[0]


def all_templates():
    """Every template shipped by the roles, as (role, file name)."""
    return sorted((path.parent.parent.name, path.name) for path in ROLES_DIR.glob("*/templates/*.yaml.j2"))
