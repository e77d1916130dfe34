# The two commands that matter: `make run` (local stack) and `make test` (everything CI runs).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov
export PYTHONPATH := $(CURDIR)

.PHONY: run test lint format bench deps clean

# Install what is missing; re-run pip/npm only when their inputs change.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

deps: $(VENV)/.installed node_modules/.installed $(CHECKOV_VENV)/.installed

run: $(VENV)/.installed node_modules/.installed
	$(PY) -m tools.devstack

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: $(VENV)/.installed
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

test: deps
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	@if command -v terraform >/dev/null; then \
		echo "terraform fmt -check -recursive infra"; \
		TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -recursive -diff infra; \
	else echo "terraform not found: terraform fmt -check skipped"; fi
	$(PY) -m pytest -n 2 --dist loadgroup

# Adds a run to bench/results.json and bench/RESULTS.md; options through BENCH, e.g.
# `make bench BENCH='--label "after (abc1234)"'` or `make bench BENCH=--quick` (bench/README.md).
bench: $(VENV)/.installed node_modules/.installed
	$(PY) -m bench $(BENCH)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .local .pytest_cache .ruff_cache .mypy_cache
