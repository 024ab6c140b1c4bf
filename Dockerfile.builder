# The builder image: what a build pod runs with BINDER_SERVICE_ENGINE=buildah (chart: build.engine: buildah).
# repo2docker, buildah and binder-service's repo2docker engine over buildah (binder_service.engines.buildah),
# run rootless as `builder` (uid 1000) in a pod with no privilege (docs/kubernetes.md): newuidmap/newgidmap
# carry file capabilities (cap_setuid+ep, cap_setgid+ep) instead of the setuid bit, and builder owns the
# subordinate ids 100000-165535, which buildah maps into its user namespace for the image's other users.
#   docker build -f Dockerfile.builder -t binder-service-builder .   (scripts/release.sh builds it, stamped)
# The build pod runs it on a read-only root, with an emptyDir at /home/builder (buildah's storage, the
# clone) and directories of it at /tmp and /var/tmp, and runs
# `sh -c <script> repo2docker --engine buildah ...` through tini.
ARG BASE_IMAGE=python:3.12-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# The service's package (without its optional extras) brings repo2docker and registers the engine.
# Behind a TLS-intercepting proxy, give pip its CA bundle: --secret id=pip_cert,src=/path/to/ca-bundle.crt
RUN --mount=type=secret,id=pip_cert,required=false \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && python3 -m venv /opt/binder-service \
 && /opt/binder-service/bin/pip install /src/src/client /src \
 && /opt/binder-service/bin/repo2docker --version \
 && /opt/binder-service/bin/python -c 'from importlib.metadata import entry_points; \
(e,) = entry_points(group="repo2docker.engines", name="buildah"); e.load()'

FROM ${BASE_IMAGE}
# buildah (and what it depends on: containers-common's policy.json and seccomp profile), git for
# repo2docker's Git content provider, tini as PID 1. No fuse-overlayfs, slirp4netns or OCI runtime: the
# pod builds with native overlay (or vfs), host networking of the pod and chroot isolation.
RUN apt-get update \
 && apt-get install -y --no-install-recommends buildah uidmap git ca-certificates tini libcap2-bin \
 && chmod 0755 /usr/bin/newuidmap /usr/bin/newgidmap \
 && setcap cap_setuid+ep /usr/bin/newuidmap \
 && setcap cap_setgid+ep /usr/bin/newgidmap \
 && getcap /usr/bin/newuidmap | grep -q cap_setuid \
 && getcap /usr/bin/newgidmap | grep -q cap_setgid \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --uid 1000 --user-group --create-home --home-dir /home/builder --shell /bin/sh builder \
 && echo "builder:100000:65536" > /etc/subuid \
 && echo "builder:100000:65536" > /etc/subgid
COPY --from=build /opt/binder-service /opt/binder-service
ENV PATH=/opt/binder-service/bin:$PATH \
    HOME=/home/builder \
    BUILDAH_ISOLATION=chroot \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 1000:1000
WORKDIR /home/builder
# -g: a stop (SIGTERM when the pod is deleted) reaches buildah and the RUN steps, not only the shell.
ENTRYPOINT ["/usr/bin/tini", "-g", "--"]
CMD ["repo2docker", "--help"]
