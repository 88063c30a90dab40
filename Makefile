# Entry points: `make demo` (the whole lab, locally) and `make test` (everything CI runs).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
VPY := $(CURDIR)/$(VENV)/bin/python
VBIN := $(CURDIR)/$(VENV)/bin
# A real copy for ansible-test / ansible-lint / the build; a link for live imports in unit tests.
COLL_ROOT := $(CURDIR)/.build/collections
COLL_DIR := $(COLL_ROOT)/ansible_collections/meshlab/mtls
PYPATH := $(CURDIR)/.build/pypath
LAB_ENV := PYTHONPATH=$(CURDIR)/lab
export PATH := $(VBIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(PYPATH)
export K8S_AUTH_KUBECONFIG := $(CURDIR)/.lab/kubeconfig
PLAYBOOK := $(VBIN)/ansible-playbook -e @$(CURDIR)/.lab/ansible-vars.yml

.PHONY: help deps venv pypath collection lint ruff yamllint ansible-lint sanity unit build-check \
	lab-deps lab-build lab-up lab-down lab-test molecule test demo tour bench clean

help:
	@echo "make demo      - bring up the local lab, install the mesh lab with the collection, run all three modes"
	@echo "make test      - everything CI runs (lint, sanity, unit, lab tests, molecule, build)"
	@echo "make lab-up    - start the local lab (root)      make lab-down - remove it"

# ---------------------------------------------------------------- set-up
deps:
	bash scripts/install-test-deps.sh

$(VENV)/.installed: requirements-dev.txt requirements.txt lab/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -r requirements.txt -r lab/requirements.txt
	touch $@

venv: $(VENV)/.installed

pypath:
	@mkdir -p $(PYPATH)/ansible_collections/meshlab
	@ln -sfn $(CURDIR) $(PYPATH)/ansible_collections/meshlab/mtls

# The collection's tracked (and new, not ignored) files under ansible_collections/meshlab/mtls, without
# the test bed (lab/, bench/), which is not part of the collection; kubernetes.core beside it, so that
# ansible-test finds the dependency the way an installed collection would.
collection: venv
	@rm -rf $(COLL_ROOT) && mkdir -p $(COLL_DIR) $(COLL_ROOT)/ansible_collections/kubernetes
	@git ls-files -co --exclude-standard -z | grep -zv -e '^lab/' -e '^bench/' | rsync -a --from0 --files-from=- ./ $(COLL_DIR)/
	@kcore=$$($(VPY) -c 'import ansible_collections.kubernetes.core as k; print(list(k.__path__)[0])') && \
		rsync -a "$$kcore"/ $(COLL_ROOT)/ansible_collections/kubernetes/core/
	@cd $(COLL_DIR) && git init -q && git add -A

# ---------------------------------------------------------------- static checks
lint: ruff yamllint ansible-lint

ruff: venv
	$(VBIN)/ruff check .

yamllint: venv
	$(VBIN)/yamllint -s .

ansible-lint: venv collection
	cd $(COLL_DIR) && ANSIBLE_COLLECTIONS_PATH=$(COLL_ROOT) $(VBIN)/ansible-lint --offline

sanity: venv collection
	bash scripts/ansible-test-bootstrap.sh
	cd $(COLL_DIR) && ANSIBLE_COLLECTIONS_PATH=$(COLL_ROOT) $(VBIN)/ansible-test sanity --python 3.11 --color no

# ---------------------------------------------------------------- tests
unit: venv deps pypath
	PYTHONPATH=$(PYPATH) $(VPY) -m pytest -q -p no:cacheprovider tests/unit tests/schema

build-check: venv collection
	bash scripts/build-check.sh $(COLL_DIR)

lab-deps:
	bash lab/scripts/install-deps.sh

lab-build: lab-deps
	bash lab/scripts/build-kube.sh

lab-up: venv lab-build
	$(LAB_ENV) $(VPY) -m meshlab_lab up

lab-down: venv
	$(LAB_ENV) $(VPY) -m meshlab_lab down

lab-test: venv lab-build pypath
	$(LAB_ENV):$(PYPATH) $(VPY) -m pytest -q -p no:cacheprovider lab/tests bench/test_bench.py

molecule: venv lab-deps pypath
	cd $(CURDIR) && $(VBIN)/molecule test -s default

test: deps venv lint unit sanity build-check lab-test molecule

# ---------------------------------------------------------------- the demo
demo: venv lab-up pypath
	$(PLAYBOOK) playbooks/install.yml
	$(PLAYBOOK) playbooks/tour.yml

# Numbers, not pass/fail: lab start, install and re-run, each mode, and the article's way (bench/README.md).
bench: venv pypath
	$(LAB_ENV) $(VPY) bench/run.py $(BENCH_ARGS)

tour: venv pypath
	$(PLAYBOOK) playbooks/tour.yml

clean:
	rm -rf .build reports
