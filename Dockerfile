# tasktide container image: one image for every Knative Service.
#
#   FUNCTION_TARGET=<recurring|reminders|notifier|audit|relay>  -> that CloudEvents function (gunicorn: tasktide.functions._server)
#   FUNCTION_TARGET unset                                       -> the HTTP API (uvicorn)
# Both listen on $PORT (Knative injects it; 8080 by default). Configuration is TASKTIDE_* env (see settings.py).
#
# Stage 1 builds a wheel of the package and installs it with its dependencies into /opt/venv.
# Stage 2 is a clean python:3.11-slim with only that venv: no compiler, no pip cache, no source tree,
# running as uid 10001 and writing nothing outside /tmp (works with readOnlyRootFilesystem: true).
ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/venv

# Only what the wheel needs (see .dockerignore); README.md is the project's `readme` metadata.
COPY pyproject.toml README.md ./
COPY functions ./functions

# Bytecode is compiled here so nothing needs to write .pyc at run time; pip itself is not shipped.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install /wheels/tasktide-*.whl \
 && /opt/venv/bin/pip uninstall --yes pip \
 && /opt/venv/bin/python -m compileall -q /opt/venv \
 && /opt/venv/bin/tasktide --help > /dev/null

# ---------------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="tasktide" \
      org.opencontainers.image.description="Event-driven task system on Knative: API + CloudEvents functions"

RUN groupadd --system --gid 10001 tasktide \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin tasktide

COPY --from=builder /opt/venv /opt/venv

# PROMETHEUS_MULTIPROC_DIR is deliberately not set: one process per container, in-memory metrics.
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    PORT=8080 \
    TASKTIDE_HOST=0.0.0.0

WORKDIR /tmp
USER 10001:10001
EXPOSE 8080

ENTRYPOINT ["tasktide", "serve"]
