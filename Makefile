# `make help` lists the targets. Everything installs into .venv from this repository's own files.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
IMAGE  ?= runner-sandbox:latest
PG_IMAGE ?= runner-postgres:15
EGRESS_IMAGE ?= runner-egress:latest
# An egress image older than this version (the runner's egress.IMAGE_VERSION) is rebuilt by make images.
EGRESS_VERSION := $(shell sed -n 's/.*io.runner.egress-version="\([^"]*\)".*/\1/p' docker/egress/Dockerfile)
PYTEST_ARGS ?=

# The testcontainers reaper image cannot be pulled where there is no registry; tests clean up themselves.
export TESTCONTAINERS_RYUK_DISABLED ?= true

.DEFAULT_GOAL := help
.PHONY: help install host-deps gvisor image images wheels compose-prep service-image run test test-kit test-unit test-downstream lint clean bench bench-quick bench-soak

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@echo "installing runner and its test tools into $(VENV) (log: $(VENV)/install.log)"
	@$(BIN)/pip install -e '.[test,testing]' > $(VENV)/install.log 2>&1 || { tail -n 40 $(VENV)/install.log; exit 1; }
	@touch $@

install: $(STAMP) ## create .venv and install runner with its test tools

host-deps: ## install mmdebstrap (for offline images), a compose tool and chromium (browser tests), if root and missing
	@if ! command -v mmdebstrap >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing mmdebstrap (to bootstrap a Debian base image offline)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null) \
			|| echo "could not install mmdebstrap; images need a registry then"; \
	fi
	@if ! command -v docker-compose >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1 \
			&& [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing docker-compose (the compose test needs a compose tool)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null) \
			|| echo "could not install docker-compose; the compose test will fail and say so"; \
	fi
	@if { ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; } \
			&& [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver (the dashboard's browser tests drive them)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
			|| echo "could not install chromium; the browser tests will fail and say so"; \
	fi

gvisor: ## install gVisor (runsc) from Debian and register it with Docker (root; optional)
	./scripts/install-gvisor.sh

image: install host-deps ## build the job image (python:3.12-slim, or a local Debian base offline)
	$(BIN)/runner image build --tag $(IMAGE)

images: install host-deps ## build the job, egress proxy and test Postgres images if missing
	$(BIN)/runner image build --tag $(IMAGE) --if-missing
	@[ "$$(docker image inspect -f '{{index .Config.Labels "io.runner.egress-version"}}' $(EGRESS_IMAGE) 2>/dev/null)" \
		= "$(EGRESS_VERSION)" ] || RUNNER_EGRESS_IMAGE=$(EGRESS_IMAGE) $(BIN)/runner image build --egress
	@docker image inspect $(PG_IMAGE) >/dev/null 2>&1 || $(BIN)/runner image build --postgres

WHEELS := docker/runner/wheels

wheels: install ## fill docker/runner/wheels (the runner image then builds without reaching PyPI)
	$(BIN)/runner image wheels

compose-prep: images wheels ## what compose.offline.yaml needs: local bases, images and the wheelhouse

SERVICE_IMAGE ?= runner-service:latest

service-image: compose-prep ## build the runner's own image from this checkout (what compose builds; the testing kit starts it)
	docker build -q --network host -t $(SERVICE_IMAGE) --build-arg BASE=runner-debian:bookworm .

run: install host-deps ## start the service on embedded defaults, its API and dashboard on 127.0.0.1:8080 (Ctrl-C stops it)
	RUNNER_HTTP=$${RUNNER_HTTP-127.0.0.1:8080} $(BIN)/runner up

test: images wheels service-image ## run the whole suite: unit, integration, security, browser and testing-kit tests, then the downstream example
	$(BIN)/pytest $(PYTEST_ARGS)
	$(MAKE) test-downstream

test-kit: images wheels service-image ## only the testing kit's own tests (real RunnerContainers), then the downstream example
	$(BIN)/pytest tests/kit $(PYTEST_ARGS)
	$(MAKE) test-downstream

test-downstream: install ## the runner's wheel with [testing] in a fresh venv, running examples/downstream's tests
	VENV_PY=$(BIN)/python ./scripts/test-downstream.sh

test-unit: install ## only the fast tests (no Docker, no database)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

# MYPY_ARGS narrows the type check, e.g. MYPY_ARGS="--follow-imports=silent runner/sandbox runner/doctor"
# (only those modules' errors); CI checks all of runner/.
MYPY_ARGS ?= runner

lint: install ## ruff (runner, tests, bench; complexity <= 10) and mypy --strict on runner/
	$(BIN)/ruff check runner tests bench
	$(BIN)/mypy $(MYPY_ARGS)

clean: ## remove the venv and local data (not the images)
	rm -rf $(VENV) data .pytest_cache
	find $(WHEELS) -name '*.whl' -delete

bench: images ## the full benchmark (slow); results appended to BENCHMARKS.md
	$(BIN)/python -m bench.run

bench-quick: images ## a reduced benchmark run (about two minutes); results appended to BENCHMARKS.md
	$(BIN)/python -m bench.run --quick

bench-soak: images ## an hour of jobs and messages under kill -9s, freezes and Postgres outages (not in CI)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)
