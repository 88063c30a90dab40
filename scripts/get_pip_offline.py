"""Offline stand-in for the pip bootstrap script (get-pip.py) that ansible-test downloads.

ansible-test sanity builds virtual environments and bootstraps pip in them with a script it fetches
from a host these machines cannot reach; it uses a cached copy when one exists. This stand-in does
the same job: pip from the interpreter's own ``ensurepip``, then the packages ansible-test asked for
(for example ``pip==24.2``) from the package index. get-pip's own flags are dropped.
"""
import subprocess
import sys

GET_PIP_ONLY_FLAGS = {"--no-setuptools", "--no-wheel"}

args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_FLAGS]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
if not any(not arg.startswith("-") for arg in args):
    args.append("pip==24.2")
subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args])
