#!/usr/bin/env bash
# Builds the local test image `orch-test/busybox:latest` (no registry is reachable in CI): a rootfs
# holding only a static busybox and a symlink per applet, imported with `docker import`.
#
# Idempotent: the image carries the label orch-test.image-version; when an image with the current
# version exists nothing is done. `--force` rebuilds anyway. Exits non-zero with a message saying
# what is missing (docker, a running dockerd, busybox-static).
set -euo pipefail

IMAGE="${ORCH_TEST_IMAGE:-orch-test/busybox:latest}"
# Raise when the content below changes, so existing machines rebuild.
VERSION=2
BUSYBOX="${BUSYBOX:-/usr/bin/busybox}"

fail() { echo "make-test-image: $*" >&2; exit 1; }

command -v docker >/dev/null 2>&1 || fail "the docker CLI is not installed (Debian: apt-get install docker.io)"
docker info >/dev/null 2>&1 || fail "dockerd does not answer on ${DOCKER_HOST:-/var/run/docker.sock} (start it: dockerd >/tmp/dockerd.log 2>&1 &)"

if [[ "${1:-}" != "--force" ]]; then
    current="$(docker image inspect -f '{{index .Config.Labels "orch-test.image-version"}}' "$IMAGE" 2>/dev/null || true)"
    if [[ "$current" == "$VERSION" ]]; then
        echo "make-test-image: $IMAGE (version $VERSION) is present"
        exit 0
    fi
fi

[[ -x "$BUSYBOX" ]] || fail "$BUSYBOX is missing (Debian: apt-get install busybox-static)"
# A dynamically linked busybox would not run in an image without libc.
if file_out="$(LC_ALL=C file -L "$BUSYBOX" 2>/dev/null)"; then
    [[ "$file_out" == *"statically linked"* || "$file_out" == *"static-pie"* ]] \
        || fail "$BUSYBOX is not statically linked (install busybox-static, not busybox)"
fi

rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"
chmod 1777 "$rootfs/tmp"
cp "$BUSYBOX" "$rootfs/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [[ "$applet" == busybox ]] || ln -sf busybox "$rootfs/bin/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" >"$rootfs/etc/passwd"
echo "root:x:0:" >"$rootfs/etc/group"

# The default command lets tests check that a task without a command runs the image's default.
tar -C "$rootfs" -c . | docker import \
    --change "LABEL orch-test.image-version=$VERSION" \
    --change 'ENV PATH=/bin' \
    --change 'CMD ["echo", "orch-test default command"]' \
    - "$IMAGE" >/dev/null
echo "make-test-image: built $IMAGE (version $VERSION, $("$BUSYBOX" --list | wc -l) applets)"
