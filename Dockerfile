# The online path: `docker-compose up -d --build` (or `docker build -t orchestrator:latest .`).
# Without a registry, scripts/build-images.sh builds the same image from binaries built on the
# host (docker/Dockerfile.prebuilt, whose runtime part mirrors the one below).
#
# The package needs swift-tools-version 6.1; the project is developed with Swift 6.3.
ARG BUILDER_IMAGE=swift:6.3-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---- build ----------------------------------------------------------------------------------
FROM ${BUILDER_IMAGE} AS build
RUN export DEBIAN_FRONTEND=noninteractive \
 && apt-get update -q \
 && apt-get install -y -q --no-install-recommends libsqlite3-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so that a change of the sources reuses the resolved packages' layer.
# (Package.resolved is not committed; the glob lets the COPY succeed without it.)
COPY Package.swift Package.resolve[d] ./
RUN swift package resolve
COPY Protos ./Protos
COPY Sources ./Sources
# SwiftPM checks that every target's directory exists, test, tool and benchmark targets included.
COPY Tests ./Tests
COPY IntegrationTests ./IntegrationTests
COPY Tools ./Tools
COPY Benchmarks ./Benchmarks
# Stripped on install: the debug info is about half of a release binary.
RUN swift build -c release --static-swift-stdlib --product master \
 && swift build -c release --static-swift-stdlib --product worker \
 && swift build -c release --static-swift-stdlib --product orchctl \
 && bin="$(swift build -c release --static-swift-stdlib --show-bin-path)" \
 && install -D -s -m 0755 "$bin/master" /out/master \
 && install -D -s -m 0755 "$bin/worker" /out/worker \
 && install -D -s -m 0755 "$bin/orchctl" /out/orchctl

# ---- runtime --------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
# curl only serves the HEALTHCHECK.
RUN export DEBIAN_FRONTEND=noninteractive \
 && apt-get update -q \
 && apt-get install -y -q --no-install-recommends libsqlite3-0 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
# The masters' data dir belongs to the unprivileged user; a named volume mounted there starts with
# this ownership.
RUN groupadd --gid 10001 orch \
 && useradd --uid 10001 --gid orch --home-dir /var/lib/orchestrator --no-create-home \
        --shell /usr/sbin/nologin orch \
 && install -d -o orch -g orch -m 0750 /var/lib/orchestrator \
 && install -d -o orch -g orch -m 0700 /etc/orchestrator/tls
# orchctl, the command-line client, ships beside them (`docker exec <master> orchctl task ls`).
COPY --from=build /out/master /out/worker /out/orchctl /usr/local/bin/

LABEL org.opencontainers.image.title="orchestrator" \
      org.opencontainers.image.description="Distributed task orchestrator: master, worker and orchctl" \
      org.opencontainers.image.licenses="MIT"
WORKDIR /var/lib/orchestrator
USER orch
# REST API, Raft and worker protocol (gRPC), etcd v3 API of the built-in store.
EXPOSE 8080 9090 2379
# With TLS (ORCH_TLS_CA set, as in the compose files) the API is HTTPS, checked against the CA.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD if [ -n "$ORCH_TLS_CA" ]; then curl -fsS --cacert "$ORCH_TLS_CA" https://127.0.0.1:8080/readyz; \
        else curl -fsS http://127.0.0.1:8080/readyz; fi || exit 1
# `docker run IMAGE master ...` and `docker run IMAGE worker ...` (flags or ORCH_* variables).
CMD ["master"]
