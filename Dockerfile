# The binder-service image, as the Helm chart runs it: the service with the Kubernetes executor (builds run
# repo2docker in build pods) and the PostgreSQL driver (replicas sharing one history). It has repo2docker's
# Python package (a default dependency) but no Docker CLI, so it cannot build by itself: one machine without
# Kubernetes uses `pip install binder-service` (docs/install.md).
#   docker build -t binder-service .         (scripts/release.sh builds it with the version stamped)
# Non-root (uid 65532) and fine with a read-only root filesystem: it writes nothing outside /tmp.
ARG BASE_IMAGE=python:3.12-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
# src/ holds the service and, in src/client/, its event-stream client (binder-service-client, httpx only).
COPY src ./src
# A self-contained venv, copied whole into the final stage; no build tools or caches follow it.
# Behind a TLS-intercepting proxy, give pip its CA bundle: --secret id=pip_cert,src=/path/to/ca-bundle.crt
RUN --mount=type=secret,id=pip_cert,required=false \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && python3 -m venv /opt/binder-service \
 && /opt/binder-service/bin/pip install /src/src/client '/src[kubernetes,postgres]' \
 && /opt/binder-service/bin/binder-service --help >/dev/null \
 && /opt/binder-service/bin/python -c 'import kubernetes_asyncio, asyncpg, greenlet' \
 && if /opt/binder-service/bin/python -c 'import binder_service_hub' 2>/dev/null; then exit 1; fi

FROM ${BASE_IMAGE}
RUN useradd --uid 65532 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin binder
COPY --from=build /opt/binder-service /opt/binder-service
ENV PATH=/opt/binder-service/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
WORKDIR /tmp
EXPOSE 8585
CMD ["binder-service", "serve"]
