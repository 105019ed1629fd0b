# orchestrator-etcd:3.4 without a registry: Debian's etcd binary (copied into the build context by
# scripts/build-images.sh from the host's etcd-server or a downloaded etcd-server .deb) on the
# debootstrapped base image. The online equivalent is docker/etcd.Dockerfile.
ARG BASE_IMAGE=orchestrator-base:bookworm
FROM ${BASE_IMAGE}
RUN groupadd --gid 10002 etcd \
 && useradd --uid 10002 --gid etcd --home-dir /var/lib/etcd --no-create-home \
        --shell /usr/sbin/nologin etcd \
 && install -d -o etcd -g etcd -m 0700 /var/lib/etcd \
 && install -d -o etcd -g etcd -m 0700 /etc/etcd/tls
COPY etcd /usr/bin/etcd
WORKDIR /var/lib/etcd
USER etcd
EXPOSE 2379 2380
# /health on a loopback-only plain listener: the client port may require TLS client certificates.
ENV ETCD_LISTEN_METRICS_URLS=http://127.0.0.1:2381
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:2381/health || exit 1
ENTRYPOINT ["/usr/bin/etcd"]
