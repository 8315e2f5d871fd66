# housing-inference image. Artifacts are mounted, not baked in: build once, deploy any model.
#
#   CPU:  docker build -t housing-inference .
#   inf2: docker build -t housing-inference:neuron \
#           --build-arg BASE_IMAGE=<AWS Neuron PyTorch inference DLC> --build-arg INSTALL_TORCH=0 .
#
# The Neuron DLC already has torch, torch-neuronx and the Neuron runtime; INSTALL_TORCH=0 keeps
# them (a torch from PyPI would replace the Neuron build).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG INSTALL_TORCH=1
ARG TORCH_SPEC="torch==2.13.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOUSING_ARTIFACTS=/models \
    HOUSING_HOST=0.0.0.0 \
    HOUSING_PORT=8080

WORKDIR /srv/housing
COPY pyproject.toml README.md ./
COPY modelspec ./modelspec
COPY app ./app
COPY compile ./compile
COPY training ./training
RUN if [ "$INSTALL_TORCH" = "1" ]; then pip install "$TORCH_SPEC"; fi \
    && pip install . \
    && useradd --system --uid 10001 --no-create-home housing

USER housing
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os,sys,urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('HOUSING_PORT', '8080'), timeout=2).status != 200)"]
# Exec form: SIGTERM reaches the server, which drains and exits 0.
ENTRYPOINT ["python", "-m", "app"]
