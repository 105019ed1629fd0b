#!/usr/bin/env bash
# Builds every image of the compose files with no container registry (the air-gapped path; online,
# `docker-compose up -d --build` builds the same images from the top-level Dockerfile and
# docker/etcd.Dockerfile instead):
#
#   orchestrator-base:bookworm  Debian bookworm minbase (debootstrap) with libsqlite3-0,
#                               ca-certificates and curl, imported with `docker import`
#   orchestrator:latest         master, worker and orchctl, built on this host (docker/Dockerfile.prebuilt)
#   orchestrator-etcd:3.4       etcd from Debian's etcd-server (docker/etcd.prebuilt.Dockerfile)
#   alpine                      only when no image `alpine` exists: the local busybox test image
#                               (scripts/make-test-image.sh), so the README's example task runs
#
# Usage: scripts/build-images.sh [--binaries DIR] [--force] [--skip-etcd]
#   --binaries DIR  take master, worker and orchctl from DIR (e.g. .build/debug) instead of building them
#                   with `swift build -c release --static-swift-stdlib`. Binaries linked to the
#                   Swift runtime get the toolchain's shared libraries they need copied into the
#                   image (/usr/lib/swift/linux, registered with ldconfig).
#   --force         rebuild orchestrator-base even when it exists with the current version.
#   --skip-etcd     do not build orchestrator-etcd:3.4.
# Needs: docker with a running dockerd, debootstrap (only to build the base image), a Debian
# mirror (DEBIAN_MIRROR, default http://deb.debian.org/debian) for debootstrap, and etcd-server
# installed on the host or downloadable with `apt-get download`.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE="${ORCH_BASE_IMAGE:-orchestrator-base:bookworm}"
APP_IMAGE="${ORCH_IMAGE:-orchestrator:latest}"
ETCD_IMAGE="${ORCH_ETCD_IMAGE:-orchestrator-etcd:3.4}"
TEST_IMAGE="${ORCH_TEST_IMAGE:-orch-test/busybox:latest}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
# Raise when the base image's content changes, so existing machines rebuild it.
BASE_VERSION=1
BASE_PACKAGES=libsqlite3-0,ca-certificates,curl
# What orchestrator:latest ships: the two processes and the command-line client.
PRODUCTS="master worker orchctl"

binaries=""
force=0
skip_etcd=0
while (($#)); do
    case "$1" in
        --binaries) [[ $# -ge 2 ]] || { echo "build-images: --binaries needs a directory" >&2; exit 2; }
                    binaries="$2"; shift 2 ;;
        --binaries=*) binaries="${1#*=}"; shift ;;
        --force) force=1; shift ;;
        --skip-etcd) skip_etcd=1; shift ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-images: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

fail() { echo "build-images: $*" >&2; exit 1; }
log() { echo "build-images: $*"; }
built=()
step_start=0
begin() { step_start=$SECONDS; log "$1 ..."; }
done_step() { local took=$((SECONDS - step_start)); log "$1 (${took} s)"; built+=("$1 (${took} s)"); }

command -v docker >/dev/null 2>&1 || fail "the docker CLI is not installed (Debian: apt-get install docker.io)"
docker info >/dev/null 2>&1 || fail "dockerd does not answer (start it: dockerd >/tmp/dockerd.log 2>&1 &)"

staging="$(mktemp -d "${TMPDIR:-/tmp}/orch-images.XXXXXX")"
rootfs=""
cleanup() {
    rm -rf "$staging"
    # debootstrap leaves root-owned files and possibly mounts (proc) behind on failure.
    if [[ -n "$rootfs" && -d "$rootfs" ]]; then
        umount -l "$rootfs/proc" "$rootfs/sys" 2>/dev/null || true
        rm -rf "$rootfs"
    fi
}
trap cleanup EXIT

# --- (a) the base image ------------------------------------------------------------------------
current="$(docker image inspect -f '{{index .Config.Labels "orchestrator.base-version"}}' "$BASE_IMAGE" 2>/dev/null || true)"
if ((force == 0)) && [[ "$current" == "$BASE_VERSION" ]]; then
    log "$BASE_IMAGE (version $BASE_VERSION) is present"
else
    command -v debootstrap >/dev/null 2>&1 || [[ -x /usr/sbin/debootstrap ]] \
        || fail "debootstrap is not installed (Debian: apt-get install debootstrap)"
    ((EUID == 0)) || fail "debootstrap needs root to build $BASE_IMAGE"
    begin "debootstrap $SUITE ($BASE_PACKAGES) from $MIRROR"
    rootfs="$(mktemp -d "${TMPDIR:-/tmp}/orch-rootfs.XXXXXX")"
    if ! PATH="$PATH:/usr/sbin:/sbin" debootstrap --variant=minbase --include="$BASE_PACKAGES" \
            "$SUITE" "$rootfs" "$MIRROR" >"$staging/debootstrap.log" 2>&1; then
        tail -n 30 "$staging/debootstrap.log" >&2
        fail "debootstrap failed (full log above)"
    fi
    # Nothing of apt's caches or of the build host belongs in the image.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
           "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/dev/*
    rm -f "$rootfs/etc/hostname" "$rootfs/etc/resolv.conf"
    done_step "debootstrap"
    begin "import $BASE_IMAGE"
    tar --numeric-owner -C "$rootfs" -c . | docker import \
        --change "LABEL orchestrator.base-version=$BASE_VERSION" \
        --change "LABEL org.opencontainers.image.description=\"Debian $SUITE minbase with $BASE_PACKAGES\"" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"; rootfs=""
    done_step "$BASE_IMAGE"
fi

# --- (b) orchestrator:latest -------------------------------------------------------------------
if [[ -z "$binaries" ]]; then
    command -v swift >/dev/null 2>&1 || fail "swift is not installed; build with Swift or pass --binaries DIR"
    begin "swift build -c release --static-swift-stdlib (master, worker, orchctl)"
    for product in $PRODUCTS; do
        swift build -c release --static-swift-stdlib --scratch-path .build-release --product "$product" \
            || fail "swift build of $product failed"
    done
    binaries="$(swift build -c release --scratch-path .build-release --show-bin-path)"
    done_step "release build"
fi
for product in $PRODUCTS; do
    [[ -x "$binaries/$product" ]] || fail "$binaries/$product is missing or not executable (build it first: swift build)"
done

begin "stage $PRODUCTS from $binaries"
ctx="$staging/app"
mkdir -p "$ctx/bin" "$ctx/lib"
# Copy now: the build directory may be rebuilt while the image builds.
for product in $PRODUCTS; do cp -L "$binaries/$product" "$ctx/bin/"; done
# Release binaries carry their debug info (about half of their 210 MB): the image does without.
# Debug builds keep it, for backtraces with line numbers.
if [[ "$binaries" == *release* ]] && command -v strip >/dev/null 2>&1; then
    for product in $PRODUCTS; do strip "$ctx/bin/$product"; done
fi
# Binaries linked to the Swift runtime: copy the shared libraries that ldd resolves into the
# toolchain (anything not under /lib, /usr/lib, i.e. not from Debian packages the base image
# shares with this host), or that it cannot resolve at all (then fail).
swift_libs=0
for product in $PRODUCTS; do
    if ! ldd_out="$(LC_ALL=C ldd "$ctx/bin/$product" 2>&1)"; then
        continue   # "not a dynamic executable": fully static
    fi
    if grep -q 'not found' <<<"$ldd_out"; then
        echo "$ldd_out" >&2
        fail "$product needs shared libraries that are not found on this host"
    fi
    while read -r lib; do
        [[ -n "$lib" ]] || continue
        case "$lib" in
            /lib/*|/lib64/*|/usr/lib/*|/usr/lib64/*) ;;   # Debian's; the base image has its own copy
            *) cp -Ln "$lib" "$ctx/lib/" 2>/dev/null || true; swift_libs=$((swift_libs + 1)) ;;
        esac
    done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 }' <<<"$ldd_out")
done
# Debian libraries the binaries need must be in the base image (libsqlite3 is; anything else is a
# new dependency to add to BASE_PACKAGES).
missing_in_base=()
base_needs=()
for product in $PRODUCTS; do
    while read -r lib; do
        case "$lib" in
            /lib/*|/lib64/*|/usr/lib/*|/usr/lib64/*) base_needs+=("$(basename "$lib")") ;;
        esac
    done < <(LC_ALL=C ldd "$ctx/bin/$product" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 }')
done
if ((${#base_needs[@]} > 0)); then
    mapfile -t uniq_needs < <(printf '%s\n' "${base_needs[@]}" | sort -u)
    present="$(docker run --rm --entrypoint /bin/sh "$BASE_IMAGE" -c 'ldconfig -p' 2>/dev/null || true)"
    for lib in "${uniq_needs[@]}"; do
        grep -qF "$lib " <<<"$present" || missing_in_base+=("$lib")
    done
    ((${#missing_in_base[@]} == 0)) \
        || fail "$BASE_IMAGE lacks libraries the binaries need: ${missing_in_base[*]} (add their packages to BASE_PACKAGES)"
fi
if ((swift_libs > 0)); then
    log "the binaries are linked to the Swift runtime: $(ls "$ctx/lib" | wc -l) toolchain libraries staged"
fi
cp docker/Dockerfile.prebuilt "$ctx/Dockerfile"
done_step "staging ($(du -sh "$ctx" | cut -f1))"

begin "docker build $APP_IMAGE"
docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$APP_IMAGE" "$ctx" >"$staging/build.log" 2>&1 \
    || { tail -n 30 "$staging/build.log" >&2; fail "docker build of $APP_IMAGE failed"; }
# The image must start: every binary answers --help with the libraries it holds.
for product in $PRODUCTS; do
    docker run --rm "$APP_IMAGE" "$product" --help >/dev/null 2>"$staging/run.err" \
        || { cat "$staging/run.err" >&2; fail "$product does not start in $APP_IMAGE"; }
done
done_step "$APP_IMAGE ($(docker image inspect -f '{{.Size}}' "$APP_IMAGE" | awk '{ printf "%d MB", $1 / 1000000 }'))"

# --- (c) orchestrator-etcd:3.4 -----------------------------------------------------------------
if ((skip_etcd == 0)); then
    begin "docker build $ETCD_IMAGE"
    ectx="$staging/etcd"
    mkdir -p "$ectx"
    if [[ -x /usr/bin/etcd ]] && dpkg -S /usr/bin/etcd 2>/dev/null | grep -q '^etcd-server:'; then
        cp /usr/bin/etcd "$ectx/etcd"
        source_note="the host's etcd-server $(dpkg-query -W -f '${Version}' etcd-server)"
    else
        command -v apt-get >/dev/null 2>&1 || fail "no etcd-server on this host and no apt-get to download it"
        (cd "$ectx" && apt-get download -q etcd-server >/dev/null) \
            || fail "apt-get download etcd-server failed (apt-get update first?)"
        dpkg-deb -x "$ectx"/etcd-server_*.deb "$ectx/root"
        cp "$ectx/root/usr/bin/etcd" "$ectx/etcd"
        source_note="$(basename "$ectx"/etcd-server_*.deb)"
        rm -rf "$ectx/root" "$ectx"/etcd-server_*.deb
    fi
    cp docker/etcd.prebuilt.Dockerfile "$ectx/Dockerfile"
    docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$ETCD_IMAGE" "$ectx" >"$staging/build.log" 2>&1 \
        || { tail -n 30 "$staging/build.log" >&2; fail "docker build of $ETCD_IMAGE failed"; }
    docker run --rm "$ETCD_IMAGE" --version >/dev/null || fail "etcd does not start in $ETCD_IMAGE"
    done_step "$ETCD_IMAGE (from $source_note)"
fi

# --- (d) alpine for the README's example task ------------------------------------------------
if docker image inspect alpine >/dev/null 2>&1; then
    if [[ "$(docker image inspect -f '{{index .Config.Labels "orch-test.image-version"}}' alpine)" != "" ]]; then
        log "alpine is the local busybox test image (present)"
    else
        log "alpine is present (a real alpine image; left as it is)"
    fi
else
    begin "tag $TEST_IMAGE as alpine"
    scripts/make-test-image.sh
    docker tag "$TEST_IMAGE" alpine:latest
    done_step "alpine (= $TEST_IMAGE)"
fi

log "done in ${SECONDS} s:"
for item in "${built[@]}"; do echo "  $item"; done
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' \
    | grep -E "^(${BASE_IMAGE%%:*}|${APP_IMAGE%%:*}|${ETCD_IMAGE%%:*}|alpine):" | sed 's/^/  /' || true
