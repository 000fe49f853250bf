# syntax=docker/dockerfile:1
# The fedcare operator image (kopf): build from the repository root.
#   docker build -t ghcr.io/fedcare/operator:0.1.0 .
# The coordinator and trainer pods run the runtime image instead (trainer-image/Dockerfile).
# The operator needs fedcare's spec models, PKI and transport, not torch: no extras here.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: wheels of both distributions, installed into a virtual environment -------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY trainer-image/pyproject.toml trainer-image/README.md trainer-image/
COPY trainer-image/src trainer-image/src
COPY operator/pyproject.toml operator/
COPY operator/src operator/src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ./trainer-image ./operator \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir /wheels/fedcare-0.1.0-py3-none-any.whl \
        /wheels/fedcare_operator-0.1.0-py3-none-any.whl \
    && /opt/venv/bin/pip check

# ---- runtime: the virtual environment on a slim Python, as a non-root user -----------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="fedcare-operator" \
      org.opencontainers.image.description="Kubernetes operator (kopf) for fedcare FederatedJob and Participant resources" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
RUN groupadd --system --gid 10001 fedcare \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin fedcare
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
# 8080: kopf's liveness endpoint (/healthz); 9090: the operator's /metrics (FEDCARE_METRICS_PORT).
EXPOSE 8080 9090
ENTRYPOINT ["kopf", "run", "-m", "fedcare_operator"]
# The Helm chart replaces these arguments (e.g. --namespace=NS for a namespaced install).
CMD ["--all-namespaces", "--standalone", "--liveness=http://0.0.0.0:8080/healthz"]
