# housing-inference image. Artifacts are mounted, not baked in: build once, serve any model.
#
#   inf2 (default): AWS's Neuron PyTorch inference image already holds torch 2.9, torch-neuronx,
#   neuronx-cc, the Neuron runtime and tools (neuron-ls, neuron-monitor), which the service
#   uses as they are:
#     docker build -t housing-inference:neuron .
#   CPU variant (any machine): a plain Python base, torch's CPU wheel installed here:
#     docker build -t housing-inference:cpu --build-arg VARIANT=cpu \
#       --build-arg BASE_IMAGE=python:3.11-slim-bookworm .
#   Neuron SDK releases that ship no DLC (2.32 and later): deploy/Dockerfile.neuron-sdk.
#
# Run: docker run -p 8080:8080 -v $PWD/artifacts:/opt/ml/model:ro [--device=/dev/neuron0] IMAGE
# The command is `serve` (the SageMaker contract: port 8080, model files from /opt/ml/model).
#
# Users. The image runs as uid 10001 unless told otherwise, and works as any uid, root included:
# SageMaker's hosting guide asks for containers that run as root, Kubernetes runs it as 10001
# (runAsNonRoot), and a platform may pick another uid. So the server only reads the image
# (/srv/housing and site-packages are readable by all, writable by root only), reads the model
# from /opt/ml/model (mounted read-only), and writes only under /tmp (the worker processes'
# metrics) and to HOUSING_CAPTURE_DIR when set (a volume writable by the user it runs as); HOME
# is /tmp, so nothing depends on a home folder of uid 10001. `make container-test` runs the
# image as 10001, as root (--user 0) and as an unlisted uid with a read-only root filesystem.
#
# The last PyTorch inference DLC AWS published (Neuron SDK 2.31.1: torch 2.9, the last
# PyTorch/XLA-based torch-neuronx; Python 3.12; Ubuntu 24.04). Tags follow
# <torch>-neuronx-py<XY>-sdk<version>-ubuntu<version>; the list is in the README of
# github.com/aws-neuron/deep-learning-containers and at gallery.ecr.aws/neuron/pytorch-inference-neuronx.
# Not pulled here (no registry access): `make neuron-check` on an inf2 is what proves it.
ARG BASE_IMAGE=public.ecr.aws/neuron/pytorch-inference-neuronx:2.9.0-neuronx-py312-sdk2.31.1-ubuntu24.04
# checkov:skip=CKV_DOCKER_7: FROM names the BASE_IMAGE argument, whose default above carries a version tag (tests/unit/test_deploy_images.py checks it); checkov does not expand ARG.
FROM ${BASE_IMAGE}

# neuron: keep the base image's torch (a torch from PyPI would replace the Neuron build). The
# DLC's own entrypoint starts TorchServe; ENTRYPOINT below replaces it with this service.
# cpu: install torch's CPU wheel (an unpinned torch from PyPI is a multi-GB CUDA build).
ARG VARIANT=neuron
ARG TORCH_SPEC=torch==2.13.0
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    HOUSING_HOST=0.0.0.0

WORKDIR /srv/housing
COPY pyproject.toml README.md ./
COPY modelspec ./modelspec
COPY app ./app
COPY offline ./offline
COPY compile ./compile
COPY training ./training
# hadolint ignore=DL3013
RUN set -eux; \
    case "$VARIANT" in \
      cpu) python3 -m pip install "$TORCH_SPEC" ;; \
      neuron) python3 -c "import torch" ;; \
      *) echo "VARIANT must be cpu or neuron" >&2; exit 1 ;; \
    esac; \
    python3 -m pip install . ; \
    python3 -c "import app.http.app"; \
    groupadd --system --gid 10001 housing; \
    useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin housing; \
    chmod -R a+rX,go-w /srv/housing; \
    mkdir -p /opt/ml/model

# Any user may run the image (see "Users" above): 10001 by default.
USER 10001:10001
# Set after the build, so nothing the build writes lands in the runtime's /tmp.
ENV HOME=/tmp
# HTTP (REST, SageMaker, Open Inference Protocol), then the Open Inference Protocol over gRPC.
EXPOSE 8080 8081
# Readiness, not liveness: healthy only once the model is loaded, warmed up and answering, on
# both ports (/ping, and gRPC's health service unless HOUSING_GRPC_PORT=0).
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python3", "-m", "app.probe"]
# Exec form: SIGTERM reaches the server, which turns readiness 503, drains and exits 0.
ENTRYPOINT ["python3", "-m", "app"]
CMD ["serve"]
