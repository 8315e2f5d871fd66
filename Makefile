# housing-inference: every command a user or CI runs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
XLA_VENV ?= .venv-xla
# The CPU wheel of torch 2.13.0 installs in seconds; an unpinned torch pulls a multi-GB CUDA build.
TORCH_VERSION ?= 2.13.0
# torch-xla 2.9 needs torch 2.9 exactly, so the XLA device gets a virtualenv of its own.
XLA_TORCH_VERSION ?= 2.9.0
XLA_VERSION ?= 2.9.0

HOUSING_ARTIFACTS ?= artifacts
export HOUSING_ARTIFACTS
# Tests read the data set from here unless HOUSING_DATA says otherwise (never a copy in git).
TEST_DATA ?= $(abspath ../shared/data/california-housing/housing.csv)
PYTEST_ARGS ?=

PY := $(VENV)/bin/python
XLA_PY := $(XLA_VENV)/bin/python
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: help install run train compile serve test lint format test-xla bench container-test clean \
	loadcheck fuzz overload soak reliability

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_QUIET) --upgrade pip
	$(PY) -m pip install $(PIP_QUIET) torch==$(TORCH_VERSION)
	$(PY) -m pip install $(PIP_QUIET) -e '.[train,dev]'
	touch $@

install: $(VENV)/.installed ## create .venv with torch $(TORCH_VERSION) (CPU) and the project

$(HOUSING_ARTIFACTS)/model.pt: | $(VENV)/.installed
	$(PY) -m training

$(HOUSING_ARTIFACTS)/model_neuron.pt: $(HOUSING_ARTIFACTS)/model.pt
	$(PY) -m compile

train: $(VENV)/.installed ## train the model (HOUSING_DATA: hub id or local CSV/Parquet)
	$(PY) -m training

compile: $(VENV)/.installed ## compile artifacts/model.pt (neuron where available, else cpu)
	$(PY) -m compile

run: $(HOUSING_ARTIFACTS)/model_neuron.pt ## install, train and compile if needed, serve on :8080
	$(PY) -m app

serve: $(VENV)/.installed ## serve existing artifacts
	$(PY) -m app

lint: $(VENV)/.installed ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.installed ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint ## lint, then the CPU test suite (unit, integration, e2e)
	HOUSING_DATA=$${HOUSING_DATA:-$(TEST_DATA)} $(PY) -m pytest $(PYTEST_ARGS)

$(XLA_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(XLA_VENV)
	$(XLA_PY) -m pip install $(PIP_QUIET) --upgrade pip
	$(XLA_PY) -m pip install $(PIP_QUIET) torch==$(XLA_TORCH_VERSION) torch-xla==$(XLA_VERSION)
	$(XLA_PY) -m pip install $(PIP_QUIET) -e '.[train,dev]'
	touch $@

test-xla: $(XLA_VENV)/.installed ## the XLA suite on torch-xla's CPU device, in .venv-xla
	HOUSING_DATA=$${HOUSING_DATA:-$(TEST_DATA)} PJRT_DEVICE=CPU $(XLA_PY) -m pytest tests/xla $(PYTEST_ARGS)

bench: $(HOUSING_ARTIFACTS)/model_neuron.pt ## load benchmark vs a bare-ASGI reference (~5 min; xla needs make test-xla first)
	command -v wrk >/dev/null || apt-get install -y -qq wrk
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# Reliability scripts: each starts its own server on the artifacts, prints figures, exits 1 on
# a failed check. Long runs, so not part of `make test` (which runs small versions).
RELIABILITY_ENV = HOUSING_DATA=$${HOUSING_DATA:-$(TEST_DATA)}

loadcheck: $(HOUSING_ARTIFACTS)/model_neuron.pt ## 20,000 mixed requests at c64, each checked against the offline model (~20 s)
	$(RELIABILITY_ENV) $(PY) -m reliability.loadcheck $(RELIABILITY_ARGS)

fuzz: $(HOUSING_ARTIFACTS)/model_neuron.pt ## schemathesis: thousands of generated requests from the OpenAPI schema (~2 min)
	$(RELIABILITY_ENV) $(PY) -m reliability.fuzz $(RELIABILITY_ARGS)

overload: $(HOUSING_ARTIFACTS)/model_neuron.pt ## c512 for 20 s: sheds with fast 503s, stays ready, recovers (~1 min)
	$(RELIABILITY_ENV) $(PY) -m reliability.overload $(RELIABILITY_ARGS)

soak: $(HOUSING_ARTIFACTS)/model_neuron.pt ## 200,000 requests: RSS flat, no fd growth, no error (~2 min)
	$(RELIABILITY_ENV) $(PY) -m reliability.soak $(RELIABILITY_ARGS)

reliability: loadcheck fuzz overload soak ## all four, one after the other

container-test: $(HOUSING_ARTIFACTS)/model_neuron.pt ## build the CPU image with podman, run it, SIGTERM it (~3 min)
	bash deploy/container-test.sh

clean: ## remove virtualenvs, caches and artifacts
	rm -rf $(VENV) $(XLA_VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info $(HOUSING_ARTIFACTS)
