# syntax=docker/dockerfile:1
#
# One image for every lobbywatch role; the command picks it:
#   docker run IMAGE server run --config /etc/lobbywatch/server.yaml   (collector, default)
#   docker run IMAGE edge run --config /etc/lobbywatch/device.yaml     (edge box)
#   docker run IMAGE simulate --branches 5 ...                        (lobby simulator)
#
# Build from the repository root:  docker build -t lobbywatch .
# Air-gapped build: --build-arg MODEL_SOURCE=<mirror base URL> (see `lobbywatch model pull`).
#
# There is no Docker engine on the development machines: the image build is
# checked where one exists (CI with Docker, or the bank's build host).
# tests/test_deploy_compose.py checks this file against pyproject.toml (Python
# version, console script, files copied) on every test run.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --------------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# The virtualenv lives at the same path in both stages, so its scripts and
# the base image's interpreter keep matching after the copy.
RUN python -m venv /opt/lobbywatch

WORKDIR /src
# Only what the package build needs (see [tool.setuptools] in pyproject.toml:
# lobbywatch/, edge/, server/, demo/, models/ are installed as one namespace).
COPY pyproject.toml README.md ./
COPY lobbywatch ./lobbywatch
COPY edge ./edge
COPY server ./server
COPY demo ./demo
COPY models ./models
# A plain (non-editable) install: the runtime stage gets no source tree.
RUN /opt/lobbywatch/bin/pip install .

# The detector weights are never committed: fetch them now, check size and
# sha256 against models/catalogue.yaml (the pull fails otherwise), then load
# them through the same resolver the edge agent uses at run time.
ARG MODEL_SOURCE=""
RUN /opt/lobbywatch/bin/lobbywatch model pull --dest /opt/lobbywatch/models \
        ${MODEL_SOURCE:+--from "$MODEL_SOURCE"} \
 && LOBBYWATCH_MODEL_DIR=/opt/lobbywatch/models \
        /opt/lobbywatch/bin/lobbywatch model verify bytetrack_nano \
 && LOBBYWATCH_MODEL_DIR=/opt/lobbywatch/models \
        /opt/lobbywatch/bin/lobbywatch model verify yolox_nano

# ------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="lobbywatch" \
      org.opencontainers.image.description="Camera-based queue monitoring for bank branches" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/lobbywatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOBBYWATCH_MODEL_DIR=/opt/lobbywatch/models \
    # Probed by HEALTHCHECK: the collector's health endpoint by default; the
    # edge role sets it to its metrics endpoint (http://127.0.0.1:9108/metrics).
    LOBBYWATCH_HEALTHCHECK_URL=http://127.0.0.1:8080/healthz

# Unprivileged user with a fixed uid, so mounted volumes can be prepared
# with the right owner; its home holds the SQLite database and edge outbox.
RUN groupadd --system --gid 10001 lobbywatch \
 && useradd --system --uid 10001 --gid lobbywatch --home-dir /var/lib/lobbywatch \
        --create-home --shell /usr/sbin/nologin lobbywatch

COPY --from=build /opt/lobbywatch /opt/lobbywatch

WORKDIR /var/lib/lobbywatch
USER 10001:10001

EXPOSE 8080 9108

# Plain Python rather than curl: the slim image has no curl, and adding it
# only for this would grow the attack surface.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['LOBBYWATCH_HEALTHCHECK_URL'], timeout=4)"]

ENTRYPOINT ["lobbywatch"]
CMD ["server", "run", "--config", "/etc/lobbywatch/server.yaml"]
