# syntax=docker/dockerfile:1
# One image for every opsat service. SERVICE only picks the default program; all services are installed.
#   docker build --build-arg SERVICE=intake -t opsat-intake .
#   docker run opsat-intake            -> opsat-intake api
#   docker run opsat-intake worker     -> opsat-intake worker
ARG PYTHON_IMAGE=python:3.11-slim

# --- build: wheels of our packages and of every pinned dependency, installed into one venv -------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY constraints.txt ./
# Our build backend, pinned like everything else (hence --no-build-isolation below, which uses it).
RUN --mount=type=cache,target=/root/.cache/pip pip install -c constraints.txt hatchling
COPY libs/ libs/
COPY services/ services/
# Local paths on one command line: `opsat-common` is resolved from ./libs/common, never from an index.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-build-isolation -c constraints.txt --wheel-dir /wheels ./libs/common ./services/* \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --find-links /wheels /wheels/*.whl

# --- runtime: no compilers, no pip cache, no source tree -----------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE=intake
# A numeric uid: Kubernetes can only verify runAsNonRoot against a numeric USER.
RUN groupadd --system --gid 10001 opsat \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin opsat
COPY --from=build /opt/venv /opt/venv
# Read-only root filesystem: no .pyc writes, HOME and temp files in /tmp (an emptyDir / tmpfs).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    OPSAT_SERVICE=${SERVICE} \
    OPSAT_SERVICE_NAME=${SERVICE} \
    OPSAT_HTTP_HOST=0.0.0.0 \
    OPSAT_HTTP_WORKERS=0
EXPOSE 8000 8001
USER 10001:10001
# `exec` makes the service PID 1, so it gets SIGTERM directly and shuts down cleanly.
ENTRYPOINT ["/bin/sh", "-c", "exec \"opsat-${OPSAT_SERVICE:?set OPSAT_SERVICE}\" \"$@\"", "opsat-entrypoint"]
CMD ["api"]
