# Northstar's front door: `make help` lists the verbs.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
PYTEST := $(UV) run --frozen pytest
SERVICES := ingest metrics experiments alerts reports
IMAGE_TAG ?= dev


.PHONY: bench-queries bench-queries-quick bench-experiments bench-alerts
.PHONY: report-sample
.PHONY: help setup run test test-unit test-integration test-e2e faults lint fmt protos protos-check bench bench-quick dataset images k8s-validate clean

help: ## List the verbs
	@grep -hE '^[a-z][a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

setup: ## Install uv (if missing), the workspace, the lint tools and Chromium (if missing)
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --all-packages
	@bash scripts/ensure_chromium.sh
	@if command -v npm >/dev/null 2>&1; then npm install --no-audit --no-fund --loglevel=error; else echo "npm not found: buf lint will be skipped"; fi

run: setup ## Bring up the whole suite locally (NATS, PostgreSQL, every service); Ctrl-C stops it
	$(UV) run --frozen northstar-dev up

test: setup lint protos-check k8s-validate ## Run every test (unit, integration, end to end, quick faults, deploy checks)
	$(PYTEST) -q

test-unit: setup ## Unit tests only (pure logic)
	$(PYTEST) -q libs/runtime/tests/unit services/*/tests/unit

test-integration: setup ## Integration tests (one service against real NATS and PostgreSQL)
	$(PYTEST) -q libs/*/tests/integration services/*/tests/integration libs/harness/tests

test-e2e: setup ## End-to-end tests across services
	$(PYTEST) -q tests/e2e

faults: setup ## Both fault tiers: the quick one of `make test` and the long one under load (~10 min)
	$(PYTEST) -q -m "faults or faults_long"

lint: setup ## ruff, mypy (strict outside tests) and buf lint
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy libs/runtime/src libs/harness/src libs/client/src services/ingest/src services/metrics/src services/experiments/src services/alerts/src services/reports/src
	@if [ -x node_modules/.bin/buf ]; then node_modules/.bin/buf lint && echo "buf lint: clean"; else echo "buf not installed: skipped"; fi

fmt: setup ## Format the code
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

protos: setup ## Regenerate code and .pyi stubs from protos/
	$(UV) run --frozen python scripts/gen_protos.py

protos-check: setup ## Fail when regenerating the protos would change the tree
	$(UV) run --frozen python scripts/gen_protos.py --check

dataset: setup ## Write the seeded benchmark data set (bench/results/dataset)
	$(UV) run --frozen python -m bench.dataset

bench: setup ## The whole suite's benchmarks, written into BENCHMARKS.md (about 2 hours)
	$(UV) run --frozen python -m bench.run
	$(UV) run --frozen python -m bench.experiments
	$(UV) run --frozen python -m bench.alerts
	$(UV) run --frozen python -m bench.queries --quick
	$(UV) run --frozen python -m bench.queries

bench-experiments: setup ## AssignBatch throughput and GetResults latency on 1M exposed users (~5 min)
	$(UV) run --frozen python -m bench.experiments

bench-alerts: setup ## Evaluation lag of 10,000 rules across 100 tenants every minute against metrics (~8 min)
	$(UV) run --frozen python -m bench.alerts

bench-quick: setup ## A short benchmark smoke run (under 5 minutes)
	$(UV) run --frozen python -m bench.run --quick

bench-queries: setup ## Query latency on 10M events vs DuckDB and raw PostgreSQL, and the rebuild of each service (~75 min)
	$(UV) run --frozen python -m bench.queries

bench-queries-quick: setup ## The same on 1M events (about 10 minutes)
	$(UV) run --frozen python -m bench.queries --quick

images: ## Build the service images (needs a Docker engine; CI without one runs k8s-validate)
	@command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 || { echo "images: no Docker engine here; 'make k8s-validate' lints the Dockerfiles and installs each image's dependencies instead"; exit 1; }
	@for svc in $(SERVICES); do \
		echo "docker build -f deploy/docker/$$svc.Dockerfile -t northstar-$$svc:$(IMAGE_TAG) ."; \
		DOCKER_BUILDKIT=1 docker build -f deploy/docker/$$svc.Dockerfile -t northstar-$$svc:$(IMAGE_TAG) . || exit 1; \
	done

report-sample: setup ## Render the sample report and take docs/report-sample.png (the README's picture)
	$(UV) run --frozen python scripts/sample_report.py

k8s-validate: setup ## Render every overlay, validate schemas and policy, dashboards, rules, Dockerfiles
	$(UV) run --frozen python scripts/k8s_validate.py

clean: ## Remove local state (the dev stack's data, caches)
	rm -rf .northstar .pytest_cache .mypy_cache .ruff_cache
