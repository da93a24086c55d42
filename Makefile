# Sluice — developer entry points. `make demo` runs the pipeline locally; `make test` runs every test tier that
# can run on this machine. Both set up what they need (tools, virtualenv, jars) and are safe to re-run.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: help tools venv jars kube-bins demo test test-unit test-integration test-k8s lint format clean

help:
	@echo "make demo     run Kafka + generator + the three Spark jobs locally (~2 min), then a summary"
	@echo "make test     lint, then unit, integration and demo tests (real Kafka broker, real Spark)"
	@echo "make test-k8s the operator against a real kube-apiserver + etcd + controller-manager"
	@echo "make lint     ruff (lint + format check), import-linter, shellcheck"
	@echo "make format   apply ruff formatting"
	@echo "make clean    remove the virtualenv and local run outputs (the jar cache in ~/.cache/sluice stays)"

tools:
	@bash scripts/ensure-tools.sh

$(STAMP): pyproject.toml | tools
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==25.3
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

venv: $(STAMP)

jars: venv
	@$(BIN)/python -m sluice_local fetch all >/dev/null

# kube-apiserver, kube-controller-manager, kubectl (v1.34) and etcd (v3.6) built from pinned Go modules, cached
# per machine (~4 min the first time, instant after).
kube-bins:
	@bash scripts/build-kube.sh >/dev/null

demo: jars
	$(BIN)/python -m sluice_local demo $(DEMO_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	shellcheck scripts/*.sh .ci/run

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint jars kube-bins
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: jars
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

test-integration: jars
	$(BIN)/pytest -m "integration or demo" $(PYTEST_ARGS)

test-k8s: jars kube-bins
	$(BIN)/pytest -m k8s $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .sluice *.egg-info
