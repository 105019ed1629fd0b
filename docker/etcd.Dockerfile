# orchestrator-etcd:3.4, the online path (docker-compose -f docker-compose.etcd.yml up -d --build):
# Debian bookworm's etcd-server (etcd 3.4). Offline, scripts/build-images.sh builds the same image
# from docker/etcd.prebuilt.Dockerfile.
ARG RUNTIME_IMAGE=debian:bookworm-slim
FROM ${RUNTIME_IMAGE}
RUN export DEBIAN_FRONTEND=noninteractive \
 && apt-get update -q \
 && apt-get install -y -q --no-install-recommends etcd-server curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && (getent group etcd >/dev/null || groupadd --gid 10002 etcd) \
 && (getent passwd etcd >/dev/null || useradd --uid 10002 --gid etcd --home-dir /var/lib/etcd \
        --no-create-home --shell /usr/sbin/nologin etcd) \
 && install -d -o etcd -g etcd -m 0700 /var/lib/etcd \
 && install -d -o etcd -g etcd -m 0700 /etc/etcd/tls
WORKDIR /var/lib/etcd
USER etcd
EXPOSE 2379 2380
# /health on a loopback-only plain listener: the client port may require TLS client certificates.
ENV ETCD_LISTEN_METRICS_URLS=http://127.0.0.1:2381
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:2381/health || exit 1
ENTRYPOINT ["/usr/bin/etcd"]
