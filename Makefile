# Sluice — developer entry points. `make demo` runs the pipeline locally; `make test` runs every test tier that
# can run on this machine. Both set up what they need (tools, virtualenv, jars) and are safe to re-run.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_ARGS ?=
BENCH_ARGS ?=
PYTEST_ARGS ?=

.PHONY: help tools venv jars kube-bins deploy-tools images kind-node crd demo bench test test-unit test-integration test-bench test-k8s \
	test-chaos chaos test-charts test-images test-e2e kind-up kind-demo kind-down lint format clean

help:
	@echo "make demo     run Kafka + generator + the three Spark jobs locally (~2 min), then a summary"
	@echo "make bench    the benchmark: Sluice against this machine's limits, as ratios (BENCH_ARGS=--quick: ~9 min)"
	@echo "make test     lint, then every tier below, plus unit, integration, demo and bench --quick (real Kafka, Spark),"
	@echo "             in pytest processes side by side, the unit tier beside the builds (scripts/pytest-lanes.sh)"
	@echo "make test-k8s the operator against a real kube-apiserver + etcd + controller-manager"
	@echo "make test-chaos  jobs, the broker and the operator killed or restarted mid-work; nothing lost (in make test)"
	@echo "make chaos    the chaos tier as a soak: 20 kills of each job and of the operator (5 and 6 in make test)"
	@echo "make test-charts  render the Helm charts with helm; the API server validates them"
	@echo "make test-images  build the container images (Docker engine started if needed) and run them"
	@echo "make kind-up  kind cluster + images + helm install (Kafka, Spark, operator); make kind-demo; make kind-down"
	@echo "make test-e2e a pipeline end to end on kind, on the node image built here (no registry needed)"
	@echo "make crd      regenerate the CRD (k8s/crd/ and the operator chart's crds/) from the spec"
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

# helm and kind, built from pinned Go modules (tools/helm, tools/kind) and cached per machine (~1 min the first time).
deploy-tools:
	@bash scripts/build-deploy-tools.sh >/dev/null

# sluice/spark-jobs and sluice/operator with the local Docker engine (installed and started if needed), on an offline
# Debian base built here; rebuilt only when their inputs change (~2 min the first time, ~1 s after).
images: jars
	@bash scripts/build-images.sh >/dev/null

# The offline kind node image sluice/kind-node:v1.34.4 with every image the cluster runs, built here
# (scripts/build-kind-node.sh, scripts/build-node-components.sh): ~5 min the first time, ~5 s after.
kind-node:
	@bash scripts/build-kind-node.sh >/dev/null

CRD_FILE := streamingpipelines.streaming.sluice.dev.yaml
crd: venv
	$(BIN)/python -m sluice_operator.crd > k8s/crd/$(CRD_FILE).tmp && mv k8s/crd/$(CRD_FILE).tmp k8s/crd/$(CRD_FILE)
	cp k8s/crd/$(CRD_FILE) charts/sluice-operator/crds/$(CRD_FILE)

demo: jars
	$(BIN)/python -m sluice_local demo $(DEMO_ARGS)

# The benchmark: 55-80 min on 2 cores; writes bench/results/<UTC time>/report.md (python -m sluice_local bench --help).
bench: jars
	$(BIN)/python -m sluice_local bench $(BENCH_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	shellcheck -x scripts/*.sh scripts/lib/*.sh scripts/kind-docker/docker images/kafka/bin/*.sh \
	  images/kind-node/rootfs/usr/local/bin/* images/node-components/kube-proxy/iptables-wrapper \
	  images/spark-jobs/bin/sluice-entrypoint .ci/run
	@# The kind node's CNI script, embedded in its manifest.
	script=$$($(BIN)/python -c 'import sys, yaml; print(next(yaml.safe_load_all(sys.stdin))["data"]["netd.sh"])' \
	  < images/kind-node/rootfs/kind/manifests/default-cni.yaml) && printf '%s\n' "$$script" | shellcheck -s sh -

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Every tier, in pytest processes side by side (scripts/pytest-lanes.sh): the unit tier beside the builds, then
# charts, k8s, chaos and bench beside integration, images and (once chaos has ended) e2e.
test: lint jars
	bash scripts/pytest-lanes.sh --setup "$(MAKE) --no-print-directory kube-bins deploy-tools images kind-node" \
	  $(BIN)/pytest $(PYTEST_ARGS)

test-unit: jars
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

test-integration: jars
	$(BIN)/pytest -m "integration or demo" $(PYTEST_ARGS)

test-bench: jars
	$(BIN)/pytest -m bench $(PYTEST_ARGS)

test-k8s: jars kube-bins
	$(BIN)/pytest -m k8s $(PYTEST_ARGS)

test-chaos: jars kube-bins
	$(BIN)/pytest -m chaos $(PYTEST_ARGS)

# The chaos tier as a soak: more kills (the CI run of `make test` kills each job 5 times and the operator 6 times).
chaos: jars kube-bins
	SLUICE_CHAOS_KILLS=20 SLUICE_CHAOS_OPERATOR_KILLS=20 $(BIN)/pytest -m chaos $(PYTEST_ARGS)

test-charts: jars kube-bins deploy-tools
	$(BIN)/pytest -m charts $(PYTEST_ARGS)

test-images: jars kube-bins images
	$(BIN)/pytest -m images $(PYTEST_ARGS)

test-e2e: jars kube-bins deploy-tools images kind-node
	$(BIN)/pytest -m e2e $(PYTEST_ARGS)

# Sluice on a local kind cluster (scripts/kind.sh; needs a Docker engine and a kind node image).
kind-up: venv
	PYTHON=$(abspath $(BIN))/python bash scripts/kind.sh up

kind-demo: venv
	PYTHON=$(abspath $(BIN))/python bash scripts/kind.sh demo

kind-down:
	bash scripts/kind.sh down

clean:
	rm -rf $(VENV) .sluice *.egg-info
