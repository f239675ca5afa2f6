# syntax=docker/dockerfile:1
# servescope images. Two targets:
#   server   (default)  the KServe v2 gRPC and REST inference server on ONNX Runtime, CUDA when a GPU is there
#                       docker build -t servescope:server .
#   loadtest            Locust with servescope's KServe v2 users (master or worker), no CUDA
#                       docker build --target loadtest -t servescope:loadtest .
#
# The server runs on the NVIDIA CUDA runtime image with cuDNN: onnxruntime-gpu >= 1.27 on PyPI is built
# for CUDA 13 and cuDNN 9, so the base is CUDA 13.0 + cuDNN 9 on Ubuntu 24.04 (Python 3.12). Without a GPU
# (or without the NVIDIA container toolkit) the same image runs on the CPU execution provider. A CPU-only
# image without the CUDA libraries: docker build --build-arg CUDA_IMAGE=ubuntu:24.04 -t servescope:cpu .

ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# ---------------------------------------------------------------------------------------------------
# Build the server's virtual environment: servescope without extras (no TensorFlow, no Locust).
FROM ${CUDA_IMAGE} AS server-build
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Ubuntu's python3.12 is the one the runtime stage has too, so the venv's interpreter link stays valid.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 python3.12-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3.12 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY servescope ./servescope
COPY server ./server
COPY cli ./cli
RUN pip install . \
    && find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +

# ---------------------------------------------------------------------------------------------------
# Build the load tester's environment: servescope with the `load` extra (Locust, PyYAML, psutil).
FROM ${PYTHON_IMAGE} AS loadtest-build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY servescope ./servescope
COPY server ./server
COPY cli ./cli
COPY loadtest ./loadtest
# The project itself with an extra: its dependency ranges live in pyproject.toml, not here.
# hadolint ignore=DL3013
RUN pip install ".[load]"

# ---------------------------------------------------------------------------------------------------
# Load tester: `locust` with the servescope locustfile; pass --master / --worker and the load settings
# (--servescope-config JSON, see loadtest/locustfile.py). Also has `servescope load` and `campaign`.
FROM ${PYTHON_IMAGE} AS loadtest
RUN groupadd --system --gid 10001 servescope \
    && useradd --system --uid 10001 --gid servescope --create-home --shell /usr/sbin/nologin servescope
COPY --from=loadtest-build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LOCUST_LOCUSTFILE=/opt/venv/lib/python3.12/site-packages/loadtest/locustfile.py
WORKDIR /home/servescope
USER 10001:10001
# 8089: Locust web UI on the master; 5557: master <-> worker.
EXPOSE 8089 5557
ENTRYPOINT ["locust"]
CMD ["--help"]

# ---------------------------------------------------------------------------------------------------
# Server runtime (default target): only Python and the venv on top of CUDA + cuDNN.
FROM ${CUDA_IMAGE} AS server
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 servescope \
    && useradd --system --uid 10001 --gid servescope --create-home --shell /usr/sbin/nologin servescope
COPY --from=server-build /opt/venv /opt/venv
COPY deploy/healthcheck.py /opt/servescope/healthcheck.py
# Every `servescope serve` flag also reads SERVESCOPE_<FLAG>; these are the container defaults, override
# them with `docker run -e` or with flags after the image name.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SERVESCOPE_MODEL_REPOSITORY=/models \
    SERVESCOPE_HOST=0.0.0.0 \
    SERVESCOPE_HTTP_PORT=8000 \
    SERVESCOPE_GRPC_PORT=8001 \
    SERVESCOPE_METRICS_PORT=8002 \
    SERVESCOPE_DEVICE=auto
# The model repository (made by `servescope export`) is mounted here, read-only is enough.
VOLUME ["/models"]
WORKDIR /home/servescope
USER 10001:10001
# 8000: KServe v2 REST; 8001: gRPC (KServe v2, grpc.health.v1, reflection); 8002: HTTP /metrics
# /healthz /readyz. The same ports as Triton's.
EXPOSE 8000 8001 8002
# Healthy once every model is loaded and warmed up (the gRPC health service answers SERVING).
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/servescope/healthcheck.py", "--timeout-s", "4"]
ENTRYPOINT ["servescope", "serve"]
