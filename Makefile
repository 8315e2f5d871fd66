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
KSERVE_VERSION ?= 0.21.0
# torch-neuronx's torch is 2.9 and AWS's last Neuron DLC runs Python 3.12, so the XLA venv uses
# 3.12 where this machine has one. Each candidate is run, not just found: pyenv's shim answers
# `command -v python3.12` even when that version is not selected.
XLA_PYTHON ?= $(shell for p in python3.12 $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12; \
	do "$$p" -c '' 2>/dev/null && { echo "$$p"; exit 0; }; done; echo $(PYTHON))

HOUSING_ARTIFACTS ?= artifacts
export HOUSING_ARTIFACTS
PYTEST_ARGS ?=

PY := $(VENV)/bin/python
XLA_PY := $(XLA_VENV)/bin/python
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: help install run train compile serve test test-busy lint format test-xla bench rollout \
	container-test clean loadcheck fuzz overload soak reliability neuron-check proto docs

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_QUIET) --upgrade pip
	$(PY) -m pip install $(PIP_QUIET) torch==$(TORCH_VERSION)
	$(PY) -m pip install $(PIP_QUIET) -e '.[train,dev,scale]'
	# KServe's clients for the conformance suite, without its model server's pins (pyproject.toml)
	$(PY) -m pip install $(PIP_QUIET) --no-deps kserve==$(KSERVE_VERSION)
	# checkov (tests/unit/test_deploy_checkov.py) in a virtualenv of its own inside $(VENV): it
	# pins networkx<2.7, packaging<24 and tabulate<0.10 (and boto3's python-dateutil<3), all
	# below what .venv holds
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/python -m pip install $(PIP_QUIET) checkov==3.3.30
	touch $@

install: $(VENV)/.installed ## create .venv with torch $(TORCH_VERSION) (CPU) and the project

$(HOUSING_ARTIFACTS)/model.pt: | $(VENV)/.installed
	$(PY) -m training

$(HOUSING_ARTIFACTS)/model_neuron.pt: $(HOUSING_ARTIFACTS)/model.pt
	$(PY) -m compile

train: $(VENV)/.installed ## train the model (HOUSING_DATA: the embedded copy unless set to a hub id or a CSV/Parquet file)
	$(PY) -m training

compile: $(VENV)/.installed ## compile artifacts/model.pt (neuron where available, else cpu)
	$(PY) -m compile

run: $(HOUSING_ARTIFACTS)/model_neuron.pt ## install, train and compile if needed, serve on :8080
	$(PY) -m app

serve: $(VENV)/.installed ## serve existing artifacts
	$(PY) -m app

# The gRPC messages, from the Open Inference Protocol's .proto, in a descriptor pool of their own
# (tritonclient.grpc registers the same names in the default one; both must import in a process).
proto: $(VENV)/.installed ## regenerate app/grpc/open_inference_grpc_pb2.py(i) from the .proto
	$(PY) -m grpc_tools.protoc -I app/grpc --python_out=app/grpc --pyi_out=app/grpc \
		app/grpc/open_inference_grpc.proto
	sed -i 's/_descriptor_pool.Default()/_descriptor_pool.DescriptorPool()/' \
		app/grpc/open_inference_grpc_pb2.py

docs: $(VENV)/.installed ## regenerate the generated docs pages (docs/configuration.md)
	$(PY) -m app.process.settings_page

lint: $(VENV)/.installed ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.installed ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# pytest-xdist: one worker per core, whole files to a worker (a module's server stays one), in
# tests/conftest.py's order (not xdist's, by test count); the session's builds are made once for
# all workers (tests/support/project.py). PYTEST_ARGS="-n 0" runs the suite in one process.
test: lint ## lint, then the CPU test suite (unit, integration, e2e)
	$(PY) -m pytest -n auto --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# CI machines are sometimes busy: the suite must hold with every core taken by another load.
test-busy: $(VENV)/.installed ## make test with every core busy (stress-ng --cpu N), as on a loaded CI machine
	command -v stress-ng >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq stress-ng; }
	stress-ng --cpu $$(nproc) --quiet & stress=$$!; \
		$(MAKE) test; status=$$?; kill $$stress; wait $$stress; exit $$status

$(XLA_VENV)/.installed: pyproject.toml
	$(XLA_PYTHON) -m venv $(XLA_VENV)
	$(XLA_PY) -m pip install $(PIP_QUIET) --upgrade pip
	$(XLA_PY) -m pip install $(PIP_QUIET) torch==$(XLA_TORCH_VERSION) torch-xla==$(XLA_VERSION)
	$(XLA_PY) -m pip install $(PIP_QUIET) -e '.[train,dev]'
	touch $@

# The XLA suite's model is trained by .venv's Python (torch $(TORCH_VERSION)) and compiled and served
# under torch $(XLA_TORCH_VERSION): the torch versions of a user's training and of torch-neuronx.
test-xla: $(XLA_VENV)/.installed $(VENV)/.installed ## the XLA suite on torch-xla's CPU device, in .venv-xla (Python 3.12, torch 2.9)
	HOUSING_TRAIN_PYTHON=$(abspath $(PY)) PJRT_DEVICE=CPU \
		$(XLA_PY) -m pytest tests/xla $(PYTEST_ARGS)

bench: $(HOUSING_ARTIFACTS)/model_neuron.pt ## load benchmark vs a bare-ASGI reference, gRPC and tracing, then the c1-c256 curve (PNG), 3 interleaved rounds (~17 min; xla needs make test-xla first)
	command -v wrk >/dev/null || apt-get install -y -qq wrk
	$(PY) -m benchmarks.run $(BENCH_ARGS)
	$(PY) -m benchmarks.curve $(filter --quick,$(BENCH_ARGS)) $(CURVE_ARGS)

# Reliability scripts: each starts its own server on the artifacts, prints figures, exits 1 on
# a failed check. Long runs, so not part of `make test` (which runs small versions).

loadcheck: $(HOUSING_ARTIFACTS)/model_neuron.pt ## 20,000 mixed requests at c64, each checked against the offline model (~25 s)
	$(PY) -m reliability.loadcheck $(RELIABILITY_ARGS)

fuzz: $(HOUSING_ARTIFACTS)/model_neuron.pt ## schemathesis: thousands of generated requests from the OpenAPI schema (~40 s)
	$(PY) -m reliability.fuzz $(RELIABILITY_ARGS)

overload: $(HOUSING_ARTIFACTS)/model_neuron.pt ## c512 for 20 s: sheds with fast 503s, stays ready, recovers (~1 min)
	$(PY) -m reliability.overload $(RELIABILITY_ARGS)

soak: $(HOUSING_ARTIFACTS)/model_neuron.pt ## 200,000 requests: RSS flat, no fd growth, no error (~2 min)
	$(PY) -m reliability.soak $(RELIABILITY_ARGS)

rollout: $(HOUSING_ARTIFACTS)/model_neuron.pt ## five model reloads under c32 mixed load, then two bad artifacts: no failed or mixed answer (~30 s; the first time it also trains a second model)
	$(PY) -m reliability.rollout $(RELIABILITY_ARGS)

reliability: loadcheck fuzz overload soak ## all four, one after the other

# On an inf2 instance: the Python that has the Neuron SDK's torch-neuronx -- an activated venv or
# the DLC's python3, else the DLAMI's PyTorch 2.9 virtualenv. The project installs beside it
# (its torch is kept: torch>=2.1 is already satisfied).
NEURON_PYTHON ?= $(shell for p in python3 /opt/aws_neuronx_venv_pytorch_2_9/bin/python \
	/opt/aws_neuronx_venv_pytorch_2_9*/bin/python; do \
	"$$p" -c 'import torch_neuronx' 2>/dev/null && { echo "$$p"; exit 0; }; done; echo python3)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

neuron-check: ## on an inf2: devices, compile, parity and timings per bucket, server under wrk (~5 min)
	command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }
	$(NEURON_PYTHON) -m pip install $(PIP_QUIET) -e '.[train]'
	$(NEURON_PYTHON) -m neuron_check $(NEURON_CHECK_ARGS)

container-test: $(HOUSING_ARTIFACTS)/model_neuron.pt ## build the CPU image with podman; run it as uid 10001, as root and as another uid with a read-only root (~3 min, 15 s after)
	bash deploy/container-test.sh

clean: ## remove virtualenvs, caches and artifacts
	rm -rf $(VENV) $(XLA_VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info $(HOUSING_ARTIFACTS) \
		neuron-check
