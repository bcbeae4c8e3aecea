#!/usr/bin/env bash
# Builds rustdocker/tiny:latest, the test image used by the integration tests and the benchmark:
# FROM scratch plus a static busybox. PID 1 traps SIGTERM so `docker stop` returns at once instead of
# waiting the 10 s grace period; httpd serves /www on port 8888 so tests can reach "the server".
# Idempotent: skips the build when the image exists (pass --force to rebuild).
set -euo pipefail
IMAGE=${TINY_IMAGE:-rustdocker/tiny:latest}
if [[ "${1:-}" != "--force" ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "image $IMAGE exists; skipping (pass --force to rebuild)"
    exit 0
fi
BUSYBOX=$(command -v busybox || true)
if [[ -z "$BUSYBOX" ]] || ! file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked'; then
    BUSYBOX=/bin/busybox
fi
if ! [[ -x "$BUSYBOX" ]] || ldd "$BUSYBOX" >/dev/null 2>&1; then
    echo "a static busybox is needed: apt-get install busybox-static" >&2
    exit 1
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/www" "$ctx/rootfs/tmp" "$ctx/rootfs/etc" "$ctx/rootfs/home/jovyan/work"
cp "$BUSYBOX" "$ctx/rootfs/bin/busybox"
for applet in sh ls cat echo mkdir httpd sleep id env touch rm wc; do
    ln -s busybox "$ctx/rootfs/bin/$applet"
done
echo ok > "$ctx/rootfs/www/index.html"
printf 'root:x:0:0:root:/root:/bin/sh\njovyan:x:1000:100::/home/jovyan:/bin/sh\n' > "$ctx/rootfs/etc/passwd"
printf 'root:x:0:\nusers:x:100:\n' > "$ctx/rootfs/etc/group"
chmod 1777 "$ctx/rootfs/tmp"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
ENV PATH=/bin
LABEL org.rustdocker.test-image=true
EXPOSE 8888
CMD ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8888 -h /www & wait"]
DOCKERFILE
DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$ctx" >/dev/null
echo "built $IMAGE"
