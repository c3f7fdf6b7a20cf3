# syntax=docker/dockerfile:1.7
# The northstar-reports image. Build from the repository root (`make images`):
#   docker build -f deploy/docker/reports.Dockerfile -t northstar-reports .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# ---- build: resolve from uv.lock into /app/.venv; nothing of this stage but the venv ships.
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Third-party dependencies first, from the lock and the root manifest alone: this layer is
# rebuilt only when uv.lock changes, not on every source edit.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --frozen --no-dev --no-editable --no-install-workspace --package northstar-reports
# Then the workspace members this service needs (northstar-reports, runtime, protos), as wheels.
COPY pyproject.toml uv.lock ./
COPY libs ./libs
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package northstar-reports

# ---- runtime: slim Python, the venv, an unprivileged user; no compiler, no uv, no sources.
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="northstar-reports" \
      org.opencontainers.image.source="deploy/docker/reports.Dockerfile"
RUN groupadd --system --gid 10001 northstar \
 && useradd --system --uid 10001 --gid northstar --no-create-home --shell /usr/sbin/nologin northstar
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GRPC_ADDRESS=0.0.0.0:50051 \
    METRICS_ADDRESS=0.0.0.0:9464 \
    SHUTDOWN_GRACE_SECONDS=10
EXPOSE 50051 9464
USER 10001:10001
# SIGTERM starts the drain: health flips to NOT_SERVING, in-flight calls get
# SHUTDOWN_GRACE_SECONDS, then the projector, the scheduler and the dispatcher stop (sends in
# flight get DELIVERY_DRAIN_SECONDS; an unfinished generation's lease lapses for another
# replica). Give the container that much (`docker stop -t 30`; Kubernetes:
# terminationGracePeriodSeconds 40, preStop 5 included).
STOPSIGNAL SIGTERM
ENTRYPOINT ["northstar-reports"]
