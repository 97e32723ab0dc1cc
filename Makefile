# AstraBot Nexus — every entry point a developer or operator needs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
export PYTHONPATH := $(CURDIR)/layers/common/python:$(CURDIR)

.PHONY: test lint typecheck unit dev demo build deploy bench register clean

$(VENV)/.installed: requirements-dev.txt constraints.txt layers/common/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	touch $@

venv: $(VENV)/.installed

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

dev: $(VENV)/.installed
	$(PY) -m tools.devstack $(ARGS)

demo: $(VENV)/.installed
	$(PY) -m tools.demo $(ARGS)

# SAM CLI lives in its own virtualenv (its pins clash with ours); tools/sam.sh runs it with Python 3.13.
SAMVENV ?= .venv-sam
ENV ?= default

$(SAMVENV)/.installed: tools/sam.sh constraints-sam.txt
	SAMVENV=$(abspath $(SAMVENV)) tools/sam.sh --install

build: $(SAMVENV)/.installed
	SAMVENV=$(abspath $(SAMVENV)) tools/sam.sh validate --lint --config-env $(ENV)
	SAMVENV=$(abspath $(SAMVENV)) tools/sam.sh build --config-env $(ENV)

deploy: build
	SAMVENV=$(abspath $(SAMVENV)) tools/sam.sh deploy --config-env $(ENV)

bench: $(VENV)/.installed
	$(PY) -m benchmarks.run

register: $(VENV)/.installed
	$(PY) -m tools.register_commands $(ARGS)

clean:
	rm -rf $(VENV) $(SAMVENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
